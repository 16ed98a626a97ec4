# Everything the deploy needs, named like the inventory data keys (docs/dev/contracts.md), plus
# `pyinfra_inventory`, from which inventories/sources.py:from_terraform() builds the host list.

output "host_address" {
  description = "Public IPv4 (Elastic IP) of the Gitea host; pyinfra connects here."
  value       = aws_eip.host.public_ip
}

output "host_ipv6_address" {
  description = "Public IPv6 of the Gitea host (changes when the instance is replaced; the AAAA record follows); null without enable_ipv6."
  value       = one(aws_instance.gitea.ipv6_addresses)
}

output "instance_id" {
  description = "EC2 instance ID of the Gitea host."
  value       = aws_instance.gitea.id
}

output "ami_id" {
  description = "AMI the running instance was started from."
  value       = aws_instance.gitea.ami
}

output "ami_id_latest" {
  description = "AMI the SSM parameter (or ami_id) names today; differs from ami_id when a newer Debian image exists (replace the instance on purpose)."
  value       = local.ami_id
}

output "data_volume_id" {
  description = "EBS volume holding /srv/gitea."
  value       = aws_ebs_volume.data.id
}

output "admin_ssh_port" {
  description = "Port of the administrator's sshd."
  value       = var.admin_ssh_port
}

output "gitea_domain" {
  description = "Public FQDN of Gitea."
  value       = var.gitea_domain
}

output "aws_region" {
  description = "Region everything lives in."
  value       = local.region
}

output "backup_s3_bucket" {
  description = "Backups bucket (restic repository lives under backup_s3_prefix)."
  value       = module.backups_bucket.bucket
}

output "backup_s3_prefix" {
  description = "Key prefix in the backups bucket the host may use."
  value       = var.backup_s3_prefix
}

output "ssm_parameter_path" {
  description = "SSM Parameter Store path the host may read."
  value       = local.ssm_parameter_path
}

output "database_endpoint" {
  description = "RDS endpoint (host:port) when database = rds, else null (PostgreSQL runs in the Compose stack)."
  value       = local.rds ? aws_db_instance.gitea[0].endpoint : null
}

output "database_master_secret_arn" {
  description = "Secrets Manager secret holding the RDS master credentials (database = rds), else null."
  value       = local.rds ? aws_db_instance.gitea[0].master_user_secret[0].secret_arn : null
}

output "dns_zone_id" {
  description = "Route53 zone holding the A/AAAA records (null when dns_zone_mode = none)."
  value       = local.dns_zone_id
}

output "dns_name_servers" {
  description = "Name servers of the created zone: add them as NS records for the zone's name at the parent (dns_zone_mode = create), else empty."
  value       = flatten(aws_route53_zone.this[*].name_servers)
}

output "alerts_topic_arn" {
  description = "SNS topic receiving the alarms and budget alerts."
  value       = aws_sns_topic.alerts.arn
}

output "log_groups" {
  description = "CloudWatch Logs group of each concern (host, gitea, postgres, nginx, backup), by concern; the host may write into these and no other."
  value       = { for concern, group in aws_cloudwatch_log_group.host : concern => group.name }
}

output "metrics_namespace" {
  description = "CloudWatch metrics namespace the host may publish to."
  value       = local.metrics_namespace
}

output "heartbeat_metric" {
  description = "Name of the heartbeat metric the host publishes in metrics_namespace (dimension Domain = gitea_domain)."
  value       = local.heartbeat_metric
}

output "heartbeat_alarm_name" {
  description = "CloudWatch alarm that goes off when the host's heartbeat stops (docs/concepts/heartbeat.md)."
  value       = aws_cloudwatch_metric_alarm.heartbeat.alarm_name
}

output "pyinfra_inventory" {
  description = "Hosts for pyinfra: a list of objects, `name` plus host data (the shape of pyinfra's @terraform connector). Read by inventories/sources.py:from_terraform()."
  value = [
    {
      name               = var.name
      ssh_hostname       = aws_eip.host.public_ip
      ssh_port           = var.admin_ssh_port
      ssh_user           = "admin"
      admin_ssh_port     = var.admin_ssh_port
      gitea_domain       = var.gitea_domain
      aws_region         = local.region
      backup_s3_bucket   = module.backups_bucket.bucket
      backup_s3_prefix   = var.backup_s3_prefix
      ssm_parameter_path = local.ssm_parameter_path
      database_endpoint  = local.rds ? aws_db_instance.gitea[0].endpoint : null
      metrics_namespace  = local.metrics_namespace
      heartbeat_metric   = local.heartbeat_metric
      # Alertmanager publishes critical alerts here (tasks/alerting.py); the role may (iam.tf).
      alert_sns_topic_arn = aws_sns_topic.alerts.arn
    }
  ]
}
