data "aws_region" "current" {}

locals {
  oidc_host = replace(var.oidc_issuer_url, "https://", "")

  subjects = {
    ledger        = "system:serviceaccount:${var.namespace}:${var.ledger_service_account}"
    consolidation = "system:serviceaccount:${var.namespace}:${var.consolidation_service_account}"
    keda          = "system:serviceaccount:${var.keda_namespace}:${var.keda_service_account}"
  }
}

# Trust: exactly one service account of this cluster, through sts:AssumeRoleWithWebIdentity.
data "aws_iam_policy_document" "assume" {
  for_each = local.subjects

  statement {
    actions = ["sts:AssumeRoleWithWebIdentity"]

    principals {
      type        = "Federated"
      identifiers = [var.oidc_provider_arn]
    }

    condition {
      test     = "StringEquals"
      variable = "${local.oidc_host}:sub"
      values   = [each.value]
    }

    condition {
      test     = "StringEquals"
      variable = "${local.oidc_host}:aud"
      values   = ["sts.amazonaws.com"]
    }
  }
}

# ---------------------------------------------------------------------------
# Both services: read their own secrets, decrypting through Secrets Manager only
# ---------------------------------------------------------------------------
data "aws_iam_policy_document" "secrets" {
  for_each = {
    ledger        = var.ledger_secret_arns
    consolidation = var.consolidation_secret_arns
  }

  statement {
    sid = "ReadOwnSecrets"
    actions = [
      "secretsmanager:GetSecretValue",
      "secretsmanager:DescribeSecret",
    ]
    resources = each.value
  }

  statement {
    sid       = "DecryptOwnSecrets"
    actions   = ["kms:Decrypt"]
    resources = var.secrets_kms_key_arns

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["secretsmanager.${data.aws_region.current.name}.amazonaws.com"]
    }
  }
}

# ---------------------------------------------------------------------------
# ledger: publishes entries (outbox relay, SendMessageBatch = sqs:SendMessage)
# ---------------------------------------------------------------------------
data "aws_iam_policy_document" "ledger" {
  source_policy_documents = [data.aws_iam_policy_document.secrets["ledger"].json]

  statement {
    sid = "PublishEntries"
    actions = [
      "sqs:SendMessage",
      "sqs:GetQueueAttributes",
      "sqs:GetQueueUrl",
    ]
    resources = [var.entries_queue_arn]
  }

  statement {
    sid = "EncryptEntries"
    actions = [
      "kms:GenerateDataKey",
      "kms:Decrypt",
    ]
    resources = [var.sqs_kms_key_arn]
  }
}

# ---------------------------------------------------------------------------
# consolidation: consumes entries; dead-letters poison messages itself
# (SendMessage to the DLQ), inspects the DLQ (receive + visibility reset) and
# redrives it (receive from the DLQ, SendMessage to the queue, delete from the DLQ).
# ---------------------------------------------------------------------------
data "aws_iam_policy_document" "consolidation" {
  source_policy_documents = [data.aws_iam_policy_document.secrets["consolidation"].json]

  statement {
    sid = "ConsumeEntries"
    actions = [
      "sqs:ReceiveMessage",
      "sqs:DeleteMessage",
      "sqs:ChangeMessageVisibility",
      "sqs:GetQueueAttributes",
      "sqs:GetQueueUrl",
      "sqs:SendMessage",
    ]
    resources = [var.entries_queue_arn]
  }

  statement {
    sid = "DeadLetterInspectAndRedrive"
    actions = [
      "sqs:ReceiveMessage",
      "sqs:DeleteMessage",
      "sqs:ChangeMessageVisibility",
      "sqs:SendMessage",
      "sqs:GetQueueAttributes",
      "sqs:GetQueueUrl",
    ]
    resources = [var.entries_dlq_arn]
  }

  statement {
    sid = "EncryptedQueues"
    actions = [
      "kms:GenerateDataKey",
      "kms:Decrypt",
    ]
    resources = [var.sqs_kms_key_arn]
  }
}

# ---------------------------------------------------------------------------
# KEDA operator: reads the queue depth to scale the consolidation
# ---------------------------------------------------------------------------
data "aws_iam_policy_document" "keda" {
  statement {
    sid       = "ReadQueueDepth"
    actions   = ["sqs:GetQueueAttributes"]
    resources = [var.entries_queue_arn]
  }
}

locals {
  policies = {
    ledger        = data.aws_iam_policy_document.ledger.json
    consolidation = data.aws_iam_policy_document.consolidation.json
    keda          = data.aws_iam_policy_document.keda.json
  }
}

resource "aws_iam_role" "this" {
  for_each = local.subjects

  name                 = "${var.name}-${each.key}"
  description          = "IRSA role of ${each.value}"
  assume_role_policy   = data.aws_iam_policy_document.assume[each.key].json
  max_session_duration = 3600

  tags = var.tags
}

resource "aws_iam_role_policy" "this" {
  for_each = local.policies

  name   = "${each.key}-least-privilege"
  role   = aws_iam_role.this[each.key].id
  policy = each.value
}
