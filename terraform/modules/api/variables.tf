variable "name" {
  description = "Name prefix of the API, load balancer and log resources."
  type        = string
}

variable "vpc_id" {
  description = "ID of the VPC."
  type        = string
}

variable "private_subnet_ids" {
  description = "Private subnets of the internal ALB and the VPC link."
  type        = list(string)
}

variable "node_security_group_id" {
  description = "Security group of the EKS nodes; the ALB reaches the pods (target type ip) through it on 8081-8082."
  type        = string
}

variable "internal_certificate_arn" {
  description = "ACM certificate ARN for the internal ALB's HTTPS listener (e.g. for api-internal.<your domain>); the VPC link verifies internal_tls_server_name against it."
  type        = string
}

variable "internal_tls_server_name" {
  description = "Server name the API Gateway verifies on the ALB certificate (must be a name of internal_certificate_arn)."
  type        = string
}

variable "jwt_issuer" {
  description = "Issuer (iss) of the OIDC identity provider; API Gateway fetches its JWKS from <issuer>/.well-known/openid-configuration. Same value as the services' AUTH_ISSUER."
  type        = string
}

variable "jwt_audience" {
  description = "Accepted audiences (aud) of the JWT authorizer. Same value as the services' AUTH_AUDIENCE."
  type        = list(string)
  default     = ["cashflow-api"]
}

variable "ledger_port" {
  description = "Container port of the ledger pods."
  type        = number
  default     = 8081
}

variable "consolidation_port" {
  description = "Container port of the consolidation pods."
  type        = number
  default     = 8082
}

variable "throttling_rate_limit" {
  description = "Steady-state requests per second allowed by the API stage."
  type        = number
  default     = 500
}

variable "throttling_burst_limit" {
  description = "Burst of requests allowed by the API stage."
  type        = number
  default     = 1000
}

variable "logs_kms_key_arn" {
  description = "KMS key ARN that encrypts the API access log group."
  type        = string
}

variable "log_retention_days" {
  description = "Retention of the API access logs (CloudWatch) and of the ALB access logs (S3), in days."
  type        = number
  default     = 365
}

variable "tags" {
  description = "Tags applied to every resource."
  type        = map(string)
  default     = {}
}
