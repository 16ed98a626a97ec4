# The Terraform state bucket for the main root (../): versioned, encrypted, private, TLS only
# (../modules/private-bucket), old versions expire, and `prevent_destroy` so a stray
# `terraform destroy` cannot remove it.
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

module "state_bucket" {
  # Why this bucket skips what the module's checkov skips: cross-region replication of a few
  # kilobytes of state is not worth a second bucket and role (versioning keeps every past state); no
  # server access logging (CloudTrail in the main root, enable_cloudtrail, records who touched it);
  # no consumer for event notifications on state writes; SSE-S3 by default, the state holds no
  # secrets by design (RDS keeps its own password, nothing secret in user data): kms_key_arn for
  # SSE-KMS.
  source = "../modules/private-bucket"

  bucket      = var.state_bucket_name
  kms_key_arn = var.kms_key_arn
  # A stray `terraform destroy` cannot remove it. Deleting the bucket on purpose:
  # docs/runbooks/aws.md "Destroy"; the tests lift it in a temporary copy.
  prevent_destroy = true

  lifecycle_rules = [{
    id                                 = "expire-old-state-versions"
    noncurrent_version_expiration_days = var.noncurrent_version_days
  }]
}
