output "state_bucket" {
  description = "Name of the state bucket."
  value       = aws_s3_bucket.state.bucket
}

output "state_bucket_arn" {
  description = "ARN of the state bucket (for the operator's IAM policy)."
  value       = aws_s3_bucket.state.arn
}

output "backend_config" {
  description = "Partial backend configuration for the main root: `terraform -chdir=terraform/bootstrap output -raw backend_config > terraform/backend.hcl`, then `terraform -chdir=terraform init -backend-config=backend.hcl`."
  value       = <<-EOT
    bucket       = "${aws_s3_bucket.state.bucket}"
    key          = "${var.state_key}"
    region       = "${var.region}"
    use_lockfile = true
    encrypt      = true
  EOT
}
