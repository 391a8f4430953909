output "bucket" {
  description = "The artifacts bucket's name."
  value       = aws_s3_bucket.artifacts.bucket
}

output "bucket_arn" {
  description = "The artifacts bucket's ARN."
  value       = aws_s3_bucket.artifacts.arn
}
