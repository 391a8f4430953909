output "role_arns" {
  description = "Role ARN by workload: ingest, processor, dispatcher, reconciler, console (the IRSA annotations of deploy/, the Lambda execution roles)."
  value       = { for k, v in aws_iam_role.this : k => v.arn }
}
