# ---------------------------------------------------------------- naming

variable "project" {
  description = "First part of every name: <project>-<environment>-<component>[-<purpose>]."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9]*(-[a-z0-9]+)*$", var.project)) && length(var.project) <= 24
    error_message = "project must be lowercase letters, digits and single hyphens, at most 24 characters."
  }
}

variable "environment" {
  description = "Second part of every name, e.g. prod or staging."
  type        = string
  default     = "prod"

  validation {
    condition     = can(regex("^[a-z][a-z0-9]*$", var.environment)) && length(var.environment) <= 8
    error_message = "environment must be lowercase letters and digits, at most 8 characters."
  }
}

variable "component" {
  description = "Third part of every name: the image being built."
  type        = string
  default     = "api"

  validation {
    condition     = can(regex("^[a-z][a-z0-9]*(-[a-z0-9]+)*$", var.component)) && length(var.component) <= 16
    error_message = "component must be lowercase letters, digits and single hyphens, at most 16 characters."
  }
}

variable "region" {
  description = "AWS region of every resource."
  type        = string
  default     = "ap-northeast-1"
}

variable "tags" {
  description = "Extra tags added to every resource (merged under the standard tags)."
  type        = map(string)
  default     = {}
}

# ---------------------------------------------------------------- GitHub

variable "github_repository" {
  description = "GitHub repository (OWNER/REPO) that holds buildspec.yml and api/Dockerfile, and whose workflow starts builds."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9-]+/[A-Za-z0-9._-]+$", var.github_repository))
    error_message = "github_repository must be OWNER/REPO, without wildcards."
  }
}

variable "github_branch" {
  description = "The only branch allowed to start builds (OIDC sub repo:OWNER/REPO:ref:refs/heads/<branch>)."
  type        = string
  default     = "main"
}

variable "github_oidc_provider_arn" {
  description = "ARN of an existing IAM OIDC provider for token.actions.githubusercontent.com. Null creates one (an account can hold only one per URL)."
  type        = string
  default     = null
}

# ---------------------------------------------------------------- ECR

variable "ecr_kms_key_arn" {
  description = "KMS key for the repository. Null uses AES256 (ECR-managed keys)."
  type        = string
  default     = null
}

variable "services" {
  description = "Images built from this repository: service name => { repository = optional name override }. Each gets its own ECR repository, <project>-<environment>-<service> unless overridden. Null means one service named after component (api by default), i.e. the single repository <project>-<environment>-<component>."
  type = map(object({
    repository = optional(string)
  }))
  default = null

  validation {
    condition     = var.services == null || length(coalesce(var.services, {})) >= 1
    error_message = "services must name at least one service (or be null for the single default one)."
  }

  validation {
    condition = alltrue([
      for name, svc in coalesce(var.services, {}) :
      can(regex("^[a-z][a-z0-9]*(-[a-z0-9]+)*$", name)) && length(name) <= 16 &&
      (svc.repository == null || can(regex("^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$", coalesce(svc.repository, "x"))))
    ])
    error_message = "Service names must be lowercase letters, digits and single hyphens (at most 16 characters); a repository override must be a valid ECR repository name."
  }
}

variable "untagged_expire_days" {
  description = "Removed: expiring untagged images deletes the per-platform children of kept multi-platform indexes (aws/containers-roadmap#1596). Must stay null; see README.md, \"Lifecycle\"."
  type        = number
  default     = null

  validation {
    condition     = var.untagged_expire_days == null
    error_message = "untagged_expire_days is no longer supported: the children of a multi-platform index are untagged, and expiring untagged images would break indexes the lifecycle keeps. Remove it; untagged images are never expired (terraform/README.md, \"Lifecycle\")."
  }
}

variable "max_platforms_per_image" {
  description = "Upper bound on the platforms of one multi-platform image: the lifecycle keeps keep_tagged_images times this many per-platform (<sha>-linux-*) images. Above the real count it leaves room for concurrent runs."
  type        = number
  default     = 4

  validation {
    condition     = var.max_platforms_per_image >= 1 && floor(var.max_platforms_per_image) == var.max_platforms_per_image
    error_message = "max_platforms_per_image must be a whole number of at least 1."
  }
}

variable "keep_tagged_images" {
  description = "How many SHA-tagged images (single-platform images or multi-platform indexes) the lifecycle policy keeps per repository."
  type        = number
  default     = 50
}

