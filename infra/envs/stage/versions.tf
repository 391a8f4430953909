terraform {
  required_version = ">= 1.10"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.60, < 7.0"
    }
    tls = {
      source  = "hashicorp/tls"
      version = ">= 4.0"
    }
  }
}

provider "aws" {
  region              = var.region
  allowed_account_ids = [var.account_id]

  default_tags {
    tags = local.tags
  }
}

# The backup region, for what disaster recovery keeps there (cross-region
# copies of backups and artifacts); no resource uses it yet.
provider "aws" {
  alias               = "backup"
  region              = var.backup_region
  allowed_account_ids = [var.account_id]

  default_tags {
    tags = local.tags
  }
}
