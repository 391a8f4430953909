# What on-call sees and is paged by: the application log groups (bounded
# retention), alarms on the platform's metrics — which the Lambda functions
# write as CloudWatch embedded metric format in namespace "whp" and the
# EKS roles expose to Prometheus (docs/observability.md) — and on AWS's own
# (Lambda, MSK lag, Container Insights), an SNS topic they notify, a
# dashboard, and a budget.

resource "aws_sns_topic" "alarms" {
  name              = "${var.name}-alarms"
  kms_master_key_id = var.kms_key_arn
  tags              = var.tags
}

resource "aws_sns_topic_subscription" "email" {
  for_each  = toset(var.alarm_emails)
  topic_arn = aws_sns_topic.alarms.arn
  protocol  = "email"
  endpoint  = each.value
}

resource "aws_cloudwatch_log_group" "app" {
  for_each          = toset(["ingest", "processor", "dispatcher", "reconciler", "console"])
  name              = "/whp/${var.name}/${each.key}"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
  tags              = var.tags
}

locals {
  alarm = { alarm_actions = [aws_sns_topic.alarms.arn], ok_actions = [aws_sns_topic.alarms.arn] }
}

resource "aws_cloudwatch_metric_alarm" "retries" {
  alarm_name          = "${var.name}-retries-high"
  alarm_description   = "Retries scheduled above threshold: a partner is failing (docs/runbook.md#retries-high)."
  namespace           = "whp"
  metric_name         = "whp.delivery.retries"
  statistic           = "Sum"
  period              = 60
  evaluation_periods  = 5
  threshold           = var.retries_per_minute_threshold
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm.alarm_actions
  ok_actions          = local.alarm.ok_actions
  tags                = var.tags
}

resource "aws_cloudwatch_metric_alarm" "dlq_growth" {
  alarm_name          = "${var.name}-dlq-growth"
  alarm_description   = "Deliveries dead-lettered: attempts exhausted or final failures (docs/runbook.md#dlq-growth)."
  namespace           = "whp"
  metric_name         = "whp.deliveries"
  dimensions          = { outcome = "dead_lettered" }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm.alarm_actions
  ok_actions          = local.alarm.ok_actions
  tags                = var.tags
}

resource "aws_cloudwatch_metric_alarm" "partner_5xx" {
  alarm_name          = "${var.name}-partner-5xx"
  alarm_description   = "Delivery attempts failing with retryable answers (5xx, 429, timeouts) (docs/runbook.md#partner-5xx)."
  namespace           = "whp"
  metric_name         = "whp.delivery.attempt.duration"
  dimensions          = { outcome = "retryable" }
  extended_statistic  = "SampleCount"
  period              = 300
  evaluation_periods  = 2
  threshold           = 50
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm.alarm_actions
  ok_actions          = local.alarm.ok_actions
  tags                = var.tags
}

resource "aws_cloudwatch_metric_alarm" "consumer_lag" {
  for_each            = var.msk_cluster_names
  alarm_name          = "${var.name}-${each.key}-consumer-lag"
  alarm_description   = "Consumers of the ${each.key} cluster falling behind (docs/runbook.md#consumer-lag)."
  namespace           = "AWS/Kafka"
  metric_name         = "SumOffsetLag"
  dimensions          = { "Cluster Name" = each.value }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 10
  threshold           = var.consumer_lag_threshold
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm.alarm_actions
  ok_actions          = local.alarm.ok_actions
  tags                = var.tags
}

resource "aws_cloudwatch_metric_alarm" "pod_restarts" {
  alarm_name          = "${var.name}-pod-restarts"
  alarm_description   = "whp pods restarting (docs/runbook.md#pod-restarts)."
  namespace           = "ContainerInsights"
  metric_name         = "pod_number_of_container_restarts"
  dimensions          = { ClusterName = var.eks_cluster_name }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 3
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm.alarm_actions
  ok_actions          = local.alarm.ok_actions
  tags                = var.tags
}

resource "aws_cloudwatch_metric_alarm" "lambda_errors" {
  for_each            = toset(var.lambda_function_names)
  alarm_name          = "${each.value}-errors"
  alarm_description   = "Invocations of ${each.value} failing (docs/runbook.md#lambda-errors)."
  namespace           = "AWS/Lambda"
  metric_name         = "Errors"
  dimensions          = { FunctionName = each.value }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 5
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm.alarm_actions
  ok_actions          = local.alarm.ok_actions
  tags                = var.tags
}

resource "aws_cloudwatch_metric_alarm" "lambda_throttles" {
  for_each            = toset(var.lambda_function_names)
  alarm_name          = "${each.value}-throttles"
  alarm_description   = "Invocations of ${each.value} throttled: reserved concurrency reached (docs/runbook.md#lambda-throttles)."
  namespace           = "AWS/Lambda"
  metric_name         = "Throttles"
  dimensions          = { FunctionName = each.value }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm.alarm_actions
  ok_actions          = local.alarm.ok_actions
  tags                = var.tags
}

resource "aws_cloudwatch_dashboard" "this" {
  dashboard_name = var.name
  dashboard_body = jsonencode({
    widgets = [
      { type = "metric", width = 12, height = 6, properties = { title = "Deliveries by outcome", region = var.region, stat = "Sum", period = 60,
      metrics = [["whp", "whp.deliveries", "outcome", "delivered"], ["whp", "whp.deliveries", "outcome", "dead_lettered"], ["whp", "whp.delivery.retries"]] } },
      { type = "metric", width = 12, height = 6, properties = { title = "End to end p95 (s)", region = var.region, stat = "p95", period = 60,
      metrics = [["whp", "whp.delivery.end_to_end.duration"]] } },
      { type = "metric", width = 12, height = 6, properties = { title = "Validation", region = var.region, stat = "Sum", period = 60,
      metrics = [["whp", "whp.ingest.validations", "result", "valid"], ["whp", "whp.ingest.validations", "result", "invalid"]] } },
      { type = "metric", width = 12, height = 6, properties = { title = "Consumer lag", region = var.region, stat = "Maximum", period = 60,
      metrics = [for role, cluster in var.msk_cluster_names : ["AWS/Kafka", "SumOffsetLag", "Cluster Name", cluster]] } },
      { type = "alarm", width = 24, height = 4, properties = { title = "Alarms", alarms = concat(
        [aws_cloudwatch_metric_alarm.retries.arn, aws_cloudwatch_metric_alarm.dlq_growth.arn, aws_cloudwatch_metric_alarm.partner_5xx.arn, aws_cloudwatch_metric_alarm.pod_restarts.arn],
      [for a in aws_cloudwatch_metric_alarm.consumer_lag : a.arn]) } },
    ]
  })
}

resource "aws_budgets_budget" "this" {
  name         = var.name
  budget_type  = "COST"
  limit_amount = tostring(var.monthly_budget_usd)
  limit_unit   = "USD"
  time_unit    = "MONTHLY"

  cost_filter {
    name   = "TagKeyValue"
    values = ["user:project$webhooks"]
  }

  notification {
    comparison_operator       = "GREATER_THAN"
    threshold                 = 80
    threshold_type            = "PERCENTAGE"
    notification_type         = "FORECASTED"
    subscriber_sns_topic_arns = [aws_sns_topic.alarms.arn]
  }

  notification {
    comparison_operator       = "GREATER_THAN"
    threshold                 = 100
    threshold_type            = "PERCENTAGE"
    notification_type         = "ACTUAL"
    subscriber_sns_topic_arns = [aws_sns_topic.alarms.arn]
  }
}
