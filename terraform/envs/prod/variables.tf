variable "region" {
  description = "AWS region of the environment."
  type        = string
  default     = "us-east-1"
}

variable "environment" {
  description = "Environment name, part of every resource name."
  type        = string
  default     = "prod"
}

variable "vpc_cidr" {
  description = "CIDR block of the VPC."
  type        = string
  default     = "10.0.0.0/16"
}

variable "availability_zones" {
  description = "Three availability zone names; empty means <region>a, <region>b, <region>c."
  type        = list(string)
  default     = []
}

variable "eks_public_access_cidrs" {
  description = "CIDRs allowed to reach the EKS public API endpoint (operators' and CI runners' egress IPs). 0.0.0.0/0 is rejected."
  type        = list(string)
}

variable "kubernetes_version" {
  description = "Kubernetes minor version of the EKS cluster (keep it in EKS standard support; extended support costs $0.60/h)."
  type        = string
  default     = "1.35"
}

variable "node_instance_types" {
  description = "Instance types of the EKS managed node group."
  type        = list(string)
  default     = ["m6i.large"]
}

variable "node_desired_size" {
  description = "Desired number of EKS nodes (one per AZ by default)."
  type        = number
  default     = 3
}

variable "aurora_instance_class" {
  description = "Instance class of the two Aurora PostgreSQL instances."
  type        = string
  default     = "db.r6g.large"
}

variable "aurora_engine_version" {
  description = "Aurora PostgreSQL engine version (major 15)."
  type        = string
  default     = "15.8"
}

variable "aurora_iam_auth_enabled" {
  description = "Enable IAM database authentication on Aurora (optional; the services use passwords from their secret)."
  type        = bool
  default     = true
}

variable "redis_node_type" {
  description = "ElastiCache Redis node type."
  type        = string
  default     = "cache.t4g.medium"
}

variable "internal_certificate_arn" {
  description = "ACM certificate ARN of the internal ALB's HTTPS listener (DNS-validated certificate for internal_tls_server_name)."
  type        = string
}

variable "internal_tls_server_name" {
  description = "Host name on internal_certificate_arn that API Gateway verifies when it connects to the internal ALB (e.g. api-internal.example.com)."
  type        = string
}

variable "jwt_issuer" {
  description = "OIDC issuer URL of the identity provider (the services' AUTH_ISSUER)."
  type        = string
}

variable "jwt_audience" {
  description = "Audiences accepted by the API Gateway JWT authorizer (the services' AUTH_AUDIENCE)."
  type        = list(string)
  default     = ["cashflow-api"]
}

variable "alarm_email" {
  description = "Email address subscribed to the alarm topic; empty for none."
  type        = string
  default     = ""
}

variable "log_retention_days" {
  description = "Retention of every CloudWatch log group of the stack, in days."
  type        = number
  default     = 365
}

variable "web_domain_names" {
  description = "Host names of the cash-flow page and, under /v1/, the API (one CloudFront distribution), e.g. [\"cash.example.com\"]."
  type        = list(string)
}

variable "web_certificate_arn" {
  description = "ACM certificate in us-east-1 for web_domain_names (CloudFront)."
  type        = string
}

variable "web_oidc_client_id" {
  description = "The page's client at the identity provider: a public client (no secret) with PKCE, redirect and post-logout URI https://<web_domain_names[0]>/."
  type        = string
  default     = "cashflow-page"
}

variable "web_oidc_endpoints" {
  description = "The identity provider's authorization, token and end-session endpoints (its discovery document's authorization_endpoint, token_endpoint, end_session_endpoint)."
  type = object({
    authorization = string
    token         = string
    end_session   = string
  })
}
