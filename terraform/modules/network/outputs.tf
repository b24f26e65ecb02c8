output "vpc_id" {
  description = "ID of the VPC."
  value       = aws_vpc.this.id
}

output "vpc_cidr" {
  description = "CIDR block of the VPC."
  value       = aws_vpc.this.cidr_block
}

output "public_subnet_ids" {
  description = "IDs of the public subnets (NAT gateways only; nothing else is public)."
  value       = aws_subnet.public[*].id
}

output "private_subnet_ids" {
  description = "IDs of the private subnets (EKS nodes, Aurora, Redis, internal ALB, VPC link)."
  value       = aws_subnet.private[*].id
}

output "nat_public_ips" {
  description = "Public IPs of the NAT gateways (egress addresses of the cluster)."
  value       = aws_eip.nat[*].public_ip
}

output "logs_kms_key_arn" {
  description = "ARN of the KMS key that encrypts the platform's CloudWatch log groups."
  value       = module.kms.arn
}
