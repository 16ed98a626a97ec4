# Backups: an S3 bucket for restic (versioned, encrypted, private, TLS only, lifecycle for old
# versions; the host role cannot delete versions: iam.tf) and daily EBS snapshots of the data volume
# by Data Lifecycle Manager.

resource "aws_s3_bucket" "backups" {
  # checkov:skip=CKV_AWS_144: cross-region replication doubles storage and needs a second bucket and role; restic repositories are cheap to copy with `restic copy` if a second region is wanted (runbook).
  # checkov:skip=CKV_AWS_18: server access logging needs another bucket and costs per request; CloudTrail (enable_cloudtrail) records the bucket-level API calls.
  # checkov:skip=CKV2_AWS_62: no consumer for S3 event notifications; backup freshness is checked on the host (restic snapshots timestamps exported to monitoring).
  # checkov:skip=CKV_AWS_145: SSE-S3 is the default because restic encrypts every object client-side (AES-256) before upload; set backup_kms_key_arn for SSE-KMS.
  bucket = local.backup_bucket_name

  tags = { Name = local.backup_bucket_name }
}

resource "aws_s3_bucket_ownership_controls" "backups" {
  bucket = aws_s3_bucket.backups.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "backups" {
  bucket = aws_s3_bucket.backups.id

  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_versioning" "backups" {
  bucket = aws_s3_bucket.backups.id

  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "backups" {
  bucket = aws_s3_bucket.backups.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = var.backup_kms_key_arn == null ? "AES256" : "aws:kms"
      kms_master_key_id = var.backup_kms_key_arn
    }
    bucket_key_enabled = var.backup_kms_key_arn != null
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "backups" {
  bucket = aws_s3_bucket.backups.id

  rule {
    id     = "expire-old-versions"
    status = "Enabled"

    filter {}

    noncurrent_version_expiration {
      noncurrent_days = var.backup_noncurrent_version_days
    }

    expiration {
      expired_object_delete_marker = true
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }

  # Versioning must be on before the noncurrent rule means anything.
  depends_on = [aws_s3_bucket_versioning.backups]
}

data "aws_iam_policy_document" "backups_bucket" {
  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.backups.arn, "${aws_s3_bucket.backups.arn}/*"]

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
    resources = [aws_s3_bucket.backups.arn, "${aws_s3_bucket.backups.arn}/*"]

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

resource "aws_s3_bucket_policy" "backups" {
  bucket = aws_s3_bucket.backups.id
  policy = data.aws_iam_policy_document.backups_bucket.json

  depends_on = [aws_s3_bucket_public_access_block.backups]
}

################################################################################
# EBS snapshots of the data volume (Data Lifecycle Manager)
################################################################################

data "aws_iam_policy_document" "dlm_assume" {
  statement {
    sid     = "DlmAssumeRole"
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["dlm.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "dlm" {
  count = var.enable_data_volume_snapshots ? 1 : 0

  name               = "${var.name}-dlm"
  description        = "Data Lifecycle Manager: snapshots of the ${var.name} data volume"
  assume_role_policy = data.aws_iam_policy_document.dlm_assume.json

  tags = { Name = "${var.name}-dlm" }
}

resource "aws_iam_role_policy_attachment" "dlm" {
  count = var.enable_data_volume_snapshots ? 1 : 0

  role       = aws_iam_role.dlm[0].name
  policy_arn = "arn:${local.partition}:iam::aws:policy/service-role/AWSDataLifecycleManagerServiceRole"
}

resource "aws_dlm_lifecycle_policy" "data" {
  count = var.enable_data_volume_snapshots ? 1 : 0

  description        = "${var.name} daily snapshots of the data volume"
  execution_role_arn = aws_iam_role.dlm[0].arn
  state              = "ENABLED"

  policy_details {
    policy_type    = "EBS_SNAPSHOT_MANAGEMENT"
    resource_types = ["VOLUME"]
    target_tags    = { "gitea-deploy:snapshot" = "${var.name}-data" }

    schedule {
      name      = "daily"
      copy_tags = true

      create_rule {
        interval      = 24
        interval_unit = "HOURS"
        times         = [var.snapshot_time_utc]
      }

      retain_rule {
        count = var.snapshot_retention_count
      }

      tags_to_add = { "gitea-deploy:snapshot-by" = "dlm" }
    }
  }

  tags = { Name = "${var.name}-data-snapshots" }
}
