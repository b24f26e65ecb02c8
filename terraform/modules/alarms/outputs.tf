output "sns_topic_arn" {
  description = "ARN of the SNS topic every alarm notifies."
  value       = aws_sns_topic.alarms.arn
}
