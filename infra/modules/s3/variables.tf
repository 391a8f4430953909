variable "name" {
  description = "Name prefix: webhooks-{env}."
  type        = string
}

variable "kms_key_arn" {
  description = "The CMK encrypting the objects."
  type        = string
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
