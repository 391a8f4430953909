output "endpoint" {
  description = "The public ingest API's URL (empty when private)."
  value       = var.private ? "" : aws_apigatewayv2_api.ingest[0].api_endpoint
}
