variable "region" {
  description = "AWS region of the state bucket (use the same region as the main root)."
  type        = string

  validation {
    condition     = can(regex("^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-[0-9]$", var.region))
    error_message = "region must look like an AWS region name, e.g. eu-central-1."
  }
}

variable "state_bucket_name" {
  description = "Globally unique name of the Terraform state bucket, e.g. example-org-gitea-tfstate."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$", var.state_bucket_name)) && !startswith(var.state_bucket_name, "xn--") && !endswith(var.state_bucket_name, "-s3alias")
    error_message = "state_bucket_name must be a valid S3 bucket name: 3-63 lowercase letters, digits and '-' (no dots, so TLS and path-style both work)."
  }
}

variable "state_key" {
  description = "Object key of the main root's state inside the bucket (printed into backend_config)."
  type        = string
  default     = "gitea-deploy/terraform.tfstate"

  validation {
    condition     = can(regex("^[A-Za-z0-9][A-Za-z0-9_./-]*\\.tfstate$", var.state_key))
    error_message = "state_key must be a relative object key ending in .tfstate."
  }
}

variable "kms_key_arn" {
  description = "KMS key ARN for SSE-KMS on the state bucket; null uses SSE-S3."
  type        = string
  default     = null

  validation {
    condition     = var.kms_key_arn == null || can(regex("^arn:aws[a-z-]*:kms:", var.kms_key_arn))
    error_message = "kms_key_arn must be null or a KMS key ARN."
  }
}

variable "noncurrent_version_days" {
  description = "Days old state versions are kept (the window to roll back a broken state)."
  type        = number
  default     = 90

  validation {
    condition     = var.noncurrent_version_days >= 1
    error_message = "noncurrent_version_days must be at least 1."
  }
}

variable "tags" {
  description = "Extra tags for every resource (provider default_tags)."
  type        = map(string)
  default     = {}

  validation {
    condition     = !contains([for k in keys(var.tags) : lower(k)], "name")
    error_message = "tags may not contain `Name` (set per resource)."
  }
}

variable "aws_endpoint_url" {
  description = "Emulated AWS only (moto in tests): one endpoint URL for every AWS service. Leave null in production."
  type        = string
  default     = null

  validation {
    condition     = var.aws_endpoint_url == null || can(regex("^https?://", var.aws_endpoint_url))
    error_message = "aws_endpoint_url must be null or an http(s):// URL."
  }
}
