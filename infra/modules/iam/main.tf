# One role per workload, each with only what it does: DynamoDB actions on
# the named tables and indexes (never "*"), kafka-cluster actions on the
# named clusters, topics and groups, secrets under the environment's
# prefix, and DynamoDB and Secrets Manager only from the VPC. A role is
# assumable by its Kubernetes service account (IRSA) and by Lambda, the
# two places a workload runs.

locals {
  kafka = { for role, cluster in var.msk_cluster_names : role => {
    cluster = "arn:aws:kafka:${var.region}:${var.account_id}:cluster/${cluster}/*"
    topic   = "arn:aws:kafka:${var.region}:${var.account_id}:topic/${cluster}/*"
    group   = "arn:aws:kafka:${var.region}:${var.account_id}:group/${cluster}/*"
  } }
  t = var.table_arns
  i = var.index_arns

  read  = ["dynamodb:GetItem", "dynamodb:Query", "dynamodb:Scan", "dynamodb:BatchGetItem", "dynamodb:DescribeTable"]
  write = ["dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:BatchWriteItem", "dynamodb:ConditionCheckItem"]

  connect = ["kafka-cluster:Connect", "kafka-cluster:DescribeCluster"]
  consume = ["kafka-cluster:ReadData", "kafka-cluster:DescribeTopic"]
  produce = ["kafka-cluster:WriteData", "kafka-cluster:DescribeTopic", "kafka-cluster:WriteDataIdempotently"]
  group   = ["kafka-cluster:AlterGroup", "kafka-cluster:DescribeGroup"]

  # Statements by workload: sid → actions, resources, and whether the VPC
  # condition applies.
  workloads = {
    ingest = [
      { sid = "Schemas", actions = local.read, resources = concat([local.t.event_schema], local.i.event_schema), vpc = true },
      { sid = "Ledger", actions = concat(local.read, local.write), resources = [local.t.idempotency_ledger], vpc = true },
      { sid = "Status", actions = local.read, resources = concat([local.t.event_delivery_status], local.i.event_delivery_status), vpc = true },
      { sid = "IngressConnect", actions = local.connect, resources = [local.kafka.ingress.cluster], vpc = false },
      { sid = "IngressProduce", actions = local.produce, resources = ["${local.kafka.ingress.topic}/wh.ingress.*"], vpc = false },
    ]
    processor = [
      { sid = "Read", actions = local.read, resources = concat([local.t.event_schema, local.t.partner_event_subscription], local.i.event_schema, local.i.partner_event_subscription), vpc = true },
      { sid = "Status", actions = concat(local.read, local.write), resources = concat([local.t.event_delivery_status, local.t.event_subscription_kafka], local.i.event_delivery_status), vpc = true },
      { sid = "IngressConnect", actions = local.connect, resources = [local.kafka.ingress.cluster], vpc = false },
      { sid = "IngressConsume", actions = local.consume, resources = ["${local.kafka.ingress.topic}/wh.ingress.*"], vpc = false },
      { sid = "IngressGroup", actions = local.group, resources = ["${local.kafka.ingress.group}/whp-processor"], vpc = false },
      { sid = "EgressConnect", actions = local.connect, resources = [local.kafka.egress.cluster], vpc = false },
      { sid = "EgressProduce", actions = local.produce, resources = ["${local.kafka.egress.topic}/wh.egress.*"], vpc = false },
    ]
    dispatcher = [
      { sid = "Subscriptions", actions = concat(local.read, ["dynamodb:PutItem"]), resources = concat([local.t.partner_event_subscription], local.i.partner_event_subscription), vpc = true },
      { sid = "Status", actions = concat(local.read, local.write), resources = concat([local.t.event_delivery_status, local.t.event_subscription_kafka, local.t.idempotency_ledger], local.i.event_delivery_status), vpc = true },
      { sid = "Secrets", actions = ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"], resources = [var.secret_arn_prefix], vpc = true },
      { sid = "SecretsKey", actions = ["kms:Decrypt"], resources = [var.secrets_kms_key_arn], vpc = false },
      { sid = "EgressConnect", actions = local.connect, resources = [local.kafka.egress.cluster], vpc = false },
      { sid = "EgressConsume", actions = local.consume, resources = ["${local.kafka.egress.topic}/wh.egress.*", "${local.kafka.egress.topic}/wh.retry.*"], vpc = false },
      { sid = "EgressProduce", actions = local.produce, resources = ["${local.kafka.egress.topic}/wh.retry.*", "${local.kafka.egress.topic}/wh.dlq.*"], vpc = false },
      { sid = "EgressGroups", actions = local.group, resources = ["${local.kafka.egress.group}/whp-dispatcher", "${local.kafka.egress.group}/whp-retry"], vpc = false },
    ]
    reconciler = [
      { sid = "Tables", actions = concat(local.read, local.write), resources = concat(values(local.t), flatten(values(local.i))), vpc = true },
      { sid = "Artifacts", actions = ["s3:PutObject", "s3:GetObject", "s3:ListBucket"], resources = [var.artifacts_bucket_arn, "${var.artifacts_bucket_arn}/*"], vpc = false },
      { sid = "Connect", actions = concat(local.connect, ["kafka-cluster:AlterCluster"]), resources = [for k in values(local.kafka) : k.cluster], vpc = false },
      { sid = "Topics", actions = ["kafka-cluster:CreateTopic", "kafka-cluster:AlterTopic", "kafka-cluster:DeleteTopic", "kafka-cluster:DescribeTopic", "kafka-cluster:DescribeTopicDynamicConfiguration", "kafka-cluster:AlterTopicDynamicConfiguration"], resources = [for k in values(local.kafka) : "${k.topic}/wh.*"], vpc = false },
    ]
    console = [
      { sid = "Read", actions = local.read, resources = concat(values(local.t), flatten(values(local.i))), vpc = true },
      { sid = "Decide", actions = ["dynamodb:PutItem"], resources = [local.t.partner_event_subscription, local.t.event_delivery_status], vpc = true },
      { sid = "IngressConnect", actions = local.connect, resources = [local.kafka.ingress.cluster], vpc = false },
      { sid = "IngressRead", actions = local.consume, resources = ["${local.kafka.ingress.topic}/wh.ingress.*"], vpc = false },
      { sid = "EgressConnect", actions = local.connect, resources = [local.kafka.egress.cluster], vpc = false },
      { sid = "Redrive", actions = concat(local.consume, local.produce), resources = ["${local.kafka.egress.topic}/wh.dlq.*", "${local.kafka.egress.topic}/wh.egress.*"], vpc = false },
    ]
  }
}

data "aws_iam_policy_document" "trust" {
  for_each = local.workloads

  statement {
    sid     = "ServiceAccount"
    actions = ["sts:AssumeRoleWithWebIdentity"]
    principals {
      type        = "Federated"
      identifiers = [var.eks_oidc_provider_arn]
    }
    condition {
      test     = "StringEquals"
      variable = "${var.eks_oidc_provider_url}:sub"
      values   = ["system:serviceaccount:${var.namespace}:whp-${each.key}"]
    }
    condition {
      test     = "StringEquals"
      variable = "${var.eks_oidc_provider_url}:aud"
      values   = ["sts.amazonaws.com"]
    }
  }

  statement {
    sid     = "Lambda"
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [var.account_id]
    }
  }
}

