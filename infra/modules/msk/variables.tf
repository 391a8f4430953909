variable "name" {
  description = "Name prefix: webhooks-{env}."
  type        = string
}

variable "vpc_id" {
  description = "The VPC the brokers live in."
  type        = string
}

variable "subnet_ids" {
  description = "Three private subnets, one broker in each."
  type        = list(string)

  validation {
    condition     = length(var.subnet_ids) == 3
    error_message = "The brokers span three subnets in three zones."
  }
}

variable "client_security_group_ids" {
  description = "Security groups of the clients (EKS nodes, Lambda) allowed to the brokers' IAM listener."
  type        = list(string)
}

variable "kms_key_arn" {
  description = "The CMK encrypting the brokers' storage."
  type        = string
}

variable "log_kms_key_arn" {
  description = "The CMK encrypting the broker log group."
  type        = string
}

variable "kafka_version" {
  description = "Kafka version (3.x)."
  type        = string
  default     = "3.8.x"

  validation {
    condition     = startswith(var.kafka_version, "3.")
    error_message = "Kafka 3.x."
  }
}

variable "instance_type" {
  description = "Broker instance type."
  type        = string
  default     = "kafka.m7g.large"
}

variable "volume_size" {
  description = "Storage per broker, GiB."
  type        = number
  default     = 500
}

variable "log_retention_days" {
  description = "Broker log retention in CloudWatch (30 to 90 days)."
  type        = number
  default     = 30
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