variable "force_delete" {
  description = "Let `terraform destroy` delete the repository even when it still holds images."
  type        = bool
  default     = false
}

# ---------------------------------------------------------------- CodeBuild

variable "build_image" {
  description = "CodeBuild Linux image. It must ship a Docker daemon (the standard images do)."
  type        = string
  default     = "aws/codebuild/standard:7.0"
}

variable "compute_type" {
  description = "CodeBuild compute type. MEDIUM (4 vCPU) keeps a cold cargo build of ecrbuild inside the 5-minute budget better than SMALL."
  type        = string
  default     = "BUILD_GENERAL1_MEDIUM"

  validation {
    condition     = contains(["BUILD_GENERAL1_SMALL", "BUILD_GENERAL1_MEDIUM", "BUILD_GENERAL1_LARGE", "BUILD_GENERAL1_XLARGE", "BUILD_GENERAL1_2XLARGE"], var.compute_type)
    error_message = "compute_type must be one of the BUILD_GENERAL1_* Linux container types."
  }
}

variable "build_timeout_minutes" {
  description = "A build running longer than this is stopped."
  type        = number
  default     = 20

  validation {
    condition     = var.build_timeout_minutes >= 5 && var.build_timeout_minutes <= 480
    error_message = "build_timeout_minutes must be between 5 and 480."
  }
}

variable "queued_timeout_minutes" {
  description = "A build waiting in the queue longer than this is dropped."
  type        = number
  default     = 60

  validation {
    condition     = var.queued_timeout_minutes >= 5 && var.queued_timeout_minutes <= 480
    error_message = "queued_timeout_minutes must be between 5 and 480."
  }
}

variable "log_retention_days" {
  description = "Retention of the build log group. A year keeps the record of what was built and pushed."
  type        = number
  default     = 365

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a value CloudWatch Logs accepts."
  }
}

variable "log_kms_key_arn" {
  description = "KMS key for the build log group. Null uses CloudWatch Logs' default encryption."
  type        = string
  default     = null
}

variable "enable_docker_layer_cache" {
  description = "Keep Docker layers on the build host between builds (LOCAL_DOCKER_LAYER_CACHE, best effort)."
  type        = bool
  default     = false
}

variable "enable_wait_scan" {
  description = "Grant ecr:DescribeImageScanFindings and ecr:DescribeImages so builds can run `ecrbuild --wait-scan`."
  type        = bool
  default     = false
}

variable "extra_image_tag" {
  description = "Extra moving tag pushed after the SHA tag (IMAGE_TAG), e.g. prod. Empty for none. It is added to the tag-immutability exclusions, like latest."
  type        = string
  default     = ""

  validation {
    condition     = var.extra_image_tag == "" || can(regex("^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$", var.extra_image_tag))
    error_message = "extra_image_tag must be a valid image tag or empty."
  }
}

variable "ecrbuild_download_url" {
  description = "Optional URL of a prebuilt Linux ecrbuild binary. Empty: the buildspec builds ecrbuild from this commit with cargo. Set together with ecrbuild_download_sha256."
  type        = string
  default     = ""

  validation {
    condition     = var.ecrbuild_download_url == "" || startswith(var.ecrbuild_download_url, "https://")
    error_message = "ecrbuild_download_url must be empty or an https:// URL."
  }
}

variable "ecrbuild_download_sha256" {
  description = "SHA-256 (64 lowercase hex) of the file at ecrbuild_download_url. The install phase refuses a mismatch."
  type        = string
  default     = ""

  validation {
    condition     = var.ecrbuild_download_sha256 == "" || can(regex("^[0-9a-f]{64}$", var.ecrbuild_download_sha256))
    error_message = "ecrbuild_download_sha256 must be empty or 64 lowercase hex digits."
  }
}

variable "ecrbuild_download_url_aarch64" {
  description = "Optional URL of a prebuilt aarch64 Linux ecrbuild binary, for the ARM hosts of buildspec-multiarch.yml. Empty: those hosts build ecrbuild with cargo. Set together with ecrbuild_download_sha256_aarch64."
  type        = string
  default     = ""

  validation {
    condition     = var.ecrbuild_download_url_aarch64 == "" || startswith(var.ecrbuild_download_url_aarch64, "https://")
    error_message = "ecrbuild_download_url_aarch64 must be empty or an https:// URL."
  }
}

