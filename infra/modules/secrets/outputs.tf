output "secret_arns" {
  description = "Secret ARN by reference."
  value       = { for k, v in aws_secretsmanager_secret.this : k => v.arn }
}

output "secret_arn_prefix" {
  description = "ARN prefix of every secret of the environment, for IAM policies."
  value       = "arn:aws:secretsmanager:*:*:secret:${var.name}/*"
}
