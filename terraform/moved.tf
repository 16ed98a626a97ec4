# The backups and CloudTrail buckets moved into modules/private-bucket: these carry an applied
# state over without touching the buckets (tests/terraform/test_tf_moved_moto.py proves it). Keep
# them while any state applied before the move may still be planned.

moved {
  from = aws_s3_bucket.backups
  to   = module.backups_bucket.aws_s3_bucket.this[0]
}

moved {
  from = aws_s3_bucket_ownership_controls.backups
  to   = module.backups_bucket.aws_s3_bucket_ownership_controls.this
}

moved {
  from = aws_s3_bucket_public_access_block.backups
  to   = module.backups_bucket.aws_s3_bucket_public_access_block.this
}

moved {
  from = aws_s3_bucket_versioning.backups
  to   = module.backups_bucket.aws_s3_bucket_versioning.this
}

moved {
  from = aws_s3_bucket_server_side_encryption_configuration.backups
  to   = module.backups_bucket.aws_s3_bucket_server_side_encryption_configuration.this
}

moved {
  from = aws_s3_bucket_lifecycle_configuration.backups
  to   = module.backups_bucket.aws_s3_bucket_lifecycle_configuration.this
}

moved {
  from = aws_s3_bucket_policy.backups
  to   = module.backups_bucket.aws_s3_bucket_policy.this
}

moved {
  from = aws_s3_bucket.cloudtrail[0]
  to   = module.cloudtrail_bucket[0].aws_s3_bucket.this[0]
}

moved {
  from = aws_s3_bucket_ownership_controls.cloudtrail[0]
  to   = module.cloudtrail_bucket[0].aws_s3_bucket_ownership_controls.this
}

moved {
  from = aws_s3_bucket_public_access_block.cloudtrail[0]
  to   = module.cloudtrail_bucket[0].aws_s3_bucket_public_access_block.this
}

moved {
  from = aws_s3_bucket_versioning.cloudtrail[0]
  to   = module.cloudtrail_bucket[0].aws_s3_bucket_versioning.this
}

moved {
  from = aws_s3_bucket_server_side_encryption_configuration.cloudtrail[0]
  to   = module.cloudtrail_bucket[0].aws_s3_bucket_server_side_encryption_configuration.this
}

moved {
  from = aws_s3_bucket_lifecycle_configuration.cloudtrail[0]
  to   = module.cloudtrail_bucket[0].aws_s3_bucket_lifecycle_configuration.this
}

moved {
  from = aws_s3_bucket_policy.cloudtrail[0]
  to   = module.cloudtrail_bucket[0].aws_s3_bucket_policy.this
}

# The host's one log group became the `host` member of the per-concern set (logs.tf).
moved {
  from = aws_cloudwatch_log_group.host
  to   = aws_cloudwatch_log_group.host["host"]
}
