# The producers' API in front of the ingest function: an HTTP API (payload
# format 2.0, what runtime/lambdahttp serves) with a JWT authorizer on every
# route, access logs and throttling.
#
# private = true is for producers inside the VPC: no API Gateway is made
# (HTTP APIs have no private endpoint, and a private REST API would speak
# payload format 1.0); producers reach ingest on EKS through the internal
# load balancer of deploy/'s whp-ingest Service instead.

locals {
  n = var.private ? 0 : 1
}

resource "aws_cloudwatch_log_group" "access" {
  count             = local.n
  name              = "/aws/apigateway/${var.name}-ingest"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.log_kms_key_arn
  tags              = var.tags
}

resource "aws_apigatewayv2_api" "ingest" {
  count         = local.n
  name          = "${var.name}-ingest"
  protocol_type = "HTTP"
  tags          = var.tags
}

resource "aws_apigatewayv2_authorizer" "jwt" {
  count            = local.n
  api_id           = aws_apigatewayv2_api.ingest[0].id
  name             = "${var.name}-producers"
  authorizer_type  = "JWT"
  identity_sources = ["$request.header.Authorization"]
  jwt_configuration {
    issuer   = var.jwt_issuer
    audience = var.jwt_audience
  }
}

resource "aws_apigatewayv2_integration" "ingest" {
  count                  = local.n
  api_id                 = aws_apigatewayv2_api.ingest[0].id
  integration_type       = "AWS_PROXY"
  integration_uri        = var.ingest_invoke_arn
  payload_format_version = "2.0"
  timeout_milliseconds   = 29000
}

resource "aws_apigatewayv2_route" "this" {
  for_each           = var.private ? toset([]) : toset(["POST /v1/events", "GET /v1/events/{id}"])
  api_id             = aws_apigatewayv2_api.ingest[0].id
  route_key          = each.key
  target             = "integrations/${aws_apigatewayv2_integration.ingest[0].id}"
  authorization_type = "JWT"
  authorizer_id      = aws_apigatewayv2_authorizer.jwt[0].id
}

resource "aws_apigatewayv2_stage" "default" {
  count       = local.n
  api_id      = aws_apigatewayv2_api.ingest[0].id
  name        = "$default"
  auto_deploy = true

  default_route_settings {
    throttling_rate_limit  = var.throttle_rate
    throttling_burst_limit = var.throttle_rate * 2
  }

  access_log_settings {
    destination_arn = aws_cloudwatch_log_group.access[0].arn
    format = jsonencode({
      requestId = "$context.requestId", ip = "$context.identity.sourceIp", route = "$context.routeKey",
      status    = "$context.status", latency = "$context.responseLatency", principal = "$context.authorizer.claims.sub"
    })
  }

  tags = var.tags
}

resource "aws_lambda_permission" "apigw" {
  count         = local.n
  statement_id  = "AllowAPIGateway"
  action        = "lambda:InvokeFunction"
  function_name = var.ingest_function_name
  principal     = "apigateway.amazonaws.com"
  source_arn    = "${aws_apigatewayv2_api.ingest[0].execution_arn}/*/*"
}
