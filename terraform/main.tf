# gitea-deploy: the AWS base for one Gitea host.
# Files by concern: network.tf, security.tf, instance.tf, iam.tf, backup.tf, dns.tf, alerts.tf,
# audit.tf, database.tf. Inputs: variables.tf. Outputs (and the pyinfra inventory): outputs.tf.

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

# A closed, named set of zones: the host's AZ never moves because AWS added a zone or one is impaired
# (a move would replace the subnet, the instance and the data volume).
data "aws_availability_zones" "selected" {
  filter {
    name   = "zone-name"
    values = coalesce(var.availability_zones, ["${var.region}a", "${var.region}b", "${var.region}c"])
  }
}

locals {
  emulated = var.aws_endpoint_url != null

  # The ONE place tags are merged (applied by the provider's default_tags). Resources only add `Name`.
  tags = merge(var.tags, {
    Project             = "gitea-deploy"
    ManagedBy           = "terraform"
    "gitea-deploy:name" = var.name
  })

  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  region     = var.region # not data.aws_region: its `name` is deprecated in provider 6.x
  azs        = slice(sort(data.aws_availability_zones.selected.names), 0, 2)

  rds = var.database == "rds"

  # Contract with the deploy (docs/dev/contracts.md): everything the stack keeps lives here.
  data_root = "/srv/gitea"

  backup_bucket_name = coalesce(var.backup_bucket_name, "${var.name}-backups-${local.account_id}-${local.region}")
  ssm_parameter_path = coalesce(var.ssm_parameter_path, "/gitea-deploy/${var.name}")
  # One log group per concern (logs.tf): the host's own services, then each part of the stack.
  log_group_prefix = "/gitea-deploy/${var.name}"
  log_concerns     = ["host", "gitea", "postgres", "nginx", "backup"]
  db_identifier    = "${var.name}-db"

  # Tags on the instance that inventories/sources.py:from_ec2_tags() reads back (same data as the
  # pyinfra_inventory output). Values use only characters EC2 tags accept.
  discovery_tags = merge(
    {
      "gitea-deploy:domain"             = var.gitea_domain
      "gitea-deploy:admin-port"         = tostring(var.admin_ssh_port)
      "gitea-deploy:backup-bucket"      = module.backups_bucket.bucket
      "gitea-deploy:backup-prefix"      = var.backup_s3_prefix
      "gitea-deploy:ssm-parameter-path" = local.ssm_parameter_path
      "gitea-deploy:metrics-namespace"  = local.metrics_namespace
      "gitea-deploy:heartbeat-metric"   = local.heartbeat_metric
      "gitea-deploy:alerts-topic-arn"   = aws_sns_topic.alerts.arn
    },
    # The RDS identifier, not its endpoint: the instance must not wait for the database to exist.
    local.rds ? { "gitea-deploy:database-instance" = local.db_identifier } : {},
  )
}
