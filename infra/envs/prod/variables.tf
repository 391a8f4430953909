variable "account_id" {
  description = "The prod account."
  type        = string
  default     = "333333333333"
}

variable "region" {
  description = "The region of the stack."
  type        = string
  default     = "us-east-1"
}

variable "backup_region" {
  description = "The region backups are kept in."
  type        = string
  default     = "us-west-2"
}

variable "vpc_cidr" {
  description = "The environment's VPC."
  type        = string
  default     = "10.22.0.0/16"
}

variable "lambda_package" {
  description = "The zip of bin/lambda/bootstrap."
  type        = string
  default     = "../../../bin/lambda/bootstrap.zip"
}

variable "producer_jwt_issuer" {
  description = "Issuer of the producers' JWTs."
  type        = string
  default     = "https://auth.example.com/"
}

variable "alarm_emails" {
  description = "Who the alarms page."
  type        = list(string)
  default     = []
}

variable "ingress_topics" {
  description = "The catalog's wh.ingress.* topics (whp reconcile --dry-run lists them)."
  type        = set(string)
  default     = ["wh.ingress.orders.order.created", "wh.ingress.orders.order.cancelled", "wh.ingress.payments.payment.captured"]
}

variable "egress_topics" {
  description = "The catalog's wh.egress.* topics."
  type        = set(string)
  default     = ["wh.egress.acme.order.created", "wh.egress.acme.order.cancelled", "wh.egress.demo.order.created", "wh.egress.demo.payment.captured"]
}

variable "partner_secret_refs" {
  description = "The catalog's secret references."
  type        = set(string)
  default     = ["partners/acme/signing", "partners/demo/signing"]
}
