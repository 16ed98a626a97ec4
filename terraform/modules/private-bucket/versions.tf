terraform {
  required_version = ">= 1.11"

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # The same constraint as both roots (docs/runbooks/aws.md "Moving to the AWS provider 6.x").
      version = ">= 5.100, < 6.0"
    }
  }
}
