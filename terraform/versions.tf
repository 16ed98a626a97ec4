terraform {
  # 1.11: S3-native state locking (use_lockfile) is GA; 1.9+: validation blocks may refer to other variables.
  required_version = ">= 1.11"

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # 5.100.0 is what the offline mirror carries. Moving to 6.x is a deliberate step:
      # see docs/runbooks/aws.md "Moving to the AWS provider 6.x".
      version = ">= 5.100, < 6.0"
    }
  }

  # Partial configuration: bucket, key and region come from `-backend-config=backend.hcl`, which
  # `terraform -chdir=terraform/bootstrap output -raw backend_config` prints (docs/runbooks/aws.md).
  # Locking is a lock object next to the state (no DynamoDB table): docs/adr/0001.
  backend "s3" {
    use_lockfile = true
    encrypt      = true
  }
}
