data "aws_partition" "current" {}

locals {
  partition  = data.aws_partition.current.partition
  identifier = "${var.name}-aurora"
}

module "kms" {
  source = "../kms"

  description = "${local.identifier} storage, master secret and Performance Insights"
  alias       = local.identifier
  tags        = var.tags
}

resource "aws_db_subnet_group" "this" {
  name        = local.identifier
  description = "Private subnets of ${local.identifier}"
  subnet_ids  = var.subnet_ids

  tags = var.tags
}

resource "aws_security_group" "db" {
  name        = local.identifier
  description = "Aurora PostgreSQL ${local.identifier}: 5432 from the EKS nodes only"
  vpc_id      = var.vpc_id

  ingress {
    description     = "PostgreSQL from the EKS nodes"
    from_port       = 5432
    to_port         = 5432
    protocol        = "tcp"
    security_groups = [var.node_security_group_id]
  }

  tags = merge(var.tags, { Name = local.identifier })
}

resource "aws_rds_cluster_parameter_group" "this" {
  name        = "${local.identifier}-pg15"
  family      = "aurora-postgresql15"
  description = "${local.identifier}: TLS only, slow-query and DDL logging"

  parameter {
    name  = "rds.force_ssl"
    value = "1"
  }

  parameter {
    name  = "log_statement"
    value = "ddl"
  }

  parameter {
    name  = "log_min_duration_statement"
    value = "500"
  }

  tags = var.tags
}

resource "aws_cloudwatch_log_group" "postgresql" {
  # RDS exports to this exact name; creating it first sets the retention.
  name              = "/aws/rds/cluster/${local.identifier}/postgresql"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.logs_kms_key_arn

  tags = var.tags
}

resource "aws_rds_cluster" "this" {
  #checkov:skip=CKV2_AWS_8:Protected by Aurora automated backups (var.backup_retention_days, PITR) and deletion protection; an AWS Backup plan is an organisation-level choice outside this stack.
  cluster_identifier = local.identifier
  engine             = "aurora-postgresql"
  engine_mode        = "provisioned"
  engine_version     = var.engine_version
  database_name      = var.initial_database_name
  port               = 5432

  master_username               = var.master_username
  manage_master_user_password   = true
  master_user_secret_kms_key_id = module.kms.arn

  db_subnet_group_name            = aws_db_subnet_group.this.name
  vpc_security_group_ids          = [aws_security_group.db.id]
  db_cluster_parameter_group_name = aws_rds_cluster_parameter_group.this.name

  storage_encrypted = true
  kms_key_id        = module.kms.arn

  iam_database_authentication_enabled = var.iam_database_authentication_enabled
  deletion_protection                 = var.deletion_protection
  backup_retention_period             = var.backup_retention_days
  preferred_backup_window             = var.preferred_backup_window
  preferred_maintenance_window        = var.preferred_maintenance_window
  copy_tags_to_snapshot               = true
  skip_final_snapshot                 = false
  final_snapshot_identifier           = "${local.identifier}-final"
  enabled_cloudwatch_logs_exports     = ["postgresql"]

  tags = var.tags

  depends_on = [aws_cloudwatch_log_group.postgresql]
}

data "aws_iam_policy_document" "monitoring_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["monitoring.rds.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "monitoring" {
  name               = "${local.identifier}-monitoring"
  assume_role_policy = data.aws_iam_policy_document.monitoring_assume.json

  tags = var.tags
}

resource "aws_iam_role_policy_attachment" "monitoring" {
  role       = aws_iam_role.monitoring.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/service-role/AmazonRDSEnhancedMonitoringRole"
}

resource "aws_rds_cluster_instance" "this" {
  count = var.instance_count

  identifier         = "${local.identifier}-${count.index + 1}"
  cluster_identifier = aws_rds_cluster.this.id
  engine             = aws_rds_cluster.this.engine
  engine_version     = aws_rds_cluster.this.engine_version
  instance_class     = var.instance_class

  db_subnet_group_name       = aws_db_subnet_group.this.name
  publicly_accessible        = false
  auto_minor_version_upgrade = true
  copy_tags_to_snapshot      = true
  promotion_tier             = count.index

  monitoring_interval = 30
  monitoring_role_arn = aws_iam_role.monitoring.arn

  performance_insights_enabled          = true
  performance_insights_kms_key_id       = module.kms.arn
  performance_insights_retention_period = 7

  tags = var.tags
}

# ---------------------------------------------------------------------------
# Per-service connection secrets. Terraform creates the (empty) secrets so the
# IRSA roles can be scoped to them; the bootstrap step in docs/deploy.md puts
# each service's DATABASE_URL (its own database and login role) in them.
# ---------------------------------------------------------------------------
resource "aws_secretsmanager_secret" "service" {
  #checkov:skip=CKV2_AWS_57:Holds an application login whose password is set by the DB bootstrap step; rotation needs a Lambda rotator and a coordinated restart, planned separately. The master secret is rotated by RDS.
  for_each = toset(["ledger", "consolidation"])

  name                    = "${var.secret_prefix}/${each.value}/database-url"
  description             = "DATABASE_URL of the ${each.value} service (database ${each.value} on ${local.identifier})"
  kms_key_id              = module.kms.arn
  recovery_window_in_days = 30

  tags = var.tags
}
