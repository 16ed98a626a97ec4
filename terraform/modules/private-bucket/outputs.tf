output "bucket" {
  description = "Name of the bucket, known once its public access block and policy are in place (a writer bound by the policy, like CloudTrail, can use it directly)."
  value       = local.bucket.bucket

  depends_on = [aws_s3_bucket_policy.this]
}

output "arn" {
  description = "ARN of the bucket (for IAM policies and the caller's own bucket policy statements)."
  value       = local.bucket.arn
}
