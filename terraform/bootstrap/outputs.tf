output "state_bucket" {
  description = "Name of the state bucket."
  value       = module.state_bucket.bucket
}

output "state_bucket_arn" {
  description = "ARN of the state bucket (for the operator's IAM policy)."
  value       = module.state_bucket.arn
}

output "backend_config" {
  description = "Partial backend configuration for the main root: `terraform -chdir=terraform/bootstrap output -raw backend_config > terraform/backend.hcl`, then `terraform -chdir=terraform init -backend-config=backend.hcl`."
  value       = <<-EOT
    bucket       = "${module.state_bucket.bucket}"
    key          = "${var.state_key}"
    region       = "${var.region}"
    use_lockfile = true
    encrypt      = true
  EOT
}
