# The secrets the platform reads through its provider (WHP_SECRETS=aws):
# partners' signing and auth secrets, the console's OIDC client secret and
# session key, the operational events webhook key. Terraform creates the
# containers, encrypted with the CMK; values are put by people or rotation,
# never in state.

locals {
  platform = toset(["console/oidc-client-secret", "console/session-key", "ops/webhook/signing"])
}

resource "aws_secretsmanager_secret" "this" {
  for_each                = setunion(local.platform, var.partner_secret_refs)
  name                    = "${var.name}/${each.key}"
  kms_key_id              = var.kms_key_arn
  recovery_window_in_days = 30
  tags                    = var.tags
}
