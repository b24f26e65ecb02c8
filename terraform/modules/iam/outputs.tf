output "ledger_role_arn" {
  description = "IRSA role of system:serviceaccount:cashflow:ledger (eks.amazonaws.com/role-arn annotation)."
  value       = aws_iam_role.this["ledger"].arn
}

output "consolidation_role_arn" {
  description = "IRSA role of system:serviceaccount:cashflow:consolidation."
  value       = aws_iam_role.this["consolidation"].arn
}

output "keda_role_arn" {
  description = "IRSA role of the KEDA operator (sqs:GetQueueAttributes on cashflow-entries)."
  value       = aws_iam_role.this["keda"].arn
}
