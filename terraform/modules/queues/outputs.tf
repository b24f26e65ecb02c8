output "entries_queue_url" {
  description = "URL of the cashflow-entries queue (ENTRIES_QUEUE_URL)."
  value       = aws_sqs_queue.entries.id
}

output "entries_queue_arn" {
  description = "ARN of the cashflow-entries queue."
  value       = aws_sqs_queue.entries.arn
}

output "entries_queue_name" {
  description = "Name of the cashflow-entries queue."
  value       = aws_sqs_queue.entries.name
}

output "entries_dlq_url" {
  description = "URL of the cashflow-entries-dlq queue (ENTRIES_DLQ_URL)."
  value       = aws_sqs_queue.dlq.id
}

output "entries_dlq_arn" {
  description = "ARN of the cashflow-entries-dlq queue."
  value       = aws_sqs_queue.dlq.arn
}

output "kms_key_arn" {
  description = "ARN of the KMS key encrypting both queues."
  value       = module.kms.arn
}
