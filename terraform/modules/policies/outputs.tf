output "codebuild_trust_policy" {
  description = "Trust policy of the CodeBuild service role (JSON)."
  value       = jsonencode(local.codebuild_trust_policy)
}

output "codebuild_permissions_policy" {
  description = "Permission policy of the CodeBuild service role (JSON)."
  value       = jsonencode(local.codebuild_permissions_policy)
}

output "codebuild_wait_scan_policy" {
  description = "Extra permission policy of the CodeBuild service role for `ecrbuild --wait-scan` (JSON)."
  value       = jsonencode(local.codebuild_wait_scan_policy)
}

output "github_trust_policy" {
  description = "Trust policy of the GitHub Actions OIDC role (JSON)."
  value       = jsonencode(local.github_trust_policy)
}

output "github_permissions_policy" {
  description = "Permission policy of the GitHub Actions OIDC role (JSON)."
  value       = jsonencode(local.github_permissions_policy)
}

output "codebuild_batch_permissions_policy" {
  description = "Permission policy of the CodeBuild batch service role (JSON): start, stop and retry builds of the project."
  value       = jsonencode(local.codebuild_batch_permissions_policy)
}

output "lifecycle_policy" {
  description = "ECR lifecycle policy of every service repository (JSON)."
  value       = jsonencode(local.lifecycle_policy)
}

output "staging_tag_pattern" {
  description = "The wildcard of the staging tags the daemon pushes under (ecrbuild-staging-*): mutable in the repository, expired a day after push by the lifecycle policy."
  value       = local.staging_tag_pattern
}

output "github_subject" {
  description = "The only OIDC `sub` claim the GitHub role trusts."
  value       = local.github_subject
}

output "arns" {
  description = "ARNs the documents are scoped to."
  value = {
    repositories     = local.repository_arns
    project          = local.project_arn
    log_group        = local.log_group_arn
    export_project   = local.export_project_arn
    export_log_group = local.export_log_group_arn
    export_bucket    = local.export_bucket_arn
    export_objects   = local.export_objects_arn
    state_machine    = local.state_machine_arn
    codebuild_rule   = local.codebuild_sync_rule_arn
  }
}

output "export_trust_policy" {
  description = "Trust policy of the export CodeBuild role (JSON)."
  value       = jsonencode(local.export_trust_policy)
}

output "export_permissions_policy" {
  description = "Permission policy of the export CodeBuild role (JSON): pull from the service repositories, write under the export prefix, its own logs."
  value       = jsonencode(local.export_permissions_policy)
}

output "export_bucket_policy" {
  description = "Bucket policy of the export bucket (JSON): deny every request without TLS."
  value       = jsonencode(local.export_bucket_policy)
}

output "states_trust_policy" {
  description = "Trust policy of the export state machine's role (JSON)."
  value       = jsonencode(local.states_trust_policy)
}

output "states_permissions_policy" {
  description = "Permission policy of the export state machine's role (JSON)."
  value       = jsonencode(local.states_permissions_policy)
}

output "state_machine_definition" {
  description = "Amazon States Language definition of the export state machine (JSON)."
  value       = jsonencode(local.state_machine_definition)
}

output "export_buildspec" {
  description = "Inline buildspec of the export CodeBuild project (YAML)."
  value       = file("${path.module}/buildspecs/export.yml")
}