data "aws_iam_policy_document" "workload" {
  for_each = local.workloads

  dynamic "statement" {
    for_each = each.value
    content {
      sid       = statement.value.sid
      actions   = statement.value.actions
      resources = statement.value.resources
      dynamic "condition" {
        for_each = statement.value.vpc ? [1] : []
        content {
          test     = "StringEquals"
          variable = "aws:SourceVpc"
          values   = [var.vpc_id]
        }
      }
    }
  }
}

resource "aws_iam_role" "this" {
  for_each             = local.workloads
  name                 = "${var.name}-${each.key}"
  assume_role_policy   = data.aws_iam_policy_document.trust[each.key].json
  max_session_duration = 3600
  tags                 = merge(var.tags, { workload = each.key })
}

resource "aws_iam_role_policy" "this" {
  for_each = local.workloads
  name     = "${var.name}-${each.key}"
  role     = aws_iam_role.this[each.key].id
  policy   = data.aws_iam_policy_document.workload[each.key].json
}

# Lambda functions also write their logs and traces and reach the VPC.
resource "aws_iam_role_policy_attachment" "lambda_vpc" {
  for_each   = local.workloads
  role       = aws_iam_role.this[each.key].name
  policy_arn = "arn:aws:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole"
}

resource "aws_iam_role_policy_attachment" "xray" {
  for_each   = local.workloads
  role       = aws_iam_role.this[each.key].name
  policy_arn = "arn:aws:iam::aws:policy/AWSXRayDaemonWriteAccess"
}
