output "cluster_identifier" {
  description = "Identifier of the Aurora cluster (CloudWatch dimension DBClusterIdentifier)."
  value       = aws_rds_cluster.this.cluster_identifier
}

output "endpoint" {
  description = "Writer endpoint of the Aurora cluster."
  value       = aws_rds_cluster.this.endpoint
}

output "reader_endpoint" {
  description = "Reader endpoint of the Aurora cluster."
  value       = aws_rds_cluster.this.reader_endpoint
}

output "port" {
  description = "PostgreSQL port."
  value       = aws_rds_cluster.this.port
}

output "master_secret_arn" {
  description = "ARN of the RDS-managed Secrets Manager secret holding the master credentials."
  value       = aws_rds_cluster.this.master_user_secret[0].secret_arn
}

output "service_secret_arns" {
  description = "ARNs of the per-service DATABASE_URL secrets, keyed by service (ledger, consolidation)."
  value       = { for k, s in aws_secretsmanager_secret.service : k => s.arn }
}

output "kms_key_arn" {
  description = "ARN of the KMS key encrypting the cluster storage and its secrets."
  value       = module.kms.arn
}

output "security_group_id" {
  description = "Security group of the Aurora cluster."
  value       = aws_security_group.db.id
}
