terraform {
  required_version = ">= 1.11"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.100, < 6.0"
    }
  }

  # Local state on purpose: this root creates the bucket every other state lives in. Its state is
  # tiny; if it is lost, `terraform import 'module.state_bucket.aws_s3_bucket.protected[0]' <bucket>`
  # (and the module's other resources) rebuilds it (docs/runbooks/aws.md).
}
