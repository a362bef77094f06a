variable "partition" {
  description = "AWS partition of every ARN (aws, aws-cn, aws-us-gov)."
  type        = string
  default     = "aws"

  validation {
    condition     = contains(["aws", "aws-cn", "aws-us-gov"], var.partition)
    error_message = "partition must be aws, aws-cn or aws-us-gov."
  }
}

variable "codebuild_service_principal" {
  description = "Service principal of CodeBuild in this partition (the root passes data.aws_service_principal)."
  type        = string
  default     = "codebuild.amazonaws.com"

  validation {
    condition     = can(regex("^codebuild\\.amazonaws\\.com(\\.cn)?$", var.codebuild_service_principal))
    error_message = "codebuild_service_principal must be the CodeBuild service principal."
  }
}

variable "region" {
  description = "Region of the ECR repository, the CodeBuild project and its log group."
  type        = string

  validation {
    condition     = can(regex("^[a-z]{2}(-[a-z]+)+-[0-9]$", var.region))
    error_message = "region must look like ap-northeast-1."
  }
}

variable "account_id" {
  description = "12-digit AWS account id that owns every resource."
  type        = string

  validation {
    condition     = can(regex("^[0-9]{12}$", var.account_id))
    error_message = "account_id must be 12 digits."
  }
}

variable "repository_names" {
  description = "Names of the ECR repositories the build pushes to (one per service). Every ECR statement is scoped to exactly these."
  type        = list(string)

  validation {
    condition     = length(var.repository_names) >= 1 && length(distinct(var.repository_names)) == length(var.repository_names)
    error_message = "repository_names must hold at least one name, each once."
  }

  validation {
    condition = alltrue([
      for name in var.repository_names : can(regex("^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$", name))
    ])
    error_message = "Every repository name must be a valid ECR repository name (lowercase, no wildcards)."
  }
}

variable "project_name" {
  description = "Name of the CodeBuild project."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9][A-Za-z0-9_-]{1,254}$", var.project_name))
    error_message = "project_name must be a valid CodeBuild project name (no wildcards)."
  }
}

variable "log_group_name" {
  description = "Name of the CloudWatch log group the CodeBuild project writes to."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9_./#-]{1,512}$", var.log_group_name))
    error_message = "log_group_name must be a valid log group name (no wildcards)."
  }
}

variable "github_repository" {
  description = "GitHub repository allowed to start builds, as OWNER/REPO."
  type        = string

  validation {
    # No wildcard characters: the trust policy must name exactly one repository.
    condition     = can(regex("^[A-Za-z0-9-]+/[A-Za-z0-9._-]+$", var.github_repository))
    error_message = "github_repository must be OWNER/REPO, without wildcards."
  }
}

variable "github_branch" {
  description = "The only branch whose workflow runs may start builds."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9._/-]+$", var.github_branch)) && !startswith(var.github_branch, "refs/")
    error_message = "github_branch must be a plain branch name such as main, without wildcards or a refs/ prefix."
  }
}

variable "oidc_provider_arn" {
  description = "ARN of the IAM OIDC provider for token.actions.githubusercontent.com."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:oidc-provider/token\\.actions\\.githubusercontent\\.com$", var.oidc_provider_arn))
    error_message = "oidc_provider_arn must be the ARN of the token.actions.githubusercontent.com provider."
  }
}

variable "keep_tagged_images" {
  description = "How many commit-SHA-tagged images to keep; older ones are expired."
  type        = number
  default     = 50

  validation {
    condition     = var.keep_tagged_images >= 1 && floor(var.keep_tagged_images) == var.keep_tagged_images
    error_message = "keep_tagged_images must be a whole number of at least 1."
  }
}

variable "max_platforms_per_image" {
  description = "Upper bound on the platforms of one multi-platform image. The lifecycle keeps keep_tagged_images times this many per-platform images, so every kept index keeps its children; a bound above the real count leaves room for concurrent runs."
  type        = number
  default     = 4

  validation {
    condition     = var.max_platforms_per_image >= 1 && floor(var.max_platforms_per_image) == var.max_platforms_per_image
    error_message = "max_platforms_per_image must be a whole number of at least 1."
  }
}

