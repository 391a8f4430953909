output "application_id" {
  description = "The AppConfig application."
  value       = aws_appconfig_application.this.id
}

output "flags_profile_id" {
  description = "The flags configuration profile."
  value       = aws_appconfig_configuration_profile.flags.configuration_profile_id
}
