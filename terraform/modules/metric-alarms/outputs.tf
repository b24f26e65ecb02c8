output "alarm_arns" {
  description = "ARNs of the alarms, by key of var.alarms."
  value       = { for key, alarm in aws_cloudwatch_metric_alarm.this : key => alarm.arn }
}
