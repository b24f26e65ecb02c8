variable "name" {
  description = "Name prefix of the bucket, distribution and policies."
  type        = string
}

variable "domain_names" {
  description = "Host names of the page and the API behind one CloudFront distribution (e.g. [\"cash.example.com\"]): the page at /, the API at /v1/* on the same origin."
  type        = list(string)
}

variable "certificate_arn" {
  description = "ACM certificate in us-east-1 covering domain_names (CloudFront requires us-east-1)."
  type        = string
}

variable "api_endpoint" {
  description = "Base URL of the HTTP API (module api's api_endpoint, https://<id>.execute-api.<region>.amazonaws.com); CloudFront forwards /v1/* to it."
  type        = string
}

variable "web_acl_arn" {
  description = "WAF web ACL of the distribution (module web-acl, created in us-east-1)."
  type        = string
}

variable "site_dir" {
  description = "The page's files (the repository's web/ folder)."
  type        = string
}

variable "oidc" {
  description = "The identity provider as the page uses it (public client, Authorization Code with PKCE): issuer (iss of its ID tokens), client_id, and the authorization, token and end-session endpoints. The token endpoint is called with fetch, so its origin must answer CORS for domain_names (Cognito and Keycloak do); it is added to the CSP's connect-src."
  type = object({
    issuer                 = string
    client_id              = string
    authorization_endpoint = string
    token_endpoint         = string
    end_session_endpoint   = string
  })
}

variable "book_rules" {
  description = "The merchants' book rules the page shows, as the ledger is configured: MERCHANT_TIMEZONE, MERCHANT_CURRENCY, BACKDATE_WINDOW_DAYS."
  type = object({
    time_zone     = string
    currency      = string
    backdate_days = number
  })
  default = {
    time_zone     = "America/Sao_Paulo"
    currency      = "BRL"
    backdate_days = 30
  }
}

variable "price_class" {
  description = "CloudFront price class (PriceClass_All adds South America's edges at a higher price)."
  type        = string
  default     = "PriceClass_All"
}

variable "log_retention_days" {
  description = "Retention of CloudFront's access logs, in days."
  type        = number
  default     = 365
}

variable "tags" {
  description = "Tags applied to every resource."
  type        = map(string)
  default     = {}
}
