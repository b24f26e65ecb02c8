variable "name" {
  description = "Name prefix for every resource (e.g. cashflow-prod)."
  type        = string
}

variable "vpc_cidr" {
  description = "CIDR block of the VPC."
  type        = string
  default     = "10.0.0.0/16"
}

variable "az_count" {
  description = "Number of availability zones to spread subnets over."
  type        = number
  default     = 3
}

variable "availability_zones" {
  description = "Availability zone names to use, az_count of them. Empty: <region>a, <region>b, <region>c, ..."
  type        = list(string)
  default     = []

  validation {
    condition     = length(var.availability_zones) == 0 || length(var.availability_zones) >= 2
    error_message = "Give at least 2 availability zones (or none for the default)."
  }
}

variable "single_nat_gateway" {
  description = "Use one NAT gateway for all AZs (cheaper, not AZ-resilient). Prod uses one per AZ (false)."
  type        = bool
  default     = false
}

variable "flow_log_retention_days" {
  description = "Retention of the VPC flow log group, in days."
  type        = number
  default     = 365
}

variable "cluster_name" {
  description = "EKS cluster name, used to tag subnets for the AWS Load Balancer Controller."
  type        = string
}

variable "tags" {
  description = "Tags applied to every resource."
  type        = map(string)
  default     = {}
}
