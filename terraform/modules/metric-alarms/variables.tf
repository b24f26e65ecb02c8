variable "alarms" {
  description = "Alarms by a key known at plan time. datapoints_to_alarm defaults to evaluation_periods (unset)."
  type = map(object({
    name                = string
    description         = string
    namespace           = string
    metric_name         = string
    dimensions          = map(string)
    statistic           = string
    period              = number
    evaluation_periods  = number
    datapoints_to_alarm = optional(number)
    threshold           = number
    comparison_operator = string
    treat_missing_data  = string
  }))
}

variable "alarm_actions" {
  description = "ARNs notified when an alarm enters ALARM or returns to OK."
  type        = list(string)
}

variable "tags" {
  description = "Tags applied to every alarm."
  type        = map(string)
  default     = {}
}
