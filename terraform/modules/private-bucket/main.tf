# A private bucket: public access blocked, BucketOwnerEnforced (no ACLs), versioned, encrypted
# (SSE-S3, or SSE-KMS with kms_key_arn), plain HTTP and old TLS denied by the bucket policy, old
# versions and incomplete uploads expired by lifecycle. The caller adds its own policy statements
# (policy_documents) and lifecycle rules; checkov's per-bucket reasons stand at each module call.

locals {
  # Exactly one of the two exists (prevent_destroy). The bucket's settings below name both
  # resources in a conditional instead of this local: checkov links a bucket to its public access
  # block, versioning and lifecycle only through a direct reference.
  bucket = one(concat(aws_s3_bucket.this, aws_s3_bucket.protected))

  # Sid => condition of a Deny statement (a map: the statements come out in Sid order).
  deny_unless = merge(
    { DenyInsecureTransport = { test = "Bool", variable = "aws:SecureTransport", values = ["false"] } },
    var.minimum_tls_version == null ? {} : {
      DenyOldTLS = { test = "NumericLessThan", variable = "s3:TlsVersion", values = [var.minimum_tls_version] }
    },
  )
}

resource "aws_s3_bucket" "this" {
  # checkov:skip=CKV_AWS_144: cross-region replication needs a second bucket and role; none of the callers needs it (each module call says why).
  # checkov:skip=CKV_AWS_18: server access logging needs yet another bucket; CloudTrail records the bucket-level API calls (each module call says why).
  # checkov:skip=CKV2_AWS_62: no consumer for S3 event notifications on any of the callers' buckets.
  # checkov:skip=CKV_AWS_145: SSE-KMS when the caller sets kms_key_arn, SSE-S3 otherwise; each module call says why SSE-S3 is its default.
  count = var.prevent_destroy ? 0 : 1

  bucket = var.bucket

  tags = { Name = var.bucket }
}

resource "aws_s3_bucket" "protected" {
  # checkov:skip=CKV_AWS_144: cross-region replication needs a second bucket and role; none of the callers needs it (each module call says why).
  # checkov:skip=CKV_AWS_18: server access logging needs yet another bucket; CloudTrail records the bucket-level API calls (each module call says why).
  # checkov:skip=CKV2_AWS_62: no consumer for S3 event notifications on any of the callers' buckets.
  # checkov:skip=CKV_AWS_145: SSE-KMS when the caller sets kms_key_arn, SSE-S3 otherwise; each module call says why SSE-S3 is its default.
  count = var.prevent_destroy ? 1 : 0

  bucket = var.bucket

  tags = { Name = var.bucket }

  lifecycle {
    # Literal by Terraform's rules (no variables in lifecycle), hence the second resource.
    prevent_destroy = true
  }
}

resource "aws_s3_bucket_ownership_controls" "this" {
  bucket = var.prevent_destroy ? aws_s3_bucket.protected[0].id : aws_s3_bucket.this[0].id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "this" {
  bucket = var.prevent_destroy ? aws_s3_bucket.protected[0].id : aws_s3_bucket.this[0].id

  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_versioning" "this" {
  bucket = var.prevent_destroy ? aws_s3_bucket.protected[0].id : aws_s3_bucket.this[0].id

  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "this" {
  bucket = var.prevent_destroy ? aws_s3_bucket.protected[0].id : aws_s3_bucket.this[0].id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = var.kms_key_arn == null ? "AES256" : "aws:kms"
      kms_master_key_id = var.kms_key_arn
    }
    bucket_key_enabled = var.kms_key_arn != null
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "this" {
  bucket = var.prevent_destroy ? aws_s3_bucket.protected[0].id : aws_s3_bucket.this[0].id

  dynamic "rule" {
    for_each = var.lifecycle_rules

    content {
      id     = rule.value.id
      status = "Enabled"

      filter {}

      noncurrent_version_expiration {
        noncurrent_days = rule.value.noncurrent_version_expiration_days
      }

      dynamic "expiration" {
        for_each = rule.value.expiration_days != null || rule.value.expired_object_delete_marker ? [rule.value] : []

        content {
          days                         = expiration.value.expiration_days
          expired_object_delete_marker = expiration.value.expired_object_delete_marker ? true : null
        }
      }

      abort_incomplete_multipart_upload {
        days_after_initiation = rule.value.abort_incomplete_multipart_upload_days
      }
    }
  }

  # Versioning must be on before a noncurrent rule means anything.
  depends_on = [aws_s3_bucket_versioning.this]
}

data "aws_iam_policy_document" "this" {
  source_policy_documents = var.policy_documents

  # Deny, to every principal, any request over plain HTTP or (minimum_tls_version) older TLS.
  dynamic "statement" {
    for_each = local.deny_unless

    content {
      sid       = statement.key
      effect    = "Deny"
      actions   = ["s3:*"]
      resources = [local.bucket.arn, "${local.bucket.arn}/*"]

      principals {
        type        = "*"
        identifiers = ["*"]
      }

      condition {
        test     = statement.value.test
        variable = statement.value.variable
        values   = statement.value.values
      }
    }
  }
}

resource "aws_s3_bucket_policy" "this" {
  bucket = var.prevent_destroy ? aws_s3_bucket.protected[0].id : aws_s3_bucket.this[0].id
  policy = data.aws_iam_policy_document.this.json

  depends_on = [aws_s3_bucket_public_access_block.this]
}
