# The two clusters: ingress (accepted events) and egress (deliveries,
# retries, dead letters), so a flood of retries never slows ingest. Three
# brokers over three zones, TLS-only client traffic, IAM auth, storage
# encrypted with the CMK, broker logs to CloudWatch, open monitoring for
# Prometheus. Topics are the reconciler's: automatic creation is off.

locals {
  clusters = toset(["ingress", "egress"])
}

resource "aws_msk_configuration" "this" {
  name           = "${var.name}-kafka"
  kafka_versions = [var.kafka_version]
  server_properties = join("\n", [
    "auto.create.topics.enable=false",
    "default.replication.factor=3",
    "min.insync.replicas=2",
    "unclean.leader.election.enable=false",
    "num.partitions=6",
  ])
}

resource "aws_security_group" "brokers" {
  name        = "${var.name}-msk"
  description = "MSK brokers: the IAM listener, from the platform's clients only"
  vpc_id      = var.vpc_id
  tags        = var.tags
}

resource "aws_vpc_security_group_ingress_rule" "iam_listener" {
  for_each                     = toset(var.client_security_group_ids)
  security_group_id            = aws_security_group.brokers.id
  description                  = "SASL/IAM over TLS"
  referenced_security_group_id = each.value
  ip_protocol                  = "tcp"
  from_port                    = 9098
  to_port                      = 9098
}

resource "aws_cloudwatch_log_group" "brokers" {
  for_each          = local.clusters
  name              = "/aws/msk/${var.name}-${each.key}"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.log_kms_key_arn
  tags              = var.tags
}

resource "aws_msk_cluster" "this" {
  for_each               = local.clusters
  cluster_name           = "${var.name}-${each.key}"
  kafka_version          = var.kafka_version
  number_of_broker_nodes = 3

  broker_node_group_info {
    instance_type   = var.instance_type
    client_subnets  = var.subnet_ids
    security_groups = [aws_security_group.brokers.id]
    storage_info {
      ebs_storage_info {
        volume_size = var.volume_size
      }
    }
  }

  configuration_info {
    arn      = aws_msk_configuration.this.arn
    revision = aws_msk_configuration.this.latest_revision
  }

  encryption_info {
    encryption_at_rest_kms_key_arn = var.kms_key_arn
    encryption_in_transit {
      client_broker = "TLS"
      in_cluster    = true
    }
  }

  client_authentication {
    unauthenticated = false
    sasl {
      iam = true
    }
  }

  open_monitoring {
    prometheus {
      jmx_exporter {
        enabled_in_broker = true
      }
      node_exporter {
        enabled_in_broker = true
      }
    }
  }

  logging_info {
    broker_logs {
      cloudwatch_logs {
        enabled   = true
        log_group = aws_cloudwatch_log_group.brokers[each.key].name
      }
    }
  }

  tags = merge(var.tags, { cluster = each.key })
}
