variable "name" {
  description = "Name prefix: webhooks-{env}; the cluster is named after it."
  type        = string
}

variable "kubernetes_version" {
  description = "EKS Kubernetes version."
  type        = string
  default     = "1.33"
}

variable "vpc_id" {
  description = "The VPC."
  type        = string
}

variable "vpc_cidr" {
  description = "The VPC's CIDR (the API endpoint is reachable from it only)."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets of the nodes and the control plane's interfaces."
  type        = list(string)
}

variable "msk_security_group_id" {
  description = "The brokers' security group: the nodes reach it on 9098."
  type        = string
}

variable "endpoints_security_group_id" {
  description = "The interface endpoints' security group: the nodes reach it on 443."
  type        = string
}

variable "kms_key_arn" {
  description = "CMK encrypting Kubernetes secrets."
  type        = string
}

variable "node_instance_types" {
  description = "Instance types of the managed node group (arm64)."
  type        = list(string)
  default     = ["m7g.large"]
}

variable "node_min" {
  description = "Fewest nodes."
  type        = number
  default     = 3
}

variable "node_max" {
  description = "Most nodes."
  type        = number
  default     = 12
}

variable "log_retention_days" {
  description = "Control plane log retention (30 to 90 days)."
  type        = number
  default     = 30
}

variable "log_kms_key_arn" {
  description = "The CMK of the log group."
  type        = string
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
