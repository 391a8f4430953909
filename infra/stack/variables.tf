variable "env" {
  description = "Environment name: dev, stage or prod."
  type        = string
}

variable "account_id" {
  description = "The environment's account."
  type        = string
}

variable "region" {
  description = "The region of the stack."
  type        = string
}

variable "vpc_cidr" {
  description = "The environment's VPC."
  type        = string
}

variable "lambda_package" {
  description = "The zip of bin/lambda/bootstrap."
  type        = string
}

variable "producer_jwt_issuer" {
  description = "Issuer of the producers' JWTs."
  type        = string
}

variable "alarm_emails" {
  description = "Who the alarms page."
  type        = list(string)
}

variable "ingress_topics" {
  description = "The catalog's wh.ingress.* topics (whp reconcile --dry-run lists them)."
  type        = set(string)
}

variable "egress_topics" {
  description = "The catalog's wh.egress.* topics."
  type        = set(string)
}

variable "partner_secret_refs" {
  description = "The catalog's secret references."
  type        = set(string)
}

variable "log_retention_days" {
  description = "Retention of every log group (30 to 90 days)."
  type        = number

  validation {
    condition     = var.log_retention_days >= 30 && var.log_retention_days <= 90
    error_message = "Keep logs 30 to 90 days."
  }
}

variable "monthly_budget_usd" {
  description = "The environment's monthly budget."
  type        = number
}
