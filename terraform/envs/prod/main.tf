locals {
  name = "cashflow-${var.environment}"
  tags = {
    Project     = "cashflow"
    Environment = var.environment
  }
}

module "network" {
  source = "../../modules/network"

  name                    = local.name
  cluster_name            = local.name
  vpc_cidr                = var.vpc_cidr
  az_count                = 3
  availability_zones      = var.availability_zones
  single_nat_gateway      = false
  flow_log_retention_days = var.log_retention_days
  tags                    = local.tags
}

module "eks" {
  source = "../../modules/eks"

  cluster_name        = local.name
  kubernetes_version  = var.kubernetes_version
  vpc_id              = module.network.vpc_id
  vpc_cidr            = module.network.vpc_cidr
  private_subnet_ids  = module.network.private_subnet_ids
  public_access_cidrs = var.eks_public_access_cidrs
  node_instance_types = var.node_instance_types
  node_desired_size   = var.node_desired_size
  node_min_size       = 3
  node_max_size       = 6
  logs_kms_key_arn    = module.network.logs_kms_key_arn
  log_retention_days  = var.log_retention_days
  tags                = local.tags
}

module "database" {
  source = "../../modules/database"

  name                                = local.name
  vpc_id                              = module.network.vpc_id
  subnet_ids                          = module.network.private_subnet_ids
  node_security_group_id              = module.eks.node_security_group_id
  engine_version                      = var.aurora_engine_version
  instance_class                      = var.aurora_instance_class
  instance_count                      = 2
  iam_database_authentication_enabled = var.aurora_iam_auth_enabled
  deletion_protection                 = true
  logs_kms_key_arn                    = module.network.logs_kms_key_arn
  log_retention_days                  = var.log_retention_days
  tags                                = local.tags
}

module "cache" {
  source = "../../modules/cache"

  name                   = local.name
  vpc_id                 = module.network.vpc_id
  subnet_ids             = module.network.private_subnet_ids
  node_security_group_id = module.eks.node_security_group_id
  node_type              = var.redis_node_type
  num_cache_clusters     = 2
  tags                   = local.tags
}

module "queues" {
  source = "../../modules/queues"

  name              = local.name
  queue_name        = "cashflow-entries"
  dlq_name          = "cashflow-entries-dlq"
  max_receive_count = 5
  alarm_actions     = [module.alarms.sns_topic_arn]
  tags              = local.tags
}

module "ecr" {
  source = "../../modules/ecr"

  name         = local.name
  repositories = ["cashflow/ledger", "cashflow/consolidation"]
  tags         = local.tags
}

module "api" {
  source = "../../modules/api"

  name                     = local.name
  vpc_id                   = module.network.vpc_id
  private_subnet_ids       = module.network.private_subnet_ids
  node_security_group_id   = module.eks.node_security_group_id
  internal_certificate_arn = var.internal_certificate_arn
  internal_tls_server_name = var.internal_tls_server_name
  jwt_issuer               = var.jwt_issuer
  jwt_audience             = var.jwt_audience
  ledger_port              = 8081
  consolidation_port       = 8082
  logs_kms_key_arn         = module.network.logs_kms_key_arn
  log_retention_days       = var.log_retention_days
  tags                     = local.tags
}

# The cash-flow page on the API's host names: S3 + CloudFront, /v1/* forwarded to the API.
module "web_acl" {
  source    = "../../modules/web-acl"
  providers = { aws = aws.us_east_1 }

  name = local.name
  tags = local.tags
}

module "web" {
  source = "../../modules/web"

  name            = local.name
  web_acl_arn     = module.web_acl.arn
  domain_names    = var.web_domain_names
  certificate_arn = var.web_certificate_arn
  api_endpoint    = module.api.api_endpoint
  site_dir        = "${path.root}/../../../web"
  oidc = {
    issuer                 = var.jwt_issuer
    client_id              = var.web_oidc_client_id
    authorization_endpoint = var.web_oidc_endpoints.authorization
    token_endpoint         = var.web_oidc_endpoints.token
    end_session_endpoint   = var.web_oidc_endpoints.end_session
  }
  log_retention_days = var.log_retention_days
  tags               = local.tags
}

module "iam" {
  source = "../../modules/iam"

  name                          = local.name
  oidc_provider_arn             = module.eks.oidc_provider_arn
  oidc_issuer_url               = module.eks.oidc_issuer_url
  namespace                     = "cashflow"
  ledger_service_account        = "ledger"
  consolidation_service_account = "consolidation"
  entries_queue_arn             = module.queues.entries_queue_arn
  entries_dlq_arn               = module.queues.entries_dlq_arn
  sqs_kms_key_arn               = module.queues.kms_key_arn
  ledger_secret_arns            = [module.database.service_secret_arns["ledger"]]
  consolidation_secret_arns = [
    module.database.service_secret_arns["consolidation"],
    module.cache.redis_url_secret_arn,
  ]
  secrets_kms_key_arns = [module.database.kms_key_arn, module.cache.kms_key_arn]
  tags                 = local.tags
}

module "alarms" {
  source = "../../modules/alarms"

  name                      = local.name
  alarm_email               = var.alarm_email
  aurora_cluster_identifier = module.database.cluster_identifier
  redis_cluster_ids         = module.cache.member_cluster_ids
  api_id                    = module.api.api_id
  tags                      = local.tags
}
