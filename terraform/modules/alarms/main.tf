data "aws_caller_identity" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  actions    = [aws_sns_topic.alarms.arn]
}

module "kms" {
  source = "../kms"

  description = "${var.name} alarm topic"
  alias       = "${var.name}-alarms"
  service_grants = [
    {
      sid       = "CloudWatchAlarmsPublish"
      service   = "cloudwatch.amazonaws.com"
      actions   = ["kms:Decrypt", "kms:GenerateDataKey*"]
      condition = { StringEquals = { "aws:SourceAccount" = local.account_id } }
    },
  ]
  tags = var.tags
}

resource "aws_sns_topic" "alarms" {
  name              = "${var.name}-alarms"
  kms_master_key_id = module.kms.arn

  tags = var.tags
}

data "aws_iam_policy_document" "topic" {
  statement {
    sid       = "CloudWatchAlarms"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.alarms.arn]

    principals {
      type        = "Service"
      identifiers = ["cloudwatch.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_sns_topic_policy" "alarms" {
  arn    = aws_sns_topic.alarms.arn
  policy = data.aws_iam_policy_document.topic.json
}

resource "aws_sns_topic_subscription" "email" {
  count = var.alarm_email == "" ? 0 : 1

  topic_arn = aws_sns_topic.alarms.arn
  protocol  = "email"
  endpoint  = var.alarm_email
}

# ---------------------------------------------------------------------------
# Aurora, Redis (per node) and API Gateway alarms
# ---------------------------------------------------------------------------
module "metric_alarms" {
  source = "../metric-alarms"

  alarm_actions = local.actions
  tags          = var.tags

  alarms = merge(
    {
      aurora_cpu = {
        name                = "${var.aurora_cluster_identifier}-cpu-high"
        description         = "Aurora ${var.aurora_cluster_identifier} CPU above ${var.aurora_cpu_threshold}% for 10 minutes."
        namespace           = "AWS/RDS"
        metric_name         = "CPUUtilization"
        dimensions          = { DBClusterIdentifier = var.aurora_cluster_identifier }
        statistic           = "Average"
        period              = 300
        evaluation_periods  = 2
        threshold           = var.aurora_cpu_threshold
        comparison_operator = "GreaterThanThreshold"
        treat_missing_data  = "missing"
      }
      aurora_freeable_memory = {
        name                = "${var.aurora_cluster_identifier}-freeable-memory-low"
        description         = "Aurora ${var.aurora_cluster_identifier} freeable memory below ${var.aurora_freeable_memory_threshold_bytes} bytes for 10 minutes."
        namespace           = "AWS/RDS"
        metric_name         = "FreeableMemory"
        dimensions          = { DBClusterIdentifier = var.aurora_cluster_identifier }
        statistic           = "Minimum"
        period              = 300
        evaluation_periods  = 2
        threshold           = var.aurora_freeable_memory_threshold_bytes
        comparison_operator = "LessThanThreshold"
        treat_missing_data  = "missing"
      }
      api_5xx = {
        name                = "${var.name}-api-5xx"
        description         = "HTTP API returned more than ${var.api_5xx_threshold} 5xx per minute for 3 of 5 minutes."
        namespace           = "AWS/ApiGateway"
        metric_name         = "5xx"
        dimensions          = { ApiId = var.api_id }
        statistic           = "Sum"
        period              = 60
        evaluation_periods  = 5
        datapoints_to_alarm = 3
        threshold           = var.api_5xx_threshold
        comparison_operator = "GreaterThanThreshold"
        treat_missing_data  = "notBreaching"
      }
    },
    { for id in var.redis_cluster_ids : "redis_cpu_${id}" => {
      name                = "${id}-engine-cpu-high"
      description         = "Redis ${id} engine CPU above ${var.redis_cpu_threshold}% for 10 minutes."
      namespace           = "AWS/ElastiCache"
      metric_name         = "EngineCPUUtilization"
      dimensions          = { CacheClusterId = id }
      statistic           = "Average"
      period              = 300
      evaluation_periods  = 2
      threshold           = var.redis_cpu_threshold
      comparison_operator = "GreaterThanThreshold"
      treat_missing_data  = "missing"
    } },
    { for id in var.redis_cluster_ids : "redis_evictions_${id}" => {
      name                = "${id}-evictions"
      description         = "Redis ${id} evicting keys (more than ${var.redis_evictions_threshold} in 5 minutes): the cache is too small."
      namespace           = "AWS/ElastiCache"
      metric_name         = "Evictions"
      dimensions          = { CacheClusterId = id }
      statistic           = "Sum"
      period              = 300
      evaluation_periods  = 1
      threshold           = var.redis_evictions_threshold
      comparison_operator = "GreaterThanThreshold"
      treat_missing_data  = "notBreaching"
    } },
  )
}
