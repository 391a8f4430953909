variable "name" {
  description = "Name prefix: webhooks-{env}."
  type        = string
}

variable "region" {
  description = "AWS region (dashboard widgets)."
  type        = string
}

variable "kms_key_arn" {
  description = "The CMK of the SNS topic and log groups."
  type        = string
}

variable "alarm_emails" {
  description = "Who the alarms page (subscribed to the SNS topic)."
  type        = list(string)
  default     = []
}

variable "log_retention_days" {
  description = "Application log retention (30 to 90 days)."
  type        = number
  default     = 30

  validation {
    condition     = var.log_retention_days >= 30 && var.log_retention_days <= 90
    error_message = "Keep logs 30 to 90 days."
  }
}

variable "lambda_function_names" {
  description = "The functions whose errors and throttles alarm."
  type        = list(string)
}

variable "eks_cluster_name" {
  description = "The EKS cluster whose pod restarts alarm (Container Insights)."
  type        = string
}

variable "msk_cluster_names" {
  description = "MSK cluster name by role: ingress, egress."
  type        = map(string)
}

variable "retries_per_minute_threshold" {
  description = "Retries scheduled per minute above which to alarm."
  type        = number
  default     = 100
}

variable "consumer_lag_threshold" {
  description = "Records of lag above which to alarm."
  type        = number
  default     = 10000
}

variable "monthly_budget_usd" {
  description = "The environment's monthly budget; alerts at 80 % forecast and 100 % actual."
  type        = number
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
