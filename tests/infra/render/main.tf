# Renders the policies module with fixed example inputs, so the offline
# checks (tests/infra) read the very documents the root configuration deploys.
terraform {
  required_version = ">= 1.6"
}

variable "account_id" {
  type    = string
  default = "123456789012"
}

variable "github_repository" {
  type    = string
  default = "avachen2005/avarobotics"
}

variable "github_branch" {
  type    = string
  default = "main"
}

module "policies" {
  source = "../../../terraform/modules/policies"

  region     = "ap-northeast-1"
  account_id = var.account_id
  # Two services: the evaluation proves each repository is allowed, others not.
  repository_names  = ["avarobotics-prod-api", "avarobotics-prod-worker"]
  project_name      = "avarobotics-prod-api-build"
  log_group_name    = "/aws/codebuild/avarobotics-prod-api-build"
  github_repository = var.github_repository
  github_branch     = var.github_branch
  oidc_provider_arn = "arn:aws:iam::${var.account_id}:oidc-provider/token.actions.githubusercontent.com"

  export_project_name   = "avarobotics-prod-api-export"
  export_log_group_name = "/aws/codebuild/avarobotics-prod-api-export"
  export_bucket_name    = "avarobotics-prod-api-exports-${var.account_id}"
  state_machine_name    = "avarobotics-prod-api-export"
}

# The same inputs with batch builds on (what the GitHub role gains) and a KMS
# key on the export bucket.
module "policies_options" {
  source = "../../../terraform/modules/policies"

  region              = "ap-northeast-1"
  account_id          = var.account_id
  repository_names    = ["avarobotics-prod-api", "avarobotics-prod-worker"]
  project_name        = "avarobotics-prod-api-build"
  log_group_name      = "/aws/codebuild/avarobotics-prod-api-build"
  github_repository   = var.github_repository
  github_branch       = var.github_branch
  oidc_provider_arn   = "arn:aws:iam::${var.account_id}:oidc-provider/token.actions.githubusercontent.com"
  enable_batch_builds = true

  export_project_name   = "avarobotics-prod-api-export"
  export_log_group_name = "/aws/codebuild/avarobotics-prod-api-export"
  export_bucket_name    = "avarobotics-prod-api-exports-${var.account_id}"
  state_machine_name    = "avarobotics-prod-api-export"
  # The export bucket encrypted with a KMS key: the export role's KMS statement.
  export_kms_key_arn = "arn:aws:kms:ap-northeast-1:${var.account_id}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
}

output "documents" {
  value = {
    codebuild_trust_policy             = module.policies.codebuild_trust_policy
    codebuild_permissions_policy       = module.policies.codebuild_permissions_policy
    codebuild_wait_scan_policy         = module.policies.codebuild_wait_scan_policy
    github_trust_policy                = module.policies.github_trust_policy
    github_permissions_policy          = module.policies.github_permissions_policy
    lifecycle_policy                   = module.policies.lifecycle_policy
    codebuild_batch_permissions_policy = module.policies.codebuild_batch_permissions_policy
    github_permissions_policy_batch    = module.policies_options.github_permissions_policy
    export_trust_policy                = module.policies.export_trust_policy
    export_permissions_policy          = module.policies.export_permissions_policy
    export_permissions_policy_kms      = module.policies_options.export_permissions_policy
    export_bucket_policy               = module.policies.export_bucket_policy
    states_trust_policy                = module.policies.states_trust_policy
    states_permissions_policy          = module.policies.states_permissions_policy
    state_machine_definition           = module.policies.state_machine_definition
  }
}
