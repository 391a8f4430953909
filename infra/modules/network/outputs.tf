output "vpc_id" {
  description = "The VPC."
  value       = aws_vpc.this.id
}

output "vpc_cidr" {
  description = "The VPC's CIDR block (NetworkPolicies and security groups open to it)."
  value       = aws_vpc.this.cidr_block
}

output "private_subnet_ids" {
  description = "The three private subnets: MSK, EKS nodes, Lambda."
  value       = aws_subnet.private[*].id
}

output "public_subnet_ids" {
  description = "The three public subnets: NAT gateways and load balancers."
  value       = aws_subnet.public[*].id
}

output "endpoints_security_group_id" {
  description = "The interface endpoints' security group."
  value       = aws_security_group.endpoints.id
}
