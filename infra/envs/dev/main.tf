# The dev environment: the whole platform (../../stack) in the dev
# account.

locals {
  env  = "dev"
  tags = { project = "webhooks", env = local.env, managed_by = "terraform" }
}

module "stack" {
  source              = "../../stack"
  env                 = local.env
  account_id          = var.account_id
  region              = var.region
  vpc_cidr            = var.vpc_cidr
  lambda_package      = var.lambda_package
  producer_jwt_issuer = var.producer_jwt_issuer
  alarm_emails        = var.alarm_emails
  ingress_topics      = var.ingress_topics
  egress_topics       = var.egress_topics
  partner_secret_refs = var.partner_secret_refs
  log_retention_days  = 30
  monthly_budget_usd  = 500
}
