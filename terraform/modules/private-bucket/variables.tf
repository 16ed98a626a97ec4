variable "bucket" {
  description = "Globally unique name of the bucket (also its Name tag)."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.bucket)) && !startswith(var.bucket, "xn--") && !endswith(var.bucket, "-s3alias")
    error_message = "bucket must be a valid S3 bucket name: 3-63 lowercase letters, digits, '.' and '-'."
  }
}

variable "prevent_destroy" {
  description = "Refuse any plan that destroys the bucket (lifecycle prevent_destroy), for a bucket that must outlive its root, like the state bucket. Lifecycle arguments cannot be variables, so the bucket is aws_s3_bucket.protected[0] when true and aws_s3_bucket.this[0] when false: changing this on an existing bucket needs a moved block."
  type        = bool
  default     = false
  nullable    = false
}

variable "kms_key_arn" {
  description = "KMS key ARN for SSE-KMS (with an S3 bucket key); null encrypts with SSE-S3 (AES256)."
  type        = string
  default     = null

  validation {
    condition     = var.kms_key_arn == null || can(regex("^arn:aws[a-z-]*:kms:", var.kms_key_arn))
    error_message = "kms_key_arn must be null or a KMS key ARN."
  }
}

variable "policy_documents" {
  description = "The bucket's own policy statements, as JSON policy documents (data.aws_iam_policy_document.<name>.json). Merged before this module's TLS statements (source_policy_documents); a statement may not reuse their Sids."
  type        = list(string)
  default     = []
  nullable    = false

  validation {
    condition     = alltrue([for document in var.policy_documents : can(jsondecode(document).Statement)])
    error_message = "policy_documents must be JSON policy documents with a Statement list."
  }
}

variable "minimum_tls_version" {
  description = "Deny requests made with a TLS version below this (s3:TlsVersion), on top of the deny of plain HTTP that every bucket gets. null leaves out that statement."
  type        = string
  default     = "1.2"

  validation {
    condition     = var.minimum_tls_version == null ? true : contains(["1.2", "1.3"], var.minimum_tls_version)
    error_message = "minimum_tls_version must be null, \"1.2\" or \"1.3\"."
  }
}

variable "lifecycle_rules" {
  description = "Lifecycle rules for the whole bucket (filter {}): rule id, days a noncurrent version is kept, and optionally days a current object is kept (expiration_days) or removal of expired delete markers; incomplete multipart uploads are aborted after abort_incomplete_multipart_upload_days (7)."
  type = list(object({
    id                                     = string
    noncurrent_version_expiration_days     = number
    expiration_days                        = optional(number)
    expired_object_delete_marker           = optional(bool, false)
    abort_incomplete_multipart_upload_days = optional(number, 7)
  }))
  nullable = false

  validation {
    condition     = length(var.lifecycle_rules) > 0 && length(distinct([for rule in var.lifecycle_rules : rule.id])) == length(var.lifecycle_rules)
    error_message = "lifecycle_rules needs at least one rule (old versions of a versioned bucket must expire), each with its own id."
  }

  validation {
    condition = alltrue([for rule in var.lifecycle_rules : rule.noncurrent_version_expiration_days >= 1 && rule.abort_incomplete_multipart_upload_days >= 1 && (
    rule.expiration_days == null ? true : rule.expiration_days >= 1)])
    error_message = "lifecycle_rules: every number of days must be at least 1."
  }

  validation {
    condition     = alltrue([for rule in var.lifecycle_rules : !(rule.expiration_days != null && rule.expired_object_delete_marker)])
    error_message = "lifecycle_rules: a rule sets expiration_days or expired_object_delete_marker, not both (S3 refuses both in one expiration)."
  }
}
