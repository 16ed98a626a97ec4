# CloudTrail (enable_cloudtrail): one multi-region trail with log file validation into its own
# private, versioned, TLS-only bucket (modules/private-bucket). For accounts that have no trail yet.

locals {
  trail_name        = "${var.name}-audit"
  trail_bucket_name = "${var.name}-cloudtrail-${local.account_id}-${local.region}"
  trail_arn         = "arn:${local.partition}:cloudtrail:${local.region}:${local.account_id}:trail/${local.trail_name}"
  # Built, not read from the module: the bucket's policy (a module input) names it.
  trail_bucket_arn = "arn:${local.partition}:s3:::${local.trail_bucket_name}"
}

module "cloudtrail_bucket" {
  # Why this bucket skips what the module's checkov skips: cross-region replication of audit logs is
  # an organisation-level decision (an Organizations trail into a log-archive account is the grown-up
  # version); access logging of the audit bucket would need yet another bucket (log file validation
  # checks the trail's integrity); no consumer for event notifications; SSE-S3, because SSE-KMS
  # would need a key policy for cloudtrail.amazonaws.com and adds cost without changing who can read.
  source = "./modules/private-bucket"
  count  = var.enable_cloudtrail ? 1 : 0

  bucket           = local.trail_bucket_name
  policy_documents = [data.aws_iam_policy_document.cloudtrail_bucket[0].json]
  # This bucket's policy has never denied TLS < 1.2 (the other two do); adding that statement is a
  # policy change of its own, not part of moving the bucket into the module.
  minimum_tls_version = null

  lifecycle_rules = [{
    id                                 = "expire-audit-logs"
    expiration_days                    = var.cloudtrail_retention_days
    noncurrent_version_expiration_days = 30
  }]
}

# CloudTrail's own statements; the module adds the TLS-only one.
data "aws_iam_policy_document" "cloudtrail_bucket" {
  count = var.enable_cloudtrail ? 1 : 0

  statement {
    sid       = "CloudTrailAclCheck"
    actions   = ["s3:GetBucketAcl"]
    resources = [local.trail_bucket_arn]

    principals {
      type        = "Service"
      identifiers = ["cloudtrail.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceArn"
      values   = [local.trail_arn]
    }
  }

  statement {
    sid       = "CloudTrailWrite"
    actions   = ["s3:PutObject"]
    resources = ["${local.trail_bucket_arn}/AWSLogs/${local.account_id}/*"]

    principals {
      type        = "Service"
      identifiers = ["cloudtrail.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceArn"
      values   = [local.trail_arn]
    }
  }
}

resource "aws_cloudtrail" "this" {
  # checkov:skip=CKV_AWS_35: log files are SSE-S3 encrypted in a private bucket; SSE-KMS needs a key policy for CloudTrail and costs per request, for the same readers.
  # checkov:skip=CKV_AWS_252: no SNS notification per delivered log file; nobody consumes it.
  # checkov:skip=CKV2_AWS_10: CloudWatch Logs delivery of the trail is billed per GB ingested; the trail is kept for investigation, not live alerting, in this single-host account.
  count = var.enable_cloudtrail ? 1 : 0

  name = local.trail_name
  # Known once the bucket policy that lets CloudTrail write is in place (the module's output).
  s3_bucket_name                = module.cloudtrail_bucket[0].bucket
  is_multi_region_trail         = true
  include_global_service_events = true
  enable_log_file_validation    = true

  tags = { Name = local.trail_name }
}
