variable "name" {
  description = "Name prefix: webhooks-{env}."
  type        = string
}

variable "ingest_invoke_arn" {
  description = "The ingest function's invoke ARN."
  type        = string
}

variable "ingest_function_name" {
  description = "The ingest function's name (invoke permission)."
  type        = string
}

variable "private" {
  description = "Producers are inside the VPC: no public API is made; they reach ingest on EKS through its internal load balancer."
  type        = bool
  default     = false
}

variable "jwt_issuer" {
  description = "Issuer of the producers' JWTs (the authorizer)."
  type        = string
}

variable "jwt_audience" {
  description = "Audience the producers' JWTs must name."
  type        = list(string)
}

variable "log_retention_days" {
  description = "Access log retention (30 to 90 days)."
  type        = number
  default     = 30
}

variable "log_kms_key_arn" {
  description = "The CMK of the access log group."
  type        = string
}

variable "throttle_rate" {
  description = "Steady requests per second across producers."
  type        = number
  default     = 2000
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
