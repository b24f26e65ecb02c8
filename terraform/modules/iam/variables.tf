variable "name" {
  description = "Name prefix of the IAM roles."
  type        = string
}

variable "oidc_provider_arn" {
  description = "ARN of the EKS cluster's IAM OIDC provider."
  type        = string
}

variable "oidc_issuer_url" {
  description = "Issuer URL of the EKS cluster's OIDC provider (https://oidc.eks...)."
  type        = string
}

variable "namespace" {
  description = "Kubernetes namespace of the services."
  type        = string
  default     = "cashflow"
}

variable "ledger_service_account" {
  description = "Service account of the ledger pods."
  type        = string
  default     = "ledger"
}

variable "consolidation_service_account" {
  description = "Service account of the consolidation pods."
  type        = string
  default     = "consolidation"
}

variable "keda_namespace" {
  description = "Namespace of the KEDA operator."
  type        = string
  default     = "keda"
}

variable "keda_service_account" {
  description = "Service account of the KEDA operator."
  type        = string
  default     = "keda-operator"
}

variable "entries_queue_arn" {
  description = "ARN of the cashflow-entries queue."
  type        = string
}

variable "entries_dlq_arn" {
  description = "ARN of the cashflow-entries-dlq queue."
  type        = string
}

variable "sqs_kms_key_arn" {
  description = "ARN of the KMS key encrypting both queues."
  type        = string
}

variable "ledger_secret_arns" {
  description = "Secrets the ledger may read (its DATABASE_URL secret)."
  type        = list(string)
}

variable "consolidation_secret_arns" {
  description = "Secrets the consolidation may read (its DATABASE_URL and REDIS_URL secrets)."
  type        = list(string)
}

variable "secrets_kms_key_arns" {
  description = "KMS keys encrypting those secrets (used only through Secrets Manager)."
  type        = list(string)
}

variable "tags" {
  description = "Tags applied to every resource."
  type        = map(string)
  default     = {}
}
