provider "aws" {
  region = var.region

  # The one place tags are applied: every taggable resource gets local.tags; resources add only `Name`.
  default_tags {
    tags = local.tags
  }

  # Emulated AWS (moto in tests) only: with aws_endpoint_url unset (production) these are all false/null,
  # so the provider talks to real AWS exactly as it would without them.
  # skip_requesting_account_id stays false even then: moto answers sts:GetCallerIdentity, and without
  # the account ID the provider builds ARNs with an empty account and reads same-account security
  # group references back as cross-account ones (perpetual diff).
  skip_credentials_validation = local.emulated
  skip_metadata_api_check     = local.emulated
  s3_use_path_style           = local.emulated
  # Three attempts (the SDK's default) instead of the provider's 25: an API the emulator lacks fails
  # within seconds, and a connection the emulator dropped mid-answer is still retried.
  max_retries = local.emulated ? 3 : null

  endpoints {
    budgets        = var.aws_endpoint_url
    cloudtrail     = var.aws_endpoint_url
    cloudwatch     = var.aws_endpoint_url
    dlm            = var.aws_endpoint_url
    ec2            = var.aws_endpoint_url
    iam            = var.aws_endpoint_url
    kms            = var.aws_endpoint_url
    logs           = var.aws_endpoint_url
    rds            = var.aws_endpoint_url
    route53        = var.aws_endpoint_url
    s3             = var.aws_endpoint_url
    secretsmanager = var.aws_endpoint_url
    sns            = var.aws_endpoint_url
    ssm            = var.aws_endpoint_url
    sts            = var.aws_endpoint_url
  }
}
