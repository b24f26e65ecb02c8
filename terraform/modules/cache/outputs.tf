output "replication_group_id" {
  description = "ID of the replication group (CloudWatch dimension ReplicationGroupId)."
  value       = aws_elasticache_replication_group.this.id
}

output "member_cluster_ids" {
  description = "Cache cluster IDs of the group's nodes (CloudWatch dimension CacheClusterId), <group>-001, -002, ...; known at plan time."
  value       = [for i in range(var.num_cache_clusters) : format("%s-%03d", local.identifier, i + 1)]
}

output "primary_endpoint" {
  description = "Primary endpoint address (TLS on 6379)."
  value       = aws_elasticache_replication_group.this.primary_endpoint_address
}

output "redis_url_secret_arn" {
  description = "ARN of the secret holding the consolidation service's REDIS_URL (rediss://:token@host:6379)."
  value       = aws_secretsmanager_secret.redis_url.arn
}

output "kms_key_arn" {
  description = "ARN of the KMS key of the cache and its secret."
  value       = module.kms.arn
}
