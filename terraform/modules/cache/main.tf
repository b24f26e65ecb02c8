locals {
  identifier = "${var.name}-redis"
}

module "kms" {
  source = "../kms"

  description = "${local.identifier} at-rest encryption and auth token secret"
  alias       = local.identifier
  tags        = var.tags
}

resource "aws_elasticache_subnet_group" "this" {
  name        = local.identifier
  description = "Private subnets of ${local.identifier}"
  subnet_ids  = var.subnet_ids

  tags = var.tags
}

resource "aws_security_group" "cache" {
  name        = local.identifier
  description = "ElastiCache Redis ${local.identifier}: 6379 from the EKS nodes only"
  vpc_id      = var.vpc_id

  ingress {
    description     = "Redis (TLS) from the EKS nodes"
    from_port       = 6379
    to_port         = 6379
    protocol        = "tcp"
    security_groups = [var.node_security_group_id]
  }

  tags = merge(var.tags, { Name = local.identifier })
}

# AUTH token: 64 hex characters from two UUIDv4 (uuid() draws from the OS
# CSPRNG: 244 random bits), valid for ElastiCache and safe inside a URL.
# Generated once and kept (ignore_changes); rotate with
#   terraform apply -replace=module.cache.terraform_data.auth_token
# (built-in terraform_data instead of hashicorp/random keeps the stack on the
# aws provider only). The token is in the state: keep the state bucket private
# and encrypted (docs/deploy.md).
resource "terraform_data" "auth_token" {
  input = sensitive(replace("${uuid()}${uuid()}", "-", ""))

  lifecycle {
    ignore_changes = [input]
  }
}

resource "aws_elasticache_replication_group" "this" {
  replication_group_id = local.identifier
  description          = "Cache of the consolidation service (cache only, no durable data)"
  engine               = "redis"
  engine_version       = var.engine_version
  node_type            = var.node_type
  port                 = 6379
  num_cache_clusters   = var.num_cache_clusters

  automatic_failover_enabled = true
  multi_az_enabled           = true

  subnet_group_name  = aws_elasticache_subnet_group.this.name
  security_group_ids = [aws_security_group.cache.id]

  at_rest_encryption_enabled = true
  kms_key_id                 = module.kms.arn
  transit_encryption_enabled = true
  auth_token                 = terraform_data.auth_token.output
  auth_token_update_strategy = "ROTATE"

  snapshot_retention_limit   = var.snapshot_retention_days
  snapshot_window            = "02:00-03:00"
  maintenance_window         = "sun:06:00-sun:07:00"
  auto_minor_version_upgrade = true
  apply_immediately          = false

  tags = var.tags
}

# REDIS_URL of the consolidation service, read through its IRSA role.
resource "aws_secretsmanager_secret" "redis_url" {
  #checkov:skip=CKV2_AWS_57:The AUTH token is rotated by replacing terraform_data.auth_token and applying (auth_token_update_strategy ROTATE); no Lambda rotator for a cache credential.
  name                    = "${var.secret_prefix}/consolidation/redis-url"
  description             = "REDIS_URL (rediss://, AUTH token) of the consolidation service"
  kms_key_id              = module.kms.arn
  recovery_window_in_days = 30

  tags = var.tags
}

resource "aws_secretsmanager_secret_version" "redis_url" {
  secret_id     = aws_secretsmanager_secret.redis_url.id
  secret_string = "rediss://:${terraform_data.auth_token.output}@${aws_elasticache_replication_group.this.primary_endpoint_address}:6379"
}
