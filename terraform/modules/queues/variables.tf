variable "name" {
  description = "Name prefix of the KMS key and alarms (queue names are fixed: the services and the harness use them)."
  type        = string
}

variable "queue_name" {
  description = "Name of the entries queue. Must stay cashflow-entries."
  type        = string
  default     = "cashflow-entries"
}

variable "dlq_name" {
  description = "Name of the dead-letter queue. Must stay cashflow-entries-dlq."
  type        = string
  default     = "cashflow-entries-dlq"
}

variable "max_receive_count" {
  description = "Receives before SQS moves a message to the DLQ (the services assume 5)."
  type        = number
  default     = 5
}

variable "visibility_timeout_seconds" {
  description = "Visibility timeout of the entries queue, in seconds. Short: the consumer extends it while it holds a message (CONSUMER_VISIBILITY_SECONDS, the same 5 s), so a consumer that dies delays its messages by seconds."
  type        = number
  default     = 5
}

variable "message_retention_seconds" {
  description = "Retention of the entries queue, in seconds (4 days)."
  type        = number
  default     = 345600
}

variable "dlq_retention_seconds" {
  description = "Retention of the DLQ, in seconds (14 days, the SQS maximum)."
  type        = number
  default     = 1209600
}

variable "oldest_message_alarm_seconds" {
  description = "Alarm when the oldest message of the entries queue is older than this, in seconds."
  type        = number
  default     = 300
}

variable "alarm_actions" {
  description = "ARNs notified when a queue alarm changes state (the SNS alarm topic)."
  type        = list(string)
  default     = []
}

variable "tags" {
  description = "Tags applied to every resource."
  type        = map(string)
  default     = {}
}
