# The five tables of the store (store/dynamo.Tables: the policy tests check
# both agree): keys pk (and sk), GSIs, TTL on expires_at_epoch, point-in-time
# recovery, encryption with the CMK, deletion protection, and provisioned
# capacity with target-tracking auto-scaling on reads and writes of every
# table and index.

locals {
  tables = {
    event_schema = {
      sort_key = false
      ttl      = false
      indexes = {
        "status-index"             = { hash = "status", range = "pk" }
        "contains_sensitive-index" = { hash = "contains_sensitive", range = "pk" }
      }
    }
    partner_event_subscription = {
      sort_key = false
      ttl      = false
      indexes = {
        "schema-index" = { hash = "schema_id", range = "pk" }
      }
    }
    event_subscription_kafka = {
      sort_key = false
      ttl      = false
      indexes  = {}
    }
    event_delivery_status = {
      sort_key = true
      ttl      = true
      indexes = {
        "partner-index" = { hash = "partner_id", range = "updated_key" }
        "schema-index"  = { hash = "schema_id", range = "updated_key" }
        # Sparse: only deliveries retrying, held, dead-lettered or
        # cancelled carry these keys (store/dynamo's attrPartnerStatus).
        "partner-status-index" = { hash = "partner_status", range = "updated_key" }
        "schema-status-index"  = { hash = "schema_status", range = "updated_key" }
      }
    }
    idempotency_ledger = {
      sort_key = false
      ttl      = true
      indexes  = {}
    }
  }

  # Every table and index auto-scales reads and writes.
  scaled = merge(
    { for t, _ in local.tables : t => { table = t, resource = "table/${var.name}-${t}", dimension = "table" } },
    merge([for t, v in local.tables : {
      for i, _ in v.indexes : "${t}/${i}" => { table = t, resource = "table/${var.name}-${t}/index/${i}", dimension = "index" }
    }]...)
  )
  scaling = merge([for k, v in local.scaled : {
    "${k}/read"  = merge(v, { metric = "DynamoDBReadCapacityUtilization", unit = "ReadCapacityUnits" })
    "${k}/write" = merge(v, { metric = "DynamoDBWriteCapacityUtilization", unit = "WriteCapacityUnits" })
  }]...)
}

resource "aws_dynamodb_table" "this" {
  for_each                    = local.tables
  name                        = "${var.name}-${each.key}"
  billing_mode                = "PROVISIONED"
  read_capacity               = var.min_capacity
  write_capacity              = var.min_capacity
  hash_key                    = "pk"
  range_key                   = each.value.sort_key ? "sk" : null
  deletion_protection_enabled = true

  attribute {
    name = "pk"
    type = "S"
  }

  # The other key attributes: the sort key and every index's keys.
  dynamic "attribute" {
    for_each = setsubtract(toset(concat(each.value.sort_key ? ["sk"] : [],
    flatten([for i in values(each.value.indexes) : [i.hash, i.range]]))), ["pk"])
    content {
      name = attribute.value
      type = "S"
    }
  }

  dynamic "global_secondary_index" {
    for_each = each.value.indexes
    content {
      name            = global_secondary_index.key
      hash_key        = global_secondary_index.value.hash
      range_key       = global_secondary_index.value.range
      projection_type = "ALL"
      read_capacity   = var.min_capacity
      write_capacity  = var.min_capacity
    }
  }

  dynamic "ttl" {
    for_each = each.value.ttl ? [1] : []
    content {
      attribute_name = "expires_at_epoch"
      enabled        = true
    }
  }

  point_in_time_recovery {
    enabled = true
  }

  server_side_encryption {
    enabled     = true
    kms_key_arn = var.kms_key_arn
  }

  lifecycle {
    # Auto-scaling owns the capacity once the table exists.
    ignore_changes = [read_capacity, write_capacity]
  }

  tags = merge(var.tags, { table = each.key })
}

resource "aws_appautoscaling_target" "this" {
  for_each           = local.scaling
  service_namespace  = "dynamodb"
  resource_id        = each.value.resource
  scalable_dimension = "dynamodb:${each.value.dimension}:${each.value.unit}"
  min_capacity       = var.min_capacity
  max_capacity       = var.max_capacity
  depends_on         = [aws_dynamodb_table.this]
}

resource "aws_appautoscaling_policy" "this" {
  for_each           = local.scaling
  name               = "${var.name}-${replace(each.key, "/", "-")}"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.this[each.key].service_namespace
  resource_id        = aws_appautoscaling_target.this[each.key].resource_id
  scalable_dimension = aws_appautoscaling_target.this[each.key].scalable_dimension

  target_tracking_scaling_policy_configuration {
    target_value = var.target_utilization
    predefined_metric_specification {
      predefined_metric_type = each.value.metric
    }
  }
}
