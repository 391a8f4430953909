output "cluster_arns" {
  description = "Cluster ARN by role: ingress, egress."
  value       = { for k, v in aws_msk_cluster.this : k => v.arn }
}

output "bootstrap_brokers_iam" {
  description = "SASL/IAM bootstrap brokers by role (WHP_INGRESS_BROKERS, WHP_EGRESS_BROKERS)."
  value       = { for k, v in aws_msk_cluster.this : k => v.bootstrap_brokers_sasl_iam }
}

output "security_group_id" {
  description = "The brokers' security group."
  value       = aws_security_group.brokers.id
}
