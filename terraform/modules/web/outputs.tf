output "distribution_domain_name" {
  description = "CloudFront's own host name: point domain_names at it (CNAME, or a Route 53 alias)."
  value       = aws_cloudfront_distribution.this.domain_name
}

output "distribution_hosted_zone_id" {
  description = "Hosted zone of the distribution, for a Route 53 alias record."
  value       = aws_cloudfront_distribution.this.hosted_zone_id
}

output "page_url" {
  description = "The page's URL; its API is under the same origin at /v1/."
  value       = "https://${var.domain_names[0]}/"
}

output "site_bucket" {
  description = "Bucket holding the page's files."
  value       = aws_s3_bucket.site.id
}
