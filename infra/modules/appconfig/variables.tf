variable "name" {
  description = "Name prefix: webhooks-{env}."
  type        = string
}

variable "env" {
  description = "Environment name."
  type        = string
}

variable "kms_key_arn" {
  description = "The CMK (parameters) encrypting the hosted configuration."
  type        = string
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
