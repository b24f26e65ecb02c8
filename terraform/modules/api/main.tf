data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

data "aws_elb_service_account" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition

  services = {
    ledger        = var.ledger_port
    consolidation = var.consolidation_port
  }

  # API Gateway route => service, from routes.json: the one description of the routes, which
  # the local nginx gateway (harness/src/gateway.rs) is generated from too. Only the public
  # business API is routed here; the consolidation's /v1/admin/* routes (public = false) stay
  # reachable from inside the cluster only, and the ledger's /internal/* routes (digests,
  # replays) are on another port that no route or target group uses
  # (ci/check-deploy-consistency.py checks it).
  route_table = jsondecode(file("${path.module}/routes.json")).routes
  routes = {
    for route in local.route_table : "${route.method} ${route.path}" => route.service if route.public
  }

  # ALB listener rule path patterns per service (same split as the routes above).
  path_patterns = {
    ledger        = ["/v1/merchants/*/entries", "/v1/merchants/*/entries/*"]
    consolidation = ["/v1/merchants/*/balances", "/v1/merchants/*/balances/*"]
  }
}

# ---------------------------------------------------------------------------
# Access logs bucket of the internal ALB
# ---------------------------------------------------------------------------
resource "aws_s3_bucket" "alb_logs" {
  #checkov:skip=CKV_AWS_145:ALB access log delivery only supports SSE-S3 (AES256) buckets, not SSE-KMS.
  #checkov:skip=CKV_AWS_18:This bucket is itself the access-log sink; logging it to another bucket would recurse without adding value.
  #checkov:skip=CKV_AWS_144:Access logs are operational data with a 1-year lifecycle; cross-region replication is not required for them.
  #checkov:skip=CKV2_AWS_62:Nothing consumes object-created events of the access-log bucket.
  bucket        = "${var.name}-alb-logs-${local.account_id}"
  force_destroy = false

  tags = var.tags
}

