# Remote state in S3, locked with S3's conditional writes (use_lockfile),
# one state per environment and account.
terraform {
  backend "s3" {
    bucket       = "webhooks-dev-terraform-state"
    key          = "webhooks/dev.tfstate"
    region       = "us-east-1"
    encrypt      = true
    use_lockfile = true
  }
}
