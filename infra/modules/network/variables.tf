variable "name" {
  description = "Name prefix of every resource: webhooks-{env}."
  type        = string
}

variable "region" {
  description = "AWS region, for the VPC endpoints' service names."
  type        = string
}

variable "cidr" {
  description = "The VPC's CIDR block; a /16."
  type        = string
  default     = "10.20.0.0/16"

  validation {
    condition     = endswith(var.cidr, "/16")
    error_message = "The VPC is a /16."
  }
}

variable "azs" {
  description = "The three availability zones the subnets span."
  type        = list(string)

  validation {
    condition     = length(var.azs) == 3
    error_message = "Give exactly three availability zones."
  }
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
