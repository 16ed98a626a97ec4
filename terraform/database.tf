# Optional managed PostgreSQL (database = "rds"): private subnets, not public, encrypted, TLS forced
# (RDS for PostgreSQL >= 15 defaults to rds.force_ssl = 1, so the default parameter group is used),
# deletion protection, automated backups, and the master password generated and kept by RDS in
# Secrets Manager (never in Terraform state or in this repository). A later issue points the deploy
# at it.

resource "aws_security_group" "database" {
  count = local.rds ? 1 : 0

  name        = "${var.name}-database"
  description = "RDS PostgreSQL: 5432 from the Gitea host only"
  vpc_id      = aws_vpc.this.id

  tags = { Name = "${var.name}-database" }

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "database_from_host" {
  count = local.rds ? 1 : 0

  security_group_id            = aws_security_group.database[0].id
  description                  = "PostgreSQL from the Gitea host"
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
  referenced_security_group_id = aws_security_group.host.id

  tags = { Name = "${var.name}-postgres-from-host" }
}

resource "aws_db_subnet_group" "this" {
  count = local.rds ? 1 : 0

  name        = "${var.name}-database"
  description = "Private subnets of ${var.name}"
  subnet_ids  = aws_subnet.private[*].id

  tags = { Name = "${var.name}-database" }
}

resource "aws_db_instance" "gitea" {
  # checkov:skip=CKV_AWS_161: Gitea cannot use IAM authentication tokens (15-minute passwords); it connects with the RDS-managed password.
  # checkov:skip=CKV_AWS_118: enhanced monitoring needs another IAM role and is billed through CloudWatch Logs; the standard RDS metrics cover a single-host Gitea.
  # checkov:skip=CKV_AWS_353: Performance Insights is not offered on the default db.t4g.micro class; enable it with a larger class if needed.
  # checkov:skip=CKV2_AWS_69: TLS is forced without a custom parameter group: RDS for PostgreSQL 15 and later defaults to rds.force_ssl = 1, and db_engine_version refuses anything older.
  # checkov:skip=CKV2_AWS_30: statement logging would copy Gitea's queries, literals and user data included, into CloudWatch Logs; errors are exported (enabled_cloudwatch_logs_exports) and slow queries show in the RDS metrics.
  # checkov:skip=CKV_AWS_157: Multi-AZ doubles the instance cost; it is the variable db_multi_az (default false) with automated backups as the recovery path.
  count = local.rds ? 1 : 0

  identifier     = local.db_identifier
  engine         = "postgres"
  engine_version = var.db_engine_version
  instance_class = var.db_instance_class

  allocated_storage     = var.db_allocated_storage
  max_allocated_storage = var.db_allocated_storage * 5
  storage_type          = "gp3"
  storage_encrypted     = true

  db_name                     = "gitea"
  username                    = "gitea"
  manage_master_user_password = true

  db_subnet_group_name   = aws_db_subnet_group.this[0].name
  vpc_security_group_ids = [aws_security_group.database[0].id]
  publicly_accessible    = false
  multi_az               = var.db_multi_az

  backup_retention_period         = var.db_backup_retention_days
  backup_window                   = "02:00-02:30"
  maintenance_window              = "sun:04:00-sun:05:00"
  copy_tags_to_snapshot           = true
  deletion_protection             = var.db_deletion_protection
  skip_final_snapshot             = false
  final_snapshot_identifier       = "${var.name}-db-final"
  auto_minor_version_upgrade      = true
  allow_major_version_upgrade     = false
  enabled_cloudwatch_logs_exports = ["postgresql", "upgrade"]

  tags = { Name = "${var.name}-db" }
}
