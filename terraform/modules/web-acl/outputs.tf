output "arn" {
  description = "ARN of the web ACL (CloudFront's web_acl_id)."
  value       = aws_wafv2_web_acl.this.arn
}
