output "cluster_name" {
  description = "EKS cluster name (aws eks update-kubeconfig --name <this>)."
  value       = module.eks.cluster_name
}

output "ledger_role_arn" {
  description = "IRSA role ARN for ServiceAccount cashflow/ledger (annotation eks.amazonaws.com/role-arn)."
  value       = module.iam.ledger_role_arn
}

output "consolidation_role_arn" {
  description = "IRSA role ARN for ServiceAccount cashflow/consolidation."
  value       = module.iam.consolidation_role_arn
}

output "keda_role_arn" {
  description = "IRSA role ARN for the KEDA operator's ServiceAccount (keda/keda-operator)."
  value       = module.iam.keda_role_arn
}

output "entries_queue_url" {
  description = "ENTRIES_QUEUE_URL of both services (queue cashflow-entries)."
  value       = module.queues.entries_queue_url
}

output "entries_dlq_url" {
  description = "ENTRIES_DLQ_URL of the consolidation (queue cashflow-entries-dlq)."
  value       = module.queues.entries_dlq_url
}

output "aurora_endpoint" {
  description = "Aurora PostgreSQL writer endpoint (host of DATABASE_URL; port 5432, sslmode=require)."
  value       = module.database.endpoint
}

output "aurora_reader_endpoint" {
  description = "Aurora PostgreSQL reader endpoint."
  value       = module.database.reader_endpoint
}

output "aurora_secret_arn" {
  description = "ARN of the RDS-managed master credentials secret (used once by the database bootstrap step)."
  value       = module.database.master_secret_arn
}

output "database_url_secret_arns" {
  description = "Per-service DATABASE_URL secrets (ledger, consolidation), filled by the bootstrap step and read by the pods."
  value       = module.database.service_secret_arns
}

output "redis_endpoint" {
  description = "ElastiCache Redis primary endpoint (TLS, port 6379)."
  value       = module.cache.primary_endpoint
}

output "redis_url_secret_arn" {
  description = "Secret holding the consolidation's REDIS_URL (rediss://:<token>@<endpoint>:6379)."
  value       = module.cache.redis_url_secret_arn
}

output "ecr_ledger_url" {
  description = "ECR repository URL of the ledger image."
  value       = module.ecr.repository_urls["cashflow/ledger"]
}

output "ecr_consolidation_url" {
  description = "ECR repository URL of the consolidation image."
  value       = module.ecr.repository_urls["cashflow/consolidation"]
}

output "api_endpoint" {
  description = "Public base URL of the HTTP API."
  value       = module.api.api_endpoint
}

output "ledger_target_group_arn" {
  description = "ALB target group for the ledger Service (TargetGroupBinding in deploy/k8s)."
  value       = module.api.ledger_target_group_arn
}

output "consolidation_target_group_arn" {
  description = "ALB target group for the consolidation Service (TargetGroupBinding in deploy/k8s)."
  value       = module.api.consolidation_target_group_arn
}

output "alarm_topic_arn" {
  description = "SNS topic of every alarm."
  value       = module.alarms.sns_topic_arn
}

output "vpc_cidr" {
  description = "CIDR of the VPC (the internal ALB connects to the pods from it: NetworkPolicy allow-http-from-ingress)."
  value       = module.network.vpc_cidr
}

output "region" {
  description = "AWS region of the environment (AWS_REGION of the pods)."
  value       = var.region
}

output "page_url" {
  description = "The cash-flow page (its API same-origin under /v1/)."
  value       = module.web.page_url
}

output "web_distribution_domain_name" {
  description = "CloudFront host name to point web_domain_names at (CNAME or Route 53 alias)."
  value       = module.web.distribution_domain_name
}
