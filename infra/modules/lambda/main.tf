# One function per role from the one bootstrap (WHP_ROLE selects the
# handler; deploy/README.md): ingest behind API Gateway, processor and
# dispatcher behind MSK event source mappings with partial batch responses,
# the dispatcher's retry drain and the reconciler on schedules. arm64,
# provided.al2023, in the private subnets, X-Ray tracing, reserved
# concurrency, log groups with bounded retention.

locals {
  roles = {
    ingest     = { workload = "ingest", timeout = 30, memory = 256 }
    processor  = { workload = "processor", timeout = 120, memory = 512 }
    dispatcher = { workload = "dispatcher", timeout = 300, memory = 512 }
    reconcile  = { workload = "reconciler", timeout = 300, memory = 512 }
  }
  # An MSK event source mapping takes one topic: one per topic of the
  # catalog, in the role's consumer group.
  mappings = merge(
    { for t in var.ingress_topics : t => { function = "processor", cluster = "ingress", group = "whp-processor" } },
    { for t in var.egress_topics : t => { function = "dispatcher", cluster = "egress", group = "whp-dispatcher" } },
  )
}

resource "aws_cloudwatch_log_group" "this" {
  for_each          = local.roles
  name              = "/aws/lambda/${var.name}-${each.key}"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.log_kms_key_arn
  tags              = var.tags
}

resource "aws_lambda_function" "this" {
  for_each                       = local.roles
  function_name                  = "${var.name}-${each.key}"
  role                           = var.role_arns[each.value.workload]
  filename                       = var.package_path
  source_code_hash               = filebase64sha256(var.package_path)
  handler                        = "bootstrap"
  runtime                        = "provided.al2023"
  architectures                  = ["arm64"]
  timeout                        = each.value.timeout
  memory_size                    = each.value.memory
  reserved_concurrent_executions = var.reserved_concurrency[each.key]

  vpc_config {
    subnet_ids         = var.subnet_ids
    security_group_ids = var.security_group_ids
  }

  tracing_config {
    mode = "Active"
  }

  logging_config {
    log_format = "JSON"
    log_group  = aws_cloudwatch_log_group.this[each.key].name
  }

  environment {
    variables = merge(var.environment, { WHP_ROLE = each.key })
  }

  tags = merge(var.tags, { role = each.key })
}

resource "aws_lambda_event_source_mapping" "msk" {
  for_each                = local.mappings
  function_name           = aws_lambda_function.this[each.value.function].arn
  event_source_arn        = var.msk_cluster_arns[each.value.cluster]
  topics                  = [each.key]
  starting_position       = "TRIM_HORIZON"
  batch_size              = 100
  function_response_types = ["ReportBatchItemFailures"]

  amazon_managed_kafka_event_source_config {
    consumer_group_id = each.value.group
  }

  destination_config {
    on_failure {
      destination_arn = var.failure_topic_arn
    }
  }
}

# The dispatcher drains the retry tiers, and the reconciler applies the
# catalog, every minute.
resource "aws_iam_role" "scheduler" {
  name = "${var.name}-lambda-scheduler"
  assume_role_policy = jsonencode({
    Version   = "2012-10-17"
    Statement = [{ Effect = "Allow", Action = "sts:AssumeRole", Principal = { Service = "scheduler.amazonaws.com" } }]
  })
  tags = var.tags
}

resource "aws_iam_role_policy" "scheduler" {
  name = "${var.name}-lambda-scheduler"
  role = aws_iam_role.scheduler.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect   = "Allow"
      Action   = "lambda:InvokeFunction"
      Resource = [aws_lambda_function.this["dispatcher"].arn, aws_lambda_function.this["reconcile"].arn]
    }]
  })
}

resource "aws_scheduler_schedule" "this" {
  for_each            = toset(["dispatcher", "reconcile"])
  name                = "${var.name}-${each.key}"
  schedule_expression = "rate(1 minute)"

  flexible_time_window {
    mode = "OFF"
  }

  target {
    arn      = aws_lambda_function.this[each.key].arn
    role_arn = aws_iam_role.scheduler.arn
    input    = jsonencode({ source = "aws.scheduler", "detail-type" = "Scheduled Event", detail = {} })
  }
}
