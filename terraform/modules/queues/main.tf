# Customer-managed key: producers and consumers need kms:GenerateDataKey /
# kms:Decrypt on it, granted per service by the iam module.
module "kms" {
  source = "../kms"

  description = "${var.name} SQS ${var.queue_name} and its DLQ"
  alias       = "${var.name}-sqs"
  tags        = var.tags
}

resource "aws_sqs_queue" "dlq" {
  name                              = var.dlq_name
  message_retention_seconds         = var.dlq_retention_seconds
  visibility_timeout_seconds        = var.visibility_timeout_seconds
  kms_master_key_id                 = module.kms.arn
  kms_data_key_reuse_period_seconds = 300

  tags = var.tags
}

resource "aws_sqs_queue" "entries" {
  name                              = var.queue_name
  message_retention_seconds         = var.message_retention_seconds
  visibility_timeout_seconds        = var.visibility_timeout_seconds
  receive_wait_time_seconds         = 20
  kms_master_key_id                 = module.kms.arn
  kms_data_key_reuse_period_seconds = 300

  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.dlq.arn
    maxReceiveCount     = var.max_receive_count
  })

  tags = var.tags
}

# Only the entries queue may use the DLQ as its dead-letter target.
resource "aws_sqs_queue_redrive_allow_policy" "dlq" {
  queue_url = aws_sqs_queue.dlq.id

  redrive_allow_policy = jsonencode({
    redrivePermission = "byQueue"
    sourceQueueArns   = [aws_sqs_queue.entries.arn]
  })
}

module "alarms" {
  source = "../metric-alarms"

  alarm_actions = var.alarm_actions
  tags          = var.tags

  alarms = {
    dlq_depth = {
      name                = "${var.dlq_name}-not-empty"
      description         = "Messages in ${var.dlq_name}: entries the consolidation could not apply. Inspect and redrive (docs/deploy.md)."
      namespace           = "AWS/SQS"
      metric_name         = "ApproximateNumberOfMessagesVisible"
      dimensions          = { QueueName = aws_sqs_queue.dlq.name }
      statistic           = "Maximum"
      period              = 60
      evaluation_periods  = 1
      threshold           = 0
      comparison_operator = "GreaterThanThreshold"
      treat_missing_data  = "notBreaching"
    }
    oldest_message = {
      name                = "${var.queue_name}-oldest-message-age"
      description         = "The oldest message of ${var.queue_name} is older than ${var.oldest_message_alarm_seconds}s: the consolidation is down or behind."
      namespace           = "AWS/SQS"
      metric_name         = "ApproximateAgeOfOldestMessage"
      dimensions          = { QueueName = aws_sqs_queue.entries.name }
      statistic           = "Maximum"
      period              = 60
      evaluation_periods  = 5
      datapoints_to_alarm = 3
      threshold           = var.oldest_message_alarm_seconds
      comparison_operator = "GreaterThanThreshold"
      treat_missing_data  = "notBreaching"
    }
  }
}
