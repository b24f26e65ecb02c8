variable "name" {
  description = "Name prefix (replication group is <name>-redis)."
  type        = string
}

variable "vpc_id" {
  description = "ID of the VPC."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets of the cache subnet group."
  type        = list(string)
}

variable "node_security_group_id" {
  description = "Security group of the EKS nodes: the only source allowed on 6379."
  type        = string
}

variable "node_type" {
  description = "Cache node type."
  type        = string
  default     = "cache.t4g.medium"
}

variable "num_cache_clusters" {
  description = "Nodes in the replication group (primary + replicas); at least 2 for Multi-AZ automatic failover."
  type        = number
  default     = 2

  validation {
    condition     = var.num_cache_clusters >= 2
    error_message = "Multi-AZ automatic failover needs at least 2 nodes."
  }
}

variable "engine_version" {
  description = "Redis engine version."
  type        = string
  default     = "7.1"
}

variable "snapshot_retention_days" {
  description = "Days of automatic snapshots (the cache can be rebuilt from PostgreSQL; kept short)."
  type        = number
  default     = 1
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
