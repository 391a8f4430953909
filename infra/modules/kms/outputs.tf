output "key_arns" {
  description = "Key ARN by purpose: msk, dynamodb, s3, secrets, parameters, logs."
  value       = { for k, v in aws_kms_key.this : k => v.arn }
}
