variable "name" {
  description = "Name prefix: webhooks-{env}. Tables are {name}-{table}, as the runtime names them (store.TableName)."
  type        = string
}

variable "kms_key_arn" {
  description = "The CMK the tables are encrypted with."
  type        = string
}

variable "min_capacity" {
  description = "Least provisioned RCU and WCU per table and index."
  type        = number
  default     = 5
}

variable "max_capacity" {
  description = "Most RCU and WCU auto-scaling may provision."
  type        = number
  default     = 2000
}

variable "target_utilization" {
  description = "Consumed over provisioned capacity auto-scaling aims at, percent."
  type        = number
  default     = 70
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
