# Backups: an S3 bucket for restic (modules/private-bucket: versioned, encrypted, private, TLS
# only; lifecycle for old versions; the host role cannot delete versions: iam.tf) and daily EBS
# snapshots of the data volume by Data Lifecycle Manager.

module "backups_bucket" {
  # Why this bucket skips what the module's checkov skips: no cross-region replication (restic
  # repositories are cheap to copy with `restic copy` if a second region is wanted); no server
  # access logging (CloudTrail, enable_cloudtrail, records the bucket-level API calls); no event
  # notifications (backup freshness is checked on the host from restic's snapshot times); SSE-S3 by
  # default because restic encrypts every object client-side (AES-256) before upload
  # (backup_kms_key_arn for SSE-KMS).
  source = "./modules/private-bucket"

  bucket      = local.backup_bucket_name
  kms_key_arn = var.backup_kms_key_arn

  lifecycle_rules = [{
    id                                 = "expire-old-versions"
    noncurrent_version_expiration_days = var.backup_noncurrent_version_days
    expired_object_delete_marker       = true
  }]
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
