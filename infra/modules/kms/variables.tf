variable "name" {
  description = "Name prefix: webhooks-{env}."
  type        = string
}

variable "region" {
  description = "AWS region (CloudWatch Logs' service principal)."
  type        = string
}

variable "account_id" {
  description = "The account the keys belong to."
  type        = string
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
