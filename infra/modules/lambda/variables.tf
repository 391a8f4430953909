variable "name" {
  description = "Name prefix: webhooks-{env}. Functions are {name}-{role}."
  type        = string
}

variable "package_path" {
  description = "The zip of bin/lambda/bootstrap (go tool task build:lambda)."
  type        = string
}

variable "role_arns" {
  description = "Execution role by workload (iam module)."
  type        = map(string)
}

variable "subnet_ids" {
  description = "Private subnets the functions run in."
  type        = list(string)
}

variable "security_group_ids" {
  description = "Security groups of the functions (allowed to MSK and the endpoints)."
  type        = list(string)
}

variable "msk_cluster_arns" {
  description = "MSK cluster ARN by role: ingress, egress."
  type        = map(string)
}

variable "ingress_topics" {
  description = "The catalog's wh.ingress.* topics, each mapped to the processor."
  type        = set(string)
}

variable "egress_topics" {
  description = "The catalog's wh.egress.* topics, each mapped to the dispatcher."
  type        = set(string)
}

variable "environment" {
  description = "WHP_* variables every function reads (store, brokers, TLS, SASL…)."
  type        = map(string)
}

variable "reserved_concurrency" {
  description = "Reserved concurrency by role: a runaway function never starves the others."
  type        = map(number)
  default     = { ingest = 200, processor = 50, dispatcher = 100, reconcile = 1 }
}

variable "log_retention_days" {
  description = "Function log retention (30 to 90 days)."
  type        = number
  default     = 30
}

variable "log_kms_key_arn" {
  description = "The CMK of the log groups."
  type        = string
}

variable "failure_topic_arn" {
  description = "SNS topic the event source mappings send records that keep failing to (on-failure destination)."
  type        = string
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
