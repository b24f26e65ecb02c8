data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
}

# One customer-managed key with yearly rotation. The account root administers
# it (IAM policies then grant its use); service_grants adds the AWS services
# that must use the key themselves, each scoped by a condition.
resource "aws_kms_key" "this" {
  description             = var.description
  deletion_window_in_days = 30
  enable_key_rotation     = true

  policy = jsonencode({
    Version = "2012-10-17"
    Statement = concat(
      [
        {
          Sid       = "AccountAdministration"
          Effect    = "Allow"
          Principal = { AWS = "arn:${local.partition}:iam::${local.account_id}:root" }
          Action    = "kms:*"
          Resource  = "*"
        },
      ],
      [
        for grant in var.service_grants : {
          Sid       = grant.sid
          Effect    = "Allow"
          Principal = { Service = grant.service }
          Action    = grant.actions
          Resource  = "*"
          Condition = grant.condition
        }
      ],
    )
  })

  tags = var.tags
}

resource "aws_kms_alias" "this" {
  name          = "alias/${var.alias}"
  target_key_id = aws_kms_key.this.key_id
}
