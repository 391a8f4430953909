output "ingress_brokers" {
  description = "WHP_INGRESS_BROKERS for deploy/ and the functions."
  value       = module.stack.ingress_brokers
}

output "egress_brokers" {
  description = "WHP_EGRESS_BROKERS."
  value       = module.stack.egress_brokers
}

output "role_arns" {
  description = "IRSA role by workload, for deploy/'s service accounts."
  value       = module.stack.role_arns
}

output "ingest_endpoint" {
  description = "The producers' API."
  value       = module.stack.ingest_endpoint
}
