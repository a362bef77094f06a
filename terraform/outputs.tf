output "repository_url" {
  description = "URL of the primary service's ECR repository (<registry>/<name>); the only repository by default."
  value       = aws_ecr_repository.image[local.primary_service].repository_url
}

output "repository_arn" {
  description = "ARN of the primary service's ECR repository."
  value       = aws_ecr_repository.image[local.primary_service].arn
}

output "repository_urls" {
  description = "Service name => ECR repository URL."
  value       = { for service, repository in aws_ecr_repository.image : service => repository.repository_url }
}

output "repository_arns" {
  description = "Service name => ECR repository ARN."
  value       = { for service, repository in aws_ecr_repository.image : service => repository.arn }
}

output "codebuild_project_name" {
  description = "Name of the CodeBuild project; set it as the GitHub variable CODEBUILD_PROJECT."
  value       = aws_codebuild_project.image.name
}

output "codebuild_role_arn" {
  description = "ARN of the CodeBuild service role."
  value       = aws_iam_role.codebuild.arn
}

output "codebuild_batch_role_arn" {
  description = "ARN of the CodeBuild batch service role (null unless enable_batch_builds)."
  value       = var.enable_batch_builds ? aws_iam_role.codebuild_batch[0].arn : null
}

output "codebuild_batch_enabled" {
  description = "Whether the project runs batch builds; set it as the GitHub variable CODEBUILD_BATCH (true/false)."
  value       = var.enable_batch_builds
}

output "github_role_arn" {
  description = "ARN of the role the GitHub workflow assumes; set it as the GitHub variable AWS_ROLE_ARN."
  value       = aws_iam_role.github.arn
}

output "github_oidc_provider_arn" {
  description = "ARN of the GitHub OIDC provider in use (created here or passed in)."
  value       = local.github_oidc_provider_arn
}

output "log_group_name" {
  description = "CloudWatch log group of the builds."
  value       = aws_cloudwatch_log_group.build.name
}

output "export_state_machine_arn" {
  description = "ARN of the export state machine (null unless enable_export); start it with {imageUri, artifactBucket, artifactKey}."
  value       = var.enable_export ? aws_sfn_state_machine.export[0].arn : null
}

output "export_bucket_name" {
  description = "Bucket exports are written to (null unless enable_export)."
  value       = var.enable_export ? aws_s3_bucket.export[0].bucket : null
}

output "export_prefix" {
  description = "Key prefix every export key must start with."
  value       = var.export_prefix
}

output "export_project_name" {
  description = "Name of the export CodeBuild project (null unless enable_export)."
  value       = var.enable_export ? aws_codebuild_project.export[0].name : null
}
