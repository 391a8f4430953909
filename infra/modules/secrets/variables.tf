variable "name" {
  description = "Name prefix: webhooks-{env}."
  type        = string
}

variable "kms_key_arn" {
  description = "The CMK encrypting the secrets."
  type        = string
}

variable "partner_secret_refs" {
  description = "Secret references the catalog names (partners/{id}/signing, partners/{id}/key…); values are set out of band, never in Terraform."
  type        = set(string)
  default     = []
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
