output "api_id" {
  description = "ID of the HTTP API (CloudWatch dimension ApiId)."
  value       = aws_apigatewayv2_api.this.id
}

output "api_endpoint" {
  description = "Public base URL of the HTTP API (default stage, no trailing slash)."
  value       = aws_apigatewayv2_api.this.api_endpoint
}

output "alb_arn" {
  description = "ARN of the internal ALB."
  value       = aws_lb.internal.arn
}

output "alb_arn_suffix" {
  description = "ARN suffix of the internal ALB (CloudWatch dimension LoadBalancer)."
  value       = aws_lb.internal.arn_suffix
}

output "alb_security_group_id" {
  description = "Security group of the internal ALB."
  value       = aws_security_group.alb.id
}

output "ledger_target_group_arn" {
  description = "Target group of the ledger pods: bind it with a TargetGroupBinding (AWS Load Balancer Controller) to Service ledger, port 8081."
  value       = aws_lb_target_group.service["ledger"].arn
}

output "consolidation_target_group_arn" {
  description = "Target group of the consolidation pods: bind it with a TargetGroupBinding to Service consolidation, port 8082."
  value       = aws_lb_target_group.service["consolidation"].arn
}
