# Alerts: one SNS topic (optional e-mail subscription), EC2 status-check alarms that also recover
# (system check) or reboot (instance check) the host, a check on the attached EBS volumes, the
# host's heartbeat (a dead-man's switch), and a monthly cost budget.

resource "aws_sns_topic" "alerts" {
  # checkov:skip=CKV_AWS_26: CloudWatch alarms and AWS Budgets cannot publish to a topic encrypted with the AWS-managed key (alias/aws/sns), and a customer key for two alert messages a year is not worth its key policy; messages carry no secrets.
  name = "${var.name}-alerts"

  tags = { Name = "${var.name}-alerts" }
}

data "aws_iam_policy_document" "alerts_topic" {
  statement {
    sid       = "AccountOwnerManages"
    actions   = ["SNS:GetTopicAttributes", "SNS:SetTopicAttributes", "SNS:Subscribe", "SNS:ListSubscriptionsByTopic", "SNS:Publish"]
    resources = [aws_sns_topic.alerts.arn]

    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"]
    }
  }

  statement {
    sid       = "AlarmsAndBudgetsPublish"
    actions   = ["SNS:Publish"]
    resources = [aws_sns_topic.alerts.arn]

    principals {
      type        = "Service"
      identifiers = ["cloudwatch.amazonaws.com", "budgets.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_sns_topic_policy" "alerts" {
  arn    = aws_sns_topic.alerts.arn
  policy = data.aws_iam_policy_document.alerts_topic.json
}

resource "aws_sns_topic_subscription" "email" {
  count = var.alert_email == null ? 0 : 1

  topic_arn = aws_sns_topic.alerts.arn
  protocol  = "email"
  endpoint  = var.alert_email
}

locals {
  alert_actions = [aws_sns_topic.alerts.arn]

  status_alarms = {
    # The hardware/hypervisor under the host failed: move the instance to healthy hardware (same
    # instance ID, EIP, volumes).
    system = {
      metric  = "StatusCheckFailed_System"
      actions = ["arn:${local.partition}:automate:${local.region}:ec2:recover"]
      text    = "system status check failed: EC2 recovers the instance onto other hardware"
    }
    # The OS does not answer (kernel panic, out of memory): reboot it.
    instance = {
      metric  = "StatusCheckFailed_Instance"
      actions = ["arn:${local.partition}:automate:${local.region}:ec2:reboot"]
      text    = "instance status check failed: EC2 reboots the instance"
    }
    # An attached EBS volume (root or data) is impaired: tell a person, rebooting does not help.
    ebs = {
      metric  = "StatusCheckFailed_AttachedEBS"
      actions = []
      text    = "attached EBS volume status check failed"
    }
  }
}

resource "aws_cloudwatch_metric_alarm" "status" {
  for_each = local.status_alarms

  alarm_name          = "${var.name}-${each.key}-status-check"
  alarm_description   = "${var.gitea_domain}: ${each.value.text}"
  namespace           = "AWS/EC2"
  metric_name         = each.value.metric
  dimensions          = { InstanceId = aws_instance.gitea.id }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 2
  datapoints_to_alarm = 2
  threshold           = 1
  comparison_operator = "GreaterThanOrEqualToThreshold"
  treat_missing_data  = "missing"
  alarm_actions       = concat(each.value.actions, local.alert_actions)
  ok_actions          = local.alert_actions

  tags = { Name = "${var.name}-${each.key}-status-check" }
}

# The dead-man's switch: the host publishes one datapoint a minute (tasks/heartbeat.py) while it
# and its monitoring run. Missing data is breaching, so silence itself alarms: a host that is gone,
# cut off, frozen or whose Prometheus is dead cannot send the alert, but it stops the heartbeat.
resource "aws_cloudwatch_metric_alarm" "heartbeat" {
  alarm_name          = "${var.name}-heartbeat"
  alarm_description   = "${var.gitea_domain}: no heartbeat from the host for ${var.heartbeat_evaluation_periods * var.heartbeat_period_seconds} s: the host, its network or its monitoring is down (docs/concepts/heartbeat.md)"
  namespace           = local.metrics_namespace
  metric_name         = local.heartbeat_metric
  dimensions          = local.heartbeat_dimensions
  statistic           = "SampleCount"
  period              = var.heartbeat_period_seconds
  evaluation_periods  = var.heartbeat_evaluation_periods
  datapoints_to_alarm = var.heartbeat_evaluation_periods
  threshold           = 1
  comparison_operator = "LessThanThreshold"
  treat_missing_data  = "breaching"
  alarm_actions       = local.alert_actions
  ok_actions          = local.alert_actions

  tags = { Name = "${var.name}-heartbeat" }
}

resource "aws_budgets_budget" "monthly" {
  count = var.enable_budget ? 1 : 0

  account_id   = local.account_id
  name         = "${var.name}-monthly"
  budget_type  = "COST"
  limit_amount = format("%.2f", var.monthly_budget_usd)
  limit_unit   = "USD"
  time_unit    = "MONTHLY"

  notification {
    comparison_operator        = "GREATER_THAN"
    threshold                  = 80
    threshold_type             = "PERCENTAGE"
    notification_type          = "ACTUAL"
    subscriber_sns_topic_arns  = [aws_sns_topic.alerts.arn]
    subscriber_email_addresses = var.alert_email == null ? [] : [var.alert_email]
  }

  notification {
    comparison_operator        = "GREATER_THAN"
    threshold                  = 100
    threshold_type             = "PERCENTAGE"
    notification_type          = "FORECASTED"
    subscriber_sns_topic_arns  = [aws_sns_topic.alerts.arn]
    subscriber_email_addresses = var.alert_email == null ? [] : [var.alert_email]
  }

  tags = { Name = "${var.name}-monthly" }

  depends_on = [aws_sns_topic_policy.alerts]
}