resource "aws_s3_bucket_public_access_block" "alb_logs" {
  bucket                  = aws_s3_bucket.alb_logs.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "alb_logs" {
  bucket = aws_s3_bucket.alb_logs.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "alb_logs" {
  bucket = aws_s3_bucket.alb_logs.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_versioning" "alb_logs" {
  bucket = aws_s3_bucket.alb_logs.id

  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "alb_logs" {
  bucket = aws_s3_bucket.alb_logs.id

  rule {
    id     = "expire-access-logs"
    status = "Enabled"

    filter {}

    expiration {
      days = var.log_retention_days
    }

    noncurrent_version_expiration {
      noncurrent_days = 7
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }
}

data "aws_iam_policy_document" "alb_logs" {
  statement {
    sid       = "ElbLogDeliveryLegacyRegions"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.alb_logs.arn}/alb/AWSLogs/${local.account_id}/*"]

    principals {
      type        = "AWS"
      identifiers = [data.aws_elb_service_account.current.arn]
    }
  }

  statement {
    sid       = "ElbLogDelivery"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.alb_logs.arn}/alb/AWSLogs/${local.account_id}/*"]

    principals {
      type        = "Service"
      identifiers = ["logdelivery.elasticloadbalancing.amazonaws.com"]
    }
  }

  statement {
    sid     = "DenyInsecureTransport"
    effect  = "Deny"
    actions = ["s3:*"]
    resources = [
      aws_s3_bucket.alb_logs.arn,
      "${aws_s3_bucket.alb_logs.arn}/*",
    ]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "alb_logs" {
  bucket = aws_s3_bucket.alb_logs.id
  policy = data.aws_iam_policy_document.alb_logs.json

  depends_on = [aws_s3_bucket_public_access_block.alb_logs]
}

# ---------------------------------------------------------------------------
# Internal ALB. Terraform owns the ALB, its HTTPS listener, the path rules and
# the target groups; the AWS Load Balancer Controller only registers pod IPs
# into the target groups through TargetGroupBinding objects (deploy/k8s).
# ---------------------------------------------------------------------------
resource "aws_security_group" "vpc_link" {
  #checkov:skip=CKV2_AWS_5:Attached to aws_apigatewayv2_vpc_link.this (security_group_ids), an attachment checkov does not recognise.
  name        = "${var.name}-api-vpc-link"
  description = "API Gateway VPC link ENIs of ${var.name}"
  vpc_id      = var.vpc_id

  tags = merge(var.tags, { Name = "${var.name}-api-vpc-link" })
}

resource "aws_security_group" "alb" {
  name        = "${var.name}-internal-alb"
  description = "Internal ALB of ${var.name}: HTTPS from the API Gateway VPC link only"
  vpc_id      = var.vpc_id

  tags = merge(var.tags, { Name = "${var.name}-internal-alb" })
}

resource "aws_security_group_rule" "vpc_link_to_alb" {
  description              = "HTTPS to the internal ALB"
  type                     = "egress"
  security_group_id        = aws_security_group.vpc_link.id
  from_port                = 443
  to_port                  = 443
  protocol                 = "tcp"
  source_security_group_id = aws_security_group.alb.id
}

resource "aws_security_group_rule" "alb_from_vpc_link" {
  description              = "HTTPS from the API Gateway VPC link"
  type                     = "ingress"
  security_group_id        = aws_security_group.alb.id
  from_port                = 443
  to_port                  = 443
  protocol                 = "tcp"
  source_security_group_id = aws_security_group.vpc_link.id
}

resource "aws_security_group_rule" "alb_to_pods" {
  description              = "ALB to the ledger and consolidation pods (target type ip)"
  type                     = "egress"
  security_group_id        = aws_security_group.alb.id
  from_port                = min(var.ledger_port, var.consolidation_port)
  to_port                  = max(var.ledger_port, var.consolidation_port)
  protocol                 = "tcp"
  source_security_group_id = var.node_security_group_id
}

resource "aws_security_group_rule" "pods_from_alb" {
  description              = "Ledger and consolidation ports from the internal ALB"
  type                     = "ingress"
  security_group_id        = var.node_security_group_id
  from_port                = min(var.ledger_port, var.consolidation_port)
  to_port                  = max(var.ledger_port, var.consolidation_port)
  protocol                 = "tcp"
  source_security_group_id = aws_security_group.alb.id
}

resource "aws_lb" "internal" {
  #checkov:skip=CKV2_AWS_28:Internal ALB reachable only from the API Gateway VPC link (security group); the edge is the API Gateway with its JWT authorizer and throttling. Attach WAF to the API if an edge WAF is required.
  name                       = "${var.name}-internal"
  internal                   = true
  load_balancer_type         = "application"
  subnets                    = var.private_subnet_ids
  security_groups            = [aws_security_group.alb.id]
  drop_invalid_header_fields = true
  enable_deletion_protection = true
  idle_timeout               = 60

  access_logs {
    bucket  = aws_s3_bucket.alb_logs.id
    prefix  = "alb"
    enabled = true
  }

  tags = var.tags

  depends_on = [aws_s3_bucket_policy.alb_logs]
}

resource "aws_lb_target_group" "service" {
  #checkov:skip=CKV_AWS_378:ALB-to-pod hop is plain HTTP inside the VPC (pods serve HTTP on 8081/8082); TLS terminates at the ALB, reachable only through the VPC link.
  for_each = local.services

  name                 = "${var.name}-${each.key}"
  port                 = each.value
  protocol             = "HTTP"
  target_type          = "ip"
  vpc_id               = var.vpc_id
  deregistration_delay = 30

  health_check {
    enabled             = true
    path                = "/health/ready"
    port                = "traffic-port"
    protocol            = "HTTP"
    matcher             = "200"
    interval            = 10
    timeout             = 5
    healthy_threshold   = 2
    unhealthy_threshold = 3
  }

  tags = var.tags
}

resource "aws_lb_listener" "https" {
  load_balancer_arn = aws_lb.internal.arn
  port              = 443
  protocol          = "HTTPS"
  ssl_policy        = "ELBSecurityPolicy-TLS13-1-2-2021-06"
  certificate_arn   = var.internal_certificate_arn

  default_action {
    type = "fixed-response"

    fixed_response {
      content_type = "application/json"
      message_body = "{\"error\":\"not_found\"}"
      status_code  = "404"
    }
  }

  tags = var.tags
}

resource "aws_lb_listener_rule" "service" {
  for_each = local.path_patterns

  listener_arn = aws_lb_listener.https.arn
  priority     = each.key == "ledger" ? 10 : 20

  action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.service[each.key].arn
  }

  condition {
    path_pattern {
      values = each.value
    }
  }

  tags = var.tags
}

# ---------------------------------------------------------------------------
# HTTP API with JWT authorizer
# ---------------------------------------------------------------------------
resource "aws_apigatewayv2_vpc_link" "this" {
  name               = "${var.name}-internal-alb"
  subnet_ids         = var.private_subnet_ids
  security_group_ids = [aws_security_group.vpc_link.id]

  tags = var.tags
}

resource "aws_apigatewayv2_api" "this" {
  name          = "${var.name}-api"
  description   = "Cash-flow public API: ledger entries and daily balances"
  protocol_type = "HTTP"

  tags = var.tags
}

resource "aws_apigatewayv2_authorizer" "jwt" {
  api_id           = aws_apigatewayv2_api.this.id
  name             = "jwt"
  authorizer_type  = "JWT"
  identity_sources = ["$request.header.Authorization"]

  jwt_configuration {
    issuer   = var.jwt_issuer
    audience = var.jwt_audience
  }
}

# One integration: the ALB's listener rules send each path to its service.
resource "aws_apigatewayv2_integration" "alb" {
  api_id               = aws_apigatewayv2_api.this.id
  description          = "Internal ALB (ledger and consolidation target groups)"
  integration_type     = "HTTP_PROXY"
  integration_method   = "ANY"
  integration_uri      = aws_lb_listener.https.arn
  connection_type      = "VPC_LINK"
  connection_id        = aws_apigatewayv2_vpc_link.this.id
  timeout_milliseconds = 29000

  tls_config {
    server_name_to_verify = var.internal_tls_server_name
  }
}

resource "aws_apigatewayv2_route" "this" {
  for_each = local.routes

  api_id             = aws_apigatewayv2_api.this.id
  route_key          = each.key
  target             = "integrations/${aws_apigatewayv2_integration.alb.id}"
  authorization_type = "JWT"
  authorizer_id      = aws_apigatewayv2_authorizer.jwt.id
}

resource "aws_cloudwatch_log_group" "access" {
  name              = "/aws/apigateway/${var.name}-api/access"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.logs_kms_key_arn

  tags = var.tags
}

resource "aws_apigatewayv2_stage" "default" {
  api_id      = aws_apigatewayv2_api.this.id
  name        = "$default"
  auto_deploy = true

  default_route_settings {
    throttling_rate_limit  = var.throttling_rate_limit
    throttling_burst_limit = var.throttling_burst_limit
  }

  access_log_settings {
    destination_arn = aws_cloudwatch_log_group.access.arn
    format = jsonencode({
      requestId          = "$context.requestId"
      ip                 = "$context.identity.sourceIp"
      requestTime        = "$context.requestTime"
      httpMethod         = "$context.httpMethod"
      routeKey           = "$context.routeKey"
      path               = "$context.path"
      status             = "$context.status"
      responseLength     = "$context.responseLength"
      integrationStatus  = "$context.integrationStatus"
      integrationLatency = "$context.integrationLatency"
      latency            = "$context.responseLatency"
      authorizerError    = "$context.authorizer.error"
      principal          = "$context.authorizer.claims.sub"
    })
  }

  tags = var.tags
}
