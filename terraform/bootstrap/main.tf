# The Terraform state bucket for the main root (../): versioned, encrypted, private, TLS only,
# old versions expire, and `prevent_destroy` so a stray `terraform destroy` cannot remove it.
# Locking needs nothing else: the S3 backend's use_lockfile writes a .tflock object next to the state.

locals {
  emulated = var.aws_endpoint_url != null

  # The ONE place tags are merged (provider default_tags).
  tags = merge(var.tags, {
    Project   = "gitea-deploy"
    ManagedBy = "terraform"
    Component = "terraform-state"
  })
}

resource "aws_s3_bucket" "state" {
  # checkov:skip=CKV_AWS_144: cross-region replication of a few kilobytes of state is not worth a second bucket and role; versioning keeps every past state.
  # checkov:skip=CKV_AWS_18: server access logging needs a second bucket; CloudTrail (main root, enable_cloudtrail) records who touched the state bucket.
  # checkov:skip=CKV2_AWS_62: no consumer for event notifications on state writes.
  # checkov:skip=CKV_AWS_145: SSE-S3 by default; state holds no secrets by design (RDS password is managed by RDS, nothing secret in user data). Set kms_key_arn for SSE-KMS.
  bucket = var.state_bucket_name

  tags = { Name = var.state_bucket_name }

  lifecycle {
    # Literal by Terraform's rules (no variables in lifecycle). Deleting the bucket on purpose:
    # docs/runbooks/aws.md "Destroy"; the tests override it in a temporary copy.
    prevent_destroy = true
  }
}

resource "aws_s3_bucket_ownership_controls" "state" {
  bucket = aws_s3_bucket.state.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "state" {
  bucket = aws_s3_bucket.state.id

  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_versioning" "state" {
  bucket = aws_s3_bucket.state.id

  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "state" {
  bucket = aws_s3_bucket.state.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = var.kms_key_arn == null ? "AES256" : "aws:kms"
      kms_master_key_id = var.kms_key_arn
    }
    bucket_key_enabled = var.kms_key_arn != null
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "state" {
  bucket = aws_s3_bucket.state.id

  rule {
    id     = "expire-old-state-versions"
    status = "Enabled"

    filter {}

    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_days
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }

  depends_on = [aws_s3_bucket_versioning.state]
}

data "aws_iam_policy_document" "state" {
  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.state.arn, "${aws_s3_bucket.state.arn}/*"]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }

  statement {
    sid       = "DenyOldTLS"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.state.arn, "${aws_s3_bucket.state.arn}/*"]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "NumericLessThan"
      variable = "s3:TlsVersion"
      values   = ["1.2"]
    }
  }
}

resource "aws_s3_bucket_policy" "state" {
  bucket = aws_s3_bucket.state.id
  policy = data.aws_iam_policy_document.state.json

  depends_on = [aws_s3_bucket_public_access_block.state]
}