variable "moving_tags" {
  description = "The mutable tags (excluded from tag immutability): latest and the optional extra tag. None of them is ever expired."
  type        = list(string)
  default     = ["latest"]

  validation {
    condition = length(var.moving_tags) >= 1 && length(var.moving_tags) <= 9 && alltrue([
      for tag in var.moving_tags : can(regex("^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$", tag)) && !strcontains(tag, "-linux-") && !startswith(tag, "ecrbuild-staging-")
    ])
    error_message = "moving_tags must be 1 to 9 plain tags (no wildcards), none containing -linux- or starting with ecrbuild-staging-."
  }
}

variable "enable_batch_builds" {
  description = "Batch builds on: the GitHub role may also codebuild:StartBuildBatch on the project (a departure from FR-006)."
  type        = bool
  default     = false
}

# ---------------------------------------------------------------- export pipeline

variable "export_project_name" {
  description = "Name of the export CodeBuild project (ecrbuild export, no Docker)."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9][A-Za-z0-9_-]{1,254}$", var.export_project_name))
    error_message = "export_project_name must be a valid CodeBuild project name (no wildcards)."
  }
}

variable "export_log_group_name" {
  description = "Name of the CloudWatch log group the export project writes to."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9_./#-]{1,512}$", var.export_log_group_name))
    error_message = "export_log_group_name must be a valid log group name (no wildcards)."
  }
}

variable "export_bucket_name" {
  description = "Name of the S3 bucket exports are written to."
  type        = string

  validation {
    # The 63-character limit is checked where the bucket is created (only
    # when the export pipeline is on).
    condition     = can(regex("^[a-z0-9][a-z0-9.-]*[a-z0-9]$", var.export_bucket_name)) && !strcontains(var.export_bucket_name, "..")
    error_message = "export_bucket_name must be lowercase letters, digits, dots and hyphens (no wildcards)."
  }
}

variable "export_prefix" {
  description = "Key prefix the export role may write under, ending in /. The state machine refuses keys outside it."
  type        = string
  default     = "exports/"

  validation {
    # No * or ?: the prefix is used in an ARN pattern and in a StringMatches rule.
    condition     = can(regex("^[A-Za-z0-9!_.'()-]+(/[A-Za-z0-9!_.'()-]+)*/$", var.export_prefix))
    error_message = "export_prefix must be a non-empty key prefix ending in / (letters, digits, !_.'()- and /; no wildcards)."
  }
}

variable "export_kms_key_arn" {
  description = "KMS key of the export bucket's default encryption; null means SSE-S3 (AES256). With a key the export role may use it through S3 only."
  type        = string
  default     = null

  validation {
    condition     = var.export_kms_key_arn == null || can(regex("^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/[A-Za-z0-9-]+$", coalesce(var.export_kms_key_arn, "x")))
    error_message = "export_kms_key_arn must be the ARN of a KMS key (arn:…:kms:REGION:ACCOUNT:key/ID), not an alias."
  }
}

variable "state_machine_name" {
  description = "Name of the export state machine."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9_-]{1,80}$", var.state_machine_name))
    error_message = "state_machine_name must be 1-80 letters, digits, - or _."
  }
}

variable "states_service_principal" {
  description = "Service principal of Step Functions in this partition."
  type        = string
  default     = "states.amazonaws.com"

  validation {
    condition     = can(regex("^states\\.amazonaws\\.com(\\.cn)?$", var.states_service_principal))
    error_message = "states_service_principal must be the Step Functions service principal."
  }
}

variable "export_task_timeout_seconds" {
  description = "How long the state machine waits for one export build (queue and run) before it stops the build and fails."
  type        = number
  default     = 3600

  validation {
    condition     = var.export_task_timeout_seconds >= 300 && var.export_task_timeout_seconds <= 86400 && floor(var.export_task_timeout_seconds) == var.export_task_timeout_seconds
    error_message = "export_task_timeout_seconds must be a whole number from 300 to 86400."
  }
}
