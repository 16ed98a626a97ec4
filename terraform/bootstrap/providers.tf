provider "aws" {
  region = var.region

  default_tags {
    tags = local.tags
  }

  # Emulated AWS (moto in tests) only; all off in production (aws_endpoint_url = null).
  skip_credentials_validation = local.emulated
  skip_metadata_api_check     = local.emulated
  s3_use_path_style           = local.emulated
  max_retries                 = local.emulated ? 3 : null # as in ../providers.tf

  endpoints {
    iam = var.aws_endpoint_url
    kms = var.aws_endpoint_url
    s3  = var.aws_endpoint_url
    sts = var.aws_endpoint_url
  }
}
