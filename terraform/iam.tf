# Least-privilege roles. Every Allow names the ARN it applies to; `*` appears only for actions that
# have no resource-level permissions (cloudwatch:PutMetricData, scoped by a namespace condition) and
# in explicit Deny statements. tests/terraform/test_policy.py enforces this.

locals {
  backup_bucket_arn = module.backups_bucket.arn
  ssm_path_arns = [
    "arn:${local.partition}:ssm:${local.region}:${local.account_id}:parameter${local.ssm_parameter_path}",
    "arn:${local.partition}:ssm:${local.region}:${local.account_id}:parameter${local.ssm_parameter_path}/*",
  ]
  log_group_arns    = [for group in aws_cloudwatch_log_group.host : group.arn]
  metrics_namespace = "GiteaDeploy/${var.name}"
  # The host's heartbeat (tasks/heartbeat.py publishes it, alerts.tf watches it): one dimension,
  # the domain the deploy also knows.
  heartbeat_metric     = "Heartbeat"
  heartbeat_dimensions = { Domain = var.gitea_domain }
}

################################################################################
# Instance role
################################################################################

data "aws_iam_policy_document" "ec2_assume" {
  statement {
    sid     = "EC2AssumeRole"
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "host" {
  name               = "${var.name}-host"
  description        = "Gitea host (${var.gitea_domain}): SSM agent, its backup prefix, its SSM parameters, its logs and metrics"
  assume_role_policy = data.aws_iam_policy_document.ec2_assume.json

  tags = { Name = "${var.name}-host" }
}

# Session Manager and Run Command (the AWS-maintained agent policy). It allows ssm:GetParameter(s)
# on every parameter; the host policy below denies that outside the host's own path (docs/adr/0005).
resource "aws_iam_role_policy_attachment" "host_ssm_core" {
  role       = aws_iam_role.host.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/AmazonSSMManagedInstanceCore"
}

data "aws_iam_policy_document" "host" {
  statement {
    sid       = "BackupBucketList"
    actions   = ["s3:ListBucket"]
    resources = [local.backup_bucket_arn]

    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = [var.backup_s3_prefix, "${var.backup_s3_prefix}/*"]
    }
  }

  statement {
    sid       = "BackupBucketLocation"
    actions   = ["s3:GetBucketLocation"]
    resources = [local.backup_bucket_arn]
  }

  # DeleteObject on a versioned bucket only adds a delete marker (restic removes its lock files and
  # pruned packs); the versions stay until the lifecycle rule expires them.
  statement {
    sid       = "BackupObjects"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"]
    resources = ["${local.backup_bucket_arn}/${var.backup_s3_prefix}/*"]
  }

  # Ransomware resistance: a compromised host must not be able to erase the backup history.
  statement {
    sid    = "DenyBackupHistoryTampering"
    effect = "Deny"
    actions = [
      "s3:DeleteObjectVersion",
      "s3:DeleteBucket",
      "s3:DeleteBucketPolicy",
      "s3:PutBucketPolicy",
      "s3:PutBucketVersioning",
      "s3:PutLifecycleConfiguration",
      "s3:PutBucketObjectLockConfiguration",
      "s3:PutObjectRetention",
      "s3:BypassGovernanceRetention",
    ]
    resources = [local.backup_bucket_arn, "${local.backup_bucket_arn}/*"]
  }

  statement {
    sid       = "OwnParameters"
    actions   = ["ssm:GetParameter", "ssm:GetParameters", "ssm:GetParametersByPath"]
    resources = local.ssm_path_arns
  }

  # The backup job publishes the restic password once (never overwriting) so a replacement host
  # can restore; it may write that one parameter and nothing else.
  statement {
    sid       = "PublishResticPassword"
    actions   = ["ssm:PutParameter"]
    resources = ["arn:${local.partition}:ssm:${local.region}:${local.account_id}:parameter${local.ssm_parameter_path}/restic_password"]
  }

  statement {
    sid           = "DenyOtherParameters"
    effect        = "Deny"
    actions       = ["ssm:GetParameter", "ssm:GetParameters", "ssm:GetParametersByPath", "ssm:GetParameterHistory"]
    not_resources = local.ssm_path_arns
  }

  statement {
    sid       = "OwnLogGroups"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"]
    resources = concat(local.log_group_arns, [for arn in local.log_group_arns : "${arn}:*"])
  }

  # PutMetricData has no resource-level permissions: restrict it to the host's own namespace (the
  # heartbeat's; a compromised host can fake its own heartbeat, not another installation's).
  statement {
    sid       = "OwnMetrics"
    actions   = ["cloudwatch:PutMetricData"]
    resources = ["*"]

    condition {
      test     = "StringEquals"
      variable = "cloudwatch:namespace"
      values   = [local.metrics_namespace]
    }
  }

  # Alertmanager's sns_configs (SigV4, this role): critical alerts into the alerts topic, and no other.
  statement {
    sid       = "PublishAlerts"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.alerts.arn]
  }

  dynamic "statement" {
    for_each = var.backup_kms_key_arn == null ? [] : [var.backup_kms_key_arn]

    content {
      sid       = "BackupKmsKey"
      actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
      resources = [statement.value]
    }
  }

  dynamic "statement" {
    for_each = local.rds ? [aws_db_instance.gitea[0].master_user_secret[0].secret_arn] : []

    content {
      sid       = "DatabaseMasterSecret"
      actions   = ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"]
      resources = [statement.value]
    }
  }
}

resource "aws_iam_role_policy" "host" {
  name   = "gitea-host"
  role   = aws_iam_role.host.id
  policy = data.aws_iam_policy_document.host.json
}

resource "aws_iam_instance_profile" "host" {
  name = "${var.name}-host"
  role = aws_iam_role.host.name

  tags = { Name = "${var.name}-host" }
}

################################################################################
# VPC flow logs role
################################################################################

data "aws_iam_policy_document" "flow_logs_assume" {
  statement {
    sid     = "FlowLogsAssumeRole"
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["vpc-flow-logs.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role" "flow_logs" {
  name               = "${var.name}-vpc-flow-logs"
  description        = "VPC flow logs of ${var.name} into their log group"
  assume_role_policy = data.aws_iam_policy_document.flow_logs_assume.json

  tags = { Name = "${var.name}-vpc-flow-logs" }
}

data "aws_iam_policy_document" "flow_logs" {
  statement {
    sid       = "WriteFlowLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogGroups", "logs:DescribeLogStreams"]
    resources = [aws_cloudwatch_log_group.flow_logs.arn, "${aws_cloudwatch_log_group.flow_logs.arn}:*"]
  }
}

resource "aws_iam_role_policy" "flow_logs" {
  name   = "vpc-flow-logs"
  role   = aws_iam_role.flow_logs.id
  policy = data.aws_iam_policy_document.flow_logs.json
}
