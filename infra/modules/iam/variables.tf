variable "name" {
  description = "Name prefix: webhooks-{env}. Roles are {name}-{workload}."
  type        = string
}

variable "region" {
  description = "AWS region."
  type        = string
}

variable "account_id" {
  description = "The environment's account."
  type        = string
}

variable "vpc_id" {
  description = "Requests to DynamoDB and Secrets Manager must come from this VPC (through its endpoints)."
  type        = string
}

variable "eks_oidc_provider_arn" {
  description = "The EKS cluster's IAM OIDC provider (IRSA)."
  type        = string
}

variable "eks_oidc_provider_url" {
  description = "The provider's URL without https://, for the trust conditions."
  type        = string
}

variable "namespace" {
  description = "The Kubernetes namespace of the workloads (service accounts whp-{workload})."
  type        = string
}

variable "table_arns" {
  description = "DynamoDB table ARN by table name (dynamodb module)."
  type        = map(string)
}

variable "index_arns" {
  description = "DynamoDB index ARNs by table name (dynamodb module)."
  type        = map(list(string))
}

variable "msk_cluster_names" {
  description = "MSK cluster name by role: ingress, egress."
  type        = map(string)
}

variable "secret_arn_prefix" {
  description = "ARN prefix of the environment's secrets."
  type        = string
}

variable "secrets_kms_key_arn" {
  description = "The CMK of the secrets (decrypt)."
  type        = string
}

variable "artifacts_bucket_arn" {
  description = "The schema artifacts bucket."
  type        = string
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
