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

output "github_subject" {
  description = "The only OIDC `sub` claim the GitHub role trusts."
  value       = local.github_subject
}

output "arns" {
  description = "ARNs the documents are scoped to."
  value = {
    repositories = local.repository_arns
    project      = local.project_arn
    log_group    = local.log_group_arn
  }
}
