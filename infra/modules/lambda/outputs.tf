output "function_arns" {
  description = "Function ARN by role."
  value       = { for k, v in aws_lambda_function.this : k => v.arn }
}

output "ingest_invoke_arn" {
  description = "The ingest function's invoke ARN (API Gateway integration)."
  value       = aws_lambda_function.this["ingest"].invoke_arn
}

output "ingest_function_name" {
  description = "The ingest function's name."
  value       = aws_lambda_function.this["ingest"].function_name
}
