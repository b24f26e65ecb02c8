variable "name" {
  description = "Name prefix of the topic and alarms."
  type        = string
}

variable "alarm_email" {
  description = "Email subscribed to the alarm topic (confirm the subscription mail). Empty: no subscription."
  type        = string
  default     = ""
}

variable "aurora_cluster_identifier" {
  description = "Aurora cluster identifier (DBClusterIdentifier)."
  type        = string
}

variable "aurora_cpu_threshold" {
  description = "Aurora CPU utilisation alarm threshold, percent."
  type        = number
  default     = 80
}

variable "aurora_freeable_memory_threshold_bytes" {
  description = "Aurora freeable memory alarm threshold, bytes (default 1 GiB of the 16 GiB of a db.r6g.large)."
  type        = number
  default     = 1073741824
}

variable "redis_cluster_ids" {
  description = "Cache cluster IDs of the Redis nodes (CacheClusterId)."
  type        = list(string)
}

variable "redis_cpu_threshold" {
  description = "Redis engine CPU alarm threshold, percent."
  type        = number
  default     = 75
}

variable "redis_evictions_threshold" {
  description = "Redis evictions per 5 minutes above which to alarm."
  type        = number
  default     = 100
}

variable "api_id" {
  description = "HTTP API ID (ApiId)."
  type        = string
}

variable "api_5xx_threshold" {
  description = "API 5xx responses per minute above which to alarm."
  type        = number
  default     = 5
}

variable "tags" {
  description = "Tags applied to every resource."
  type        = map(string)
  default     = {}
}
