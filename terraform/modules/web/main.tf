# The cash-flow page in AWS: its static files in a private S3 bucket, served by CloudFront on
# the same host names as the API, whose /v1/* CloudFront forwards to API Gateway. The page calls
# the API same-origin; the identity provider keeps its own origin (ADR 0017), which the CSP's
# connect-src names for the token endpoint. Every answer carries the page's CSP (the same as the
# local gateway's, harness/src/page.rs, plus that origin).

data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

data "aws_cloudfront_cache_policy" "optimized" {
  name = "Managed-CachingOptimized"
}

data "aws_cloudfront_cache_policy" "disabled" {
  name = "Managed-CachingDisabled"
}

data "aws_cloudfront_origin_request_policy" "api" {
  name = "Managed-AllViewerExceptHostHeader"
}

locals {
  account_id   = data.aws_caller_identity.current.account_id
  partition    = data.aws_partition.current.partition
  idp_origin   = regex("^https://[^/]+", var.oidc.token_endpoint)
  api_host     = regex("^https://([^/]+)", var.api_endpoint)[0]
  site_origin  = "site"
  api_origin   = "api"
  csp          = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self' ${local.idp_origin}; font-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
  content_type = { html = "text/html; charset=utf-8", css = "text/css", js = "text/javascript", svg = "image/svg+xml", png = "image/png", json = "application/json" }
  files        = fileset(var.site_dir, "**")
  # What the page reads at start (harness/src/page.rs PageConfig has the same fields).
  page_config = {
    issuer                 = var.oidc.issuer
    client_id              = var.oidc.client_id
    authorization_endpoint = var.oidc.authorization_endpoint
    token_endpoint         = var.oidc.token_endpoint
    end_session_endpoint   = var.oidc.end_session_endpoint
    scope                  = "openid entries:write entries:read balances:read"
    time_zone              = var.book_rules.time_zone
    currency               = var.book_rules.currency
    backdate_days          = var.book_rules.backdate_days
    request_timeout_ms     = 10000
  }
}

module "kms" {
  source = "../kms"

  description = "${var.name} page bucket"
  alias       = "${var.name}-page"
  service_grants = [
    {
      sid       = "CloudFrontReadsThePage"
      service   = "cloudfront.amazonaws.com"
      actions   = ["kms:Decrypt"]
      condition = { StringEquals = { "aws:SourceAccount" = local.account_id } }
    },
  ]
  tags = var.tags
}

# ---------------------------------------------------------------------------
# Access logs (CloudFront's standard logs and the site bucket's access logs)
# ---------------------------------------------------------------------------
resource "aws_s3_bucket" "logs" {
  #checkov:skip=CKV_AWS_145:CloudFront standard log delivery writes with SSE-S3 only; this bucket uses AES256.
  #checkov:skip=CKV_AWS_18:This bucket is itself the access-log sink; logging it to another bucket would recurse without adding value.
  #checkov:skip=CKV_AWS_144:Access logs are operational data with a lifecycle; cross-region replication is not required for them.
  #checkov:skip=CKV2_AWS_62:Nothing consumes object-created events of the access-log bucket.
  bucket        = "${var.name}-page-logs-${local.account_id}"
  force_destroy = false

  tags = var.tags
}

