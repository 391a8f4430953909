# Operational flags (runtime/flags): pause a partner, pause a schema's
# ingest, switch a partner's transforms off. The roles read them through the
# AppConfig Agent (whp dev --appconfig-agent-url, the sidecar on EKS, the
# extension on Lambda); deployments roll out gradually and roll back on
# alarm.

resource "aws_appconfig_application" "this" {
  name        = var.name
  description = "whp operational flags"
  tags        = var.tags
}

resource "aws_appconfig_environment" "this" {
  name           = var.env
  application_id = aws_appconfig_application.this.id
  tags           = var.tags
}

resource "aws_appconfig_configuration_profile" "flags" {
  application_id     = aws_appconfig_application.this.id
  name               = "flags"
  description        = "Partner and schema switches"
  location_uri       = "hosted"
  type               = "AWS.Freeform"
  kms_key_identifier = var.kms_key_arn
  tags               = var.tags

  validator {
    type = "JSON_SCHEMA"
    content = jsonencode({
      "$schema" = "http://json-schema.org/draft-07/schema#"
      type      = "object"
      properties = {
        partners = { type = "object", additionalProperties = { type = "object" } }
        schemas  = { type = "object", additionalProperties = { type = "object" } }
      }
      additionalProperties = false
    })
  }
}

resource "aws_appconfig_hosted_configuration_version" "initial" {
  application_id           = aws_appconfig_application.this.id
  configuration_profile_id = aws_appconfig_configuration_profile.flags.configuration_profile_id
  content_type             = "application/json"
  content                  = jsonencode({ partners = {}, schemas = {} })
}

resource "aws_appconfig_deployment_strategy" "gradual" {
  name                           = "${var.name}-gradual"
  deployment_duration_in_minutes = 10
  growth_factor                  = 20
  final_bake_time_in_minutes     = 5
  replicate_to                   = "NONE"
  tags                           = var.tags
}