variable "ecrbuild_download_sha256_aarch64" {
  description = "SHA-256 (64 lowercase hex) of the file at ecrbuild_download_url_aarch64."
  type        = string
  default     = ""

  validation {
    condition     = var.ecrbuild_download_sha256_aarch64 == "" || can(regex("^[0-9a-f]{64}$", var.ecrbuild_download_sha256_aarch64))
    error_message = "ecrbuild_download_sha256_aarch64 must be empty or 64 lowercase hex digits."
  }
}

# ---------------------------------------------------------------- batch builds

variable "enable_batch_builds" {
  description = "Turn on CodeBuild batch builds: the project runs batch_buildspec, gets a batch service role, and the GitHub role may also codebuild:StartBuildBatch on it (a departure from FR-006, see README.md)."
  type        = bool
  default     = false
}

variable "batch_buildspec" {
  description = "Buildspec of the project when batch builds are on: buildspec-multiarch.yml (amd64 + arm64 joined into an index) or buildspec-services.yml (one build per service)."
  type        = string
  default     = "buildspec-multiarch.yml"

  validation {
    condition     = contains(["buildspec-multiarch.yml", "buildspec-services.yml"], var.batch_buildspec)
    error_message = "batch_buildspec must be buildspec-multiarch.yml or buildspec-services.yml."
  }
}

variable "batch_compute_types_allowed" {
  description = "Compute types a batch may use (the project's compute_type is always added). The batch buildspecs use SMALL (index), MEDIUM (amd64, services) and LARGE (arm64)."
  type        = list(string)
  default     = ["BUILD_GENERAL1_SMALL", "BUILD_GENERAL1_MEDIUM", "BUILD_GENERAL1_LARGE"]

  validation {
    condition     = length(var.batch_compute_types_allowed) >= 1 && alltrue([for t in var.batch_compute_types_allowed : startswith(t, "BUILD_GENERAL1_")])
    error_message = "batch_compute_types_allowed must list BUILD_GENERAL1_* compute types."
  }
}

variable "batch_maximum_builds" {
  description = "Most builds one batch may run (3 for buildspec-multiarch.yml; one per service for buildspec-services.yml)."
  type        = number
  default     = 10

  validation {
    condition     = var.batch_maximum_builds >= 1 && var.batch_maximum_builds <= 100 && floor(var.batch_maximum_builds) == var.batch_maximum_builds
    error_message = "batch_maximum_builds must be a whole number from 1 to 100."
  }
}

variable "batch_timeout_minutes" {
  description = "A batch running longer than this is stopped."
  type        = number
  default     = 60

  validation {
    condition     = var.batch_timeout_minutes >= 5 && var.batch_timeout_minutes <= 2160
    error_message = "batch_timeout_minutes must be between 5 and 2160."
  }
}

# ---------------------------------------------------------------- export pipeline

variable "enable_export" {
  description = "Create the export pipeline: an S3 bucket, a CodeBuild project that runs `ecrbuild export`, and a Step Functions state machine that runs it. Needs ecrbuild_download_url and ecrbuild_download_sha256."
  type        = bool
  default     = false
}

variable "export_bucket_name" {
  description = "Name of the export bucket. Null: <project>-<environment>-<component>-exports-<account id>."
  type        = string
  default     = null
}

variable "export_prefix" {
  description = "Key prefix of exports (ending in /). The export role may write only under it, and the state machine refuses other keys."
  type        = string
  default     = "exports/"
}

variable "export_expire_days" {
  description = "Exports are deleted this many days after they were written."
  type        = number
  default     = 30

  validation {
    condition     = var.export_expire_days >= 1 && floor(var.export_expire_days) == var.export_expire_days
    error_message = "export_expire_days must be a whole number of at least 1."
  }
}

variable "export_kms_key_arn" {
  description = "KMS key for the export bucket's default encryption. Null uses SSE-S3 (AES256)."
  type        = string
  default     = null
}

variable "export_build_timeout_minutes" {
  description = "An export build running longer than this is stopped."
  type        = number
  default     = 60

  validation {
    condition     = var.export_build_timeout_minutes >= 5 && var.export_build_timeout_minutes <= 480
    error_message = "export_build_timeout_minutes must be between 5 and 480."
  }
}

variable "export_log_level" {
  description = "Execution log level of the state machine (ALL, ERROR or FATAL); execution data is never logged."
  type        = string
  default     = "ALL"

  validation {
    condition     = contains(["ALL", "ERROR", "FATAL"], var.export_log_level)
    error_message = "export_log_level must be ALL, ERROR or FATAL."
  }
}
