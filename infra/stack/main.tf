# One environment's platform: every module, wired together, named
# webhooks-{env}-{component}. Each of envs/{dev,stage,prod} instantiates it
# with its account, network and retention; the providers and the state
# backend are the environment's.

locals {
  env  = var.env
  name = "webhooks-${local.env}"
  azs  = ["${var.region}a", "${var.region}b", "${var.region}c"]
}

module "network" {
  source = "../modules/network"
  name   = local.name
  region = var.region
  cidr   = var.vpc_cidr
  azs    = local.azs
}

module "kms" {
  source     = "../modules/kms"
  name       = local.name
  region     = var.region
  account_id = var.account_id
}

module "s3" {
  source      = "../modules/s3"
  name        = local.name
  kms_key_arn = module.kms.key_arns["s3"]
}

module "dynamodb" {
  source      = "../modules/dynamodb"
  name        = local.name
  kms_key_arn = module.kms.key_arns["dynamodb"]
}

module "secrets" {
  source              = "../modules/secrets"
  name                = local.name
  kms_key_arn         = module.kms.key_arns["secrets"]
  partner_secret_refs = var.partner_secret_refs
}

module "appconfig" {
  source      = "../modules/appconfig"
  name        = local.name
  env         = local.env
  kms_key_arn = module.kms.key_arns["parameters"]
}

resource "aws_security_group" "lambda" {
  name        = "${local.name}-lambda"
  description = "Lambda functions: out to MSK, the endpoints and HTTPS"
  vpc_id      = module.network.vpc_id
}

resource "aws_vpc_security_group_egress_rule" "lambda_https" {
  security_group_id = aws_security_group.lambda.id
  description       = "HTTPS: endpoints, partners through NAT"
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
}

resource "aws_vpc_security_group_egress_rule" "lambda_msk" {
  security_group_id = aws_security_group.lambda.id
  description       = "MSK SASL/IAM"
  cidr_ipv4         = var.vpc_cidr
  ip_protocol       = "tcp"
  from_port         = 9098
  to_port           = 9098
}

module "msk" {
  source                    = "../modules/msk"
  name                      = local.name
  vpc_id                    = module.network.vpc_id
  subnet_ids                = module.network.private_subnet_ids
  client_security_group_ids = [module.eks.node_security_group_id, aws_security_group.lambda.id]
  kms_key_arn               = module.kms.key_arns["msk"]
  log_kms_key_arn           = module.kms.key_arns["logs"]
  log_retention_days        = var.log_retention_days
}

module "eks" {
  source                      = "../modules/eks"
  name                        = local.name
  vpc_id                      = module.network.vpc_id
  vpc_cidr                    = module.network.vpc_cidr
  subnet_ids                  = module.network.private_subnet_ids
  msk_security_group_id       = module.msk.security_group_id
  endpoints_security_group_id = module.network.endpoints_security_group_id
  kms_key_arn                 = module.kms.key_arns["secrets"]
  log_kms_key_arn             = module.kms.key_arns["logs"]
  log_retention_days          = var.log_retention_days
}

module "iam" {
  source                = "../modules/iam"
  name                  = local.name
  region                = var.region
  account_id            = var.account_id
  vpc_id                = module.network.vpc_id
  eks_oidc_provider_arn = module.eks.oidc_provider_arn
  eks_oidc_provider_url = module.eks.oidc_provider_url
  namespace             = "webhooks-${local.env}"
  table_arns            = module.dynamodb.table_arns
  index_arns            = module.dynamodb.index_arns
  msk_cluster_names     = { ingress = "${local.name}-ingress", egress = "${local.name}-egress" }
  secret_arn_prefix     = module.secrets.secret_arn_prefix
  secrets_kms_key_arn   = module.kms.key_arns["secrets"]
  artifacts_bucket_arn  = module.s3.bucket_arn
}

module "lambda" {
  source             = "../modules/lambda"
  name               = local.name
  package_path       = var.lambda_package
  role_arns          = module.iam.role_arns
  subnet_ids         = module.network.private_subnet_ids
  security_group_ids = [aws_security_group.lambda.id]
  msk_cluster_arns   = module.msk.cluster_arns
  ingress_topics     = var.ingress_topics
  egress_topics      = var.egress_topics
  log_kms_key_arn    = module.kms.key_arns["logs"]
  log_retention_days = var.log_retention_days
  failure_topic_arn  = module.observability.alarm_topic_arn
  environment = {
    WHP_ENV             = local.env
    WHP_STORE           = "dynamodb"
    WHP_REGION          = var.region
    WHP_SECRETS         = "aws"
    WHP_KAFKA_TLS       = "true"
    WHP_KAFKA_SASL      = "aws-msk-iam"
    WHP_INGRESS_BROKERS = module.msk.bootstrap_brokers_iam["ingress"]
    WHP_EGRESS_BROKERS  = module.msk.bootstrap_brokers_iam["egress"]
    WHP_STATUS          = "s3://${module.s3.bucket}/reconciler-status.json"
    WHP_ARTIFACTS       = "s3://${module.s3.bucket}/schemas"
  }
}

module "apigw" {
  source               = "../modules/apigw"
  name                 = local.name
  ingest_invoke_arn    = module.lambda.ingest_invoke_arn
  ingest_function_name = module.lambda.ingest_function_name
  jwt_issuer           = var.producer_jwt_issuer
  jwt_audience         = ["webhooks-${local.env}"]
  log_kms_key_arn      = module.kms.key_arns["logs"]
  log_retention_days   = var.log_retention_days
}

module "observability" {
  source                = "../modules/observability"
  name                  = local.name
  region                = var.region
  kms_key_arn           = module.kms.key_arns["logs"]
  alarm_emails          = var.alarm_emails
  log_retention_days    = var.log_retention_days
  lambda_function_names = values(module.lambda.function_arns)
  eks_cluster_name      = module.eks.cluster_name
  msk_cluster_names     = { ingress = "${local.name}-ingress", egress = "${local.name}-egress" }
  monthly_budget_usd    = var.monthly_budget_usd
}
