output "alarm_topic_arn" {
  description = "The SNS topic alarms notify (also the MSK mappings' on-failure destination)."
  value       = aws_sns_topic.alarms.arn
}

output "log_group_names" {
  description = "Application log group by role."
  value       = { for k, v in aws_cloudwatch_log_group.app : k => v.name }
}