resource "aws_s3_bucket_public_access_block" "logs" {
  bucket                  = aws_s3_bucket.logs.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "logs" {
  #checkov:skip=CKV2_AWS_65:CloudFront standard logging delivers through an ACL grant, which needs ACLs enabled (BucketOwnerPreferred) on its bucket.
  bucket = aws_s3_bucket.logs.id

  rule {
    object_ownership = "BucketOwnerPreferred"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "logs" {
  bucket = aws_s3_bucket.logs.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_versioning" "logs" {
  bucket = aws_s3_bucket.logs.id

  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "logs" {
  bucket = aws_s3_bucket.logs.id

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

# ---------------------------------------------------------------------------
# The page's files
# ---------------------------------------------------------------------------
resource "aws_s3_bucket" "site" {
  #checkov:skip=CKV_AWS_144:The page's files are built from the repository and uploaded by terraform; another region's copy adds nothing a redeploy does not.
  #checkov:skip=CKV2_AWS_62:Nothing consumes object-created events of the page's bucket.
  bucket        = "${var.name}-page-${local.account_id}"
  force_destroy = false

  tags = var.tags
}

resource "aws_s3_bucket_public_access_block" "site" {
  bucket                  = aws_s3_bucket.site.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "site" {
  bucket = aws_s3_bucket.site.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "site" {
  bucket = aws_s3_bucket.site.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = module.kms.arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_versioning" "site" {
  bucket = aws_s3_bucket.site.id

  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "site" {
  bucket = aws_s3_bucket.site.id

  rule {
    id     = "expire-replaced-files"
    status = "Enabled"

    filter {}

    noncurrent_version_expiration {
      noncurrent_days = 30
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }
}

resource "aws_s3_bucket_logging" "site" {
  bucket        = aws_s3_bucket.site.id
  target_bucket = aws_s3_bucket.logs.id
  target_prefix = "s3/"
}

data "aws_iam_policy_document" "site" {
  statement {
    sid       = "CloudFrontReadsThePage"
    actions   = ["s3:GetObject"]
    resources = ["${aws_s3_bucket.site.arn}/*"]

    principals {
      type        = "Service"
      identifiers = ["cloudfront.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "AWS:SourceArn"
      values   = [aws_cloudfront_distribution.this.arn]
    }
  }

  statement {
    sid     = "DenyInsecureTransport"
    effect  = "Deny"
    actions = ["s3:*"]
    resources = [
      aws_s3_bucket.site.arn,
      "${aws_s3_bucket.site.arn}/*",
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

resource "aws_s3_bucket_policy" "site" {
  bucket = aws_s3_bucket.site.id
  policy = data.aws_iam_policy_document.site.json

  depends_on = [aws_s3_bucket_public_access_block.site]
}

# No build step: the files are uploaded as they are in web/, revalidated by browsers on each
# load (their names carry no content hash).
resource "aws_s3_object" "file" {
  for_each = local.files

  bucket        = aws_s3_bucket.site.id
  key           = each.value
  source        = "${var.site_dir}/${each.value}"
  source_hash   = filemd5("${var.site_dir}/${each.value}")
  content_type  = lookup(local.content_type, reverse(split(".", each.value))[0], "application/octet-stream")
  cache_control = "no-cache"
  kms_key_id    = module.kms.arn

  tags = var.tags
}

resource "aws_s3_object" "favicon" {
  bucket        = aws_s3_bucket.site.id
  key           = "favicon.ico"
  source        = "${var.site_dir}/assets/icon.svg"
  source_hash   = filemd5("${var.site_dir}/assets/icon.svg")
  content_type  = "image/svg+xml"
  cache_control = "no-cache"
  kms_key_id    = module.kms.arn

  tags = var.tags
}

resource "aws_s3_object" "config" {
  bucket        = aws_s3_bucket.site.id
  key           = "config.json"
  content       = jsonencode(local.page_config)
  content_type  = "application/json"
  cache_control = "no-store"
  kms_key_id    = module.kms.arn

  tags = var.tags
}

# ---------------------------------------------------------------------------
# CloudFront: the page at /, the API at /v1/*, one origin for the browser
# ---------------------------------------------------------------------------
resource "aws_cloudfront_origin_access_control" "site" {
  name                              = "${var.name}-page"
  description                       = "CloudFront reads the page's bucket (SigV4)"
  origin_access_control_origin_type = "s3"
  signing_behavior                  = "always"
  signing_protocol                  = "sigv4"
}

resource "aws_cloudfront_response_headers_policy" "page" {
  name    = "${var.name}-page"
  comment = "The page's CSP and security headers"

  security_headers_config {
    content_security_policy {
      content_security_policy = local.csp
      override                = true
    }

    content_type_options {
      override = true
    }

    frame_options {
      frame_option = "DENY"
      override     = true
    }

    referrer_policy {
      referrer_policy = "no-referrer"
      override        = true
    }

    strict_transport_security {
      access_control_max_age_sec = 31536000
      include_subdomains         = true
      preload                    = true
      override                   = true
    }
  }
}

resource "aws_cloudfront_distribution" "this" {
  #checkov:skip=CKV_AWS_310:One S3 origin for the page and one API origin; an origin group would need a second copy of each in another region, which this stack does not run.
  #checkov:skip=CKV_AWS_374:Merchants are not restricted by country; the API's JWT authorizer decides who may act.
  #checkov:skip=CKV2_AWS_47:The web ACL (module web-acl, through web_acl_arn) has AWSManagedRulesKnownBadInputsRuleSet, the Log4j rules; checkov does not follow a module input to it.
  enabled             = true
  is_ipv6_enabled     = true
  comment             = "${var.name}: the cash-flow page, and the API under /v1/"
  aliases             = var.domain_names
  default_root_object = "index.html"
  price_class         = var.price_class
  http_version        = "http2and3"
  web_acl_id          = var.web_acl_arn

  origin {
    origin_id                = local.site_origin
    domain_name              = aws_s3_bucket.site.bucket_regional_domain_name
    origin_access_control_id = aws_cloudfront_origin_access_control.site.id
  }

  origin {
    origin_id   = local.api_origin
    domain_name = local.api_host

    custom_origin_config {
      http_port              = 80
      https_port             = 443
      origin_protocol_policy = "https-only"
      origin_ssl_protocols   = ["TLSv1.2"]
      origin_read_timeout    = 30
    }
  }

  default_cache_behavior {
    target_origin_id           = local.site_origin
    allowed_methods            = ["GET", "HEAD"]
    cached_methods             = ["GET", "HEAD"]
    viewer_protocol_policy     = "redirect-to-https"
    compress                   = true
    cache_policy_id            = data.aws_cloudfront_cache_policy.optimized.id
    response_headers_policy_id = aws_cloudfront_response_headers_policy.page.id
  }

  # The API, never cached: every header but Host (Authorization, Idempotency-Key) and the query
  # go to API Gateway, which checks the JWT as before.
  ordered_cache_behavior {
    path_pattern               = "/v1/*"
    target_origin_id           = local.api_origin
    allowed_methods            = ["DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT"]
    cached_methods             = ["GET", "HEAD"]
    viewer_protocol_policy     = "https-only"
    compress                   = true
    cache_policy_id            = data.aws_cloudfront_cache_policy.disabled.id
    origin_request_policy_id   = data.aws_cloudfront_origin_request_policy.api.id
    response_headers_policy_id = aws_cloudfront_response_headers_policy.page.id
  }

  logging_config {
    bucket          = aws_s3_bucket.logs.bucket_domain_name
    prefix          = "cloudfront/"
    include_cookies = false
  }

  restrictions {
    geo_restriction {
      restriction_type = "none"
    }
  }

  viewer_certificate {
    acm_certificate_arn      = var.certificate_arn
    ssl_support_method       = "sni-only"
    minimum_protocol_version = "TLSv1.2_2021"
  }

  tags = var.tags

  depends_on = [aws_s3_bucket_ownership_controls.logs]
}
