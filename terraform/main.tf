data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

data "aws_service_principal" "codebuild" {
  service_name = "codebuild"
}

data "aws_service_principal" "states" {
  service_name = "states"
}

locals {
  account_id = data.aws_caller_identity.current.account_id

  # Naming convention, applied to every resource:
  #   <project>-<environment>-<component>[-<purpose>]
  # lowercase, hyphen-separated; the purpose suffix says what the resource is for.
  name_prefix = "${var.project}-${var.environment}-${var.component}"
  names = {
    project        = "${local.name_prefix}-build"
    log_group      = "/aws/codebuild/${local.name_prefix}-build"
    codebuild_role = "${local.name_prefix}-codebuild"
    # Batch service role (enable_batch_builds).
    codebuild_batch_role = "${local.name_prefix}-codebuild-batch"
    # Export pipeline (enable_export).
    export_project          = "${local.name_prefix}-export"
    export_log_group        = "/aws/codebuild/${local.name_prefix}-export"
    export_role             = "${local.name_prefix}-export-codebuild"
    export_bucket           = coalesce(var.export_bucket_name, "${local.name_prefix}-exports-${data.aws_caller_identity.current.account_id}")
    state_machine           = "${local.name_prefix}-export"
    export_states_role      = "${local.name_prefix}-export-states"
    export_states_log_group = "/aws/vendedlogs/states/${local.name_prefix}-export"
    github_role             = "${local.name_prefix}-github-trigger"
  }

  common_tags = merge(var.tags, {
    Project     = var.project
    Environment = var.environment
    Component   = var.component
    ManagedBy   = "terraform"
    Source      = "github.com/${var.github_repository}"
  })

  github_oidc_provider_arn = var.github_oidc_provider_arn != null ? var.github_oidc_provider_arn : aws_iam_openid_connect_provider.github[0].arn

  # Tags that may move between images; every other tag (the commit SHAs) is immutable.
  # ecrbuild-candidates is ecrbuild's candidate record: a small artifact that
  # caches the labels of the SHA tags, rewritten by runs that move latest.
  moving_tags = compact(["latest", "ecrbuild-candidates", var.extra_image_tag])

  # The tag-immutability exclusions: the moving tags, and the staging tags
  # ecrbuild-staging-<sha>[-<os>-<arch>[-<variant>]] the daemon pushes an image
  # under before ecrbuild writes it, labelled, under its immutable SHA (or
  # platform) tag. ECR and the provider allow at most 5 filters, each of at
  # most 128 characters with at most 2 wildcards: here 2 to 4.
  mutable_tag_filters = concat(local.moving_tags, [module.policies.staging_tag_pattern])

  # Services and their repositories. The default is one service named after
  # the component, whose repository is <project>-<environment>-<component>:
  # exactly the single repository of earlier versions.
  services = var.services != null ? var.services : tomap({ (var.component) = { repository = null } })
  repositories = {
    for name, svc in local.services : name => coalesce(svc.repository, "${var.project}-${var.environment}-${name}")
  }
  # The service whose repository backs ECR_REPOSITORY and the single outputs.
  primary_service = contains(keys(local.services), var.component) ? var.component : keys(local.services)[0]
}

# Every IAM and lifecycle document comes from this provider-free module, whose
# tests (modules/policies/tests) assert the exact actions, resources and
# conditions. What is tested offline is what is deployed.
module "policies" {
  source = "./modules/policies"

  partition                   = data.aws_partition.current.partition
  region                      = var.region
  account_id                  = local.account_id
  codebuild_service_principal = data.aws_service_principal.codebuild.name
  repository_names            = values(local.repositories)
  project_name                = local.names.project
  log_group_name              = local.names.log_group
  github_repository           = var.github_repository
  github_branch               = var.github_branch
  oidc_provider_arn           = local.github_oidc_provider_arn
  keep_tagged_images          = var.keep_tagged_images
  max_platforms_per_image     = var.max_platforms_per_image
  moving_tags                 = local.moving_tags
  enable_batch_builds         = var.enable_batch_builds
  export_project_name         = local.names.export_project
  export_log_group_name       = local.names.export_log_group
  export_bucket_name          = local.names.export_bucket
  export_prefix               = var.export_prefix
  export_kms_key_arn          = var.export_kms_key_arn
  state_machine_name          = local.names.state_machine
  states_service_principal    = data.aws_service_principal.states.name
  export_task_timeout_seconds = (var.export_build_timeout_minutes + var.queued_timeout_minutes) * 60
}
