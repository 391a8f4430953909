output "ingress_brokers" {
  description = "WHP_INGRESS_BROKERS for deploy/ and the functions."
  value       = module.msk.bootstrap_brokers_iam["ingress"]
}

output "egress_brokers" {
  description = "WHP_EGRESS_BROKERS."
  value       = module.msk.bootstrap_brokers_iam["egress"]
}

output "role_arns" {
  description = "IRSA role by workload, for deploy/'s service accounts."
  value       = module.iam.role_arns
}

output "ingest_endpoint" {
  description = "The producers' API."
  value       = module.apigw.endpoint
}
