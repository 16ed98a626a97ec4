# Logs: one CloudWatch Logs group per concern of the host (local.log_concerns), retained for
# var.log_retention_days and encrypted with a key of their own. The host writes into them and may
# do nothing else with them (iam.tf, OwnLogGroups); docs/concepts/logging.md.

resource "aws_cloudwatch_log_group" "host" {
  for_each = toset(local.log_concerns)

  name              = "${local.log_group_prefix}/${each.key}"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.logs.arn

  tags = { Name = "${var.name}-${each.key}" }
}

# The logs carry user names, client addresses and repository paths: with a key of their own every
# use of it is in CloudTrail, and disabling it makes the groups unreadable at once.
resource "aws_kms_key" "logs" {
  description             = "${var.name}: the host's CloudWatch Logs groups"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.logs_key.json

  tags = { Name = "${var.name}-logs" }
}

resource "aws_kms_alias" "logs" {
  name          = "alias/${var.name}-logs"
  target_key_id = aws_kms_key.logs.key_id
}

# In a key policy `*` is this key. The account keeps administering it through IAM (without this
# statement nobody could change or delete the key); CloudWatch Logs may use it only for this
# installation's groups.
data "aws_iam_policy_document" "logs_key" {
  # checkov:skip=CKV_AWS_109: a key policy's `*` is this key alone; the account's root must keep the key's management (policy, deletion) or the key becomes unmanageable.
  # checkov:skip=CKV_AWS_111: a key policy's `*` is this key alone; CloudWatch Logs' use of it is limited by the encryption-context condition to this installation's groups.
  # checkov:skip=CKV_AWS_356: in a key policy the resource is `*` by definition (AWS documents it as "this KMS key"); it grants nothing beyond the key.
  statement {
    sid = "AccountAdministersTheKey"
    actions = [
      "kms:Create*", "kms:Describe*", "kms:Enable*", "kms:List*", "kms:Put*", "kms:Update*", "kms:Revoke*",
      "kms:Disable*", "kms:Get*", "kms:Delete*", "kms:TagResource", "kms:UntagResource",
      "kms:ScheduleKeyDeletion", "kms:CancelKeyDeletion",
    ]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"]
    }
  }

  statement {
    sid       = "LogsUseTheKeyForTheseGroups"
    actions   = ["kms:Encrypt", "kms:Decrypt", "kms:ReEncryptFrom", "kms:ReEncryptTo", "kms:GenerateDataKey", "kms:GenerateDataKeyWithoutPlaintext", "kms:DescribeKey"]
    resources = ["*"]

    principals {
      type        = "Service"
      identifiers = ["logs.${local.region}.amazonaws.com"]
    }

    condition {
      test     = "ArnLike"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values   = ["arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:${local.log_group_prefix}/*"]
    }
  }
}
