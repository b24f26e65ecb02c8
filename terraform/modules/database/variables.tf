variable "name" {
  description = "Name prefix (cluster identifier is <name>-aurora)."
  type        = string
}

variable "vpc_id" {
  description = "ID of the VPC."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets of the DB subnet group (one per AZ)."
  type        = list(string)
}

variable "node_security_group_id" {
  description = "Security group of the EKS nodes: the only source allowed on 5432."
  type        = string
}

variable "engine_version" {
  description = "Aurora PostgreSQL engine version (major 15)."
  type        = string
  default     = "15.8"
}

variable "instance_class" {
  description = "Instance class of the writer and the reader."
  type        = string
  default     = "db.r6g.large"
}

variable "instance_count" {
  description = "Number of instances (1 writer + readers); 2 gives Multi-AZ failover."
  type        = number
  default     = 2
}

variable "master_username" {
  description = "Master user name; its password is generated and rotated by RDS in Secrets Manager."
  type        = string
  default     = "cashflow_admin"
}

variable "initial_database_name" {
  description = "Database created with the cluster. The services' databases (ledger, consolidation) are created by the bootstrap step in docs/deploy.md."
  type        = string
  default     = "ledger"
}

variable "backup_retention_days" {
  description = "Days of automated backups (point-in-time recovery window)."
  type        = number
  default     = 14
}

variable "preferred_backup_window" {
  description = "Daily backup window (UTC)."
  type        = string
  default     = "03:00-04:00"
}

variable "preferred_maintenance_window" {
  description = "Weekly maintenance window (UTC)."
  type        = string
  default     = "sun:05:00-sun:06:00"
}

variable "iam_database_authentication_enabled" {
  description = "Allow IAM database authentication in addition to passwords."
  type        = bool
  default     = true
}

variable "deletion_protection" {
  description = "Refuse to delete the cluster (disable deliberately before a destroy)."
  type        = bool
  default     = true
}

variable "log_retention_days" {
  description = "Retention of the exported PostgreSQL log group, in days."
  type        = number
  default     = 365
}

variable "logs_kms_key_arn" {
  description = "KMS key ARN that encrypts the exported PostgreSQL log group."
  type        = string
}

variable "secret_prefix" {
  description = "Prefix of the Secrets Manager names (<prefix>/<service>/...); deploy/k8s/overlays/prod reads cashflow/..."
  type        = string
  default     = "cashflow"
}

variable "tags" {
  description = "Tags applied to every resource."
  type        = map(string)
  default     = {}
}
