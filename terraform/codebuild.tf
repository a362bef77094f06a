resource "aws_cloudwatch_log_group" "build" {
  name              = local.names.log_group
  retention_in_days = var.log_retention_days
  kms_key_id        = var.log_kms_key_arn

  tags = {
    Name = local.names.log_group
  }
}

resource "aws_codebuild_project" "image" {
  name = local.names.project
  # CodeBuild allows 255 characters.
  description   = substr("Builds ${var.github_repository} (services: ${join(", ", keys(local.repositories))}) with ecrbuild and pushes each to its ECR repository.", 0, 255)
  service_role  = aws_iam_role.codebuild.arn
  build_timeout = var.build_timeout_minutes

  queued_timeout = var.queued_timeout_minutes

  source {
    type            = "GITHUB"
    location        = "https://github.com/${var.github_repository}.git"
    buildspec       = var.enable_batch_builds ? var.batch_buildspec : "buildspec.yml"
    git_clone_depth = 1
  }

  # The workflow passes the pushed commit as sourceVersion; this is the
  # fallback for builds started by hand.
  source_version = "refs/heads/${var.github_branch}"

  # The only output is the image in ECR.
  artifacts {
    type = "NO_ARTIFACTS"
  }

  environment {
    type                        = "LINUX_CONTAINER"
    image                       = var.build_image
    compute_type                = var.compute_type
    image_pull_credentials_type = "CODEBUILD"

    # Privileged mode is required: ecrbuild talks to a Docker daemon, and the
    # daemon inside the build container needs the privileges to create the
    # namespaces, mounts and overlay filesystems of each build step. Without
    # it there is no daemon and no image build.
    privileged_mode = true

    # Environment read by ecrbuild.
    environment_variable {
      # The primary service's repository (the only one by default).
      name  = "ECR_REPOSITORY"
      value = aws_ecr_repository.image[local.primary_service].name
    }
    environment_variable {
      # Every service and its repository, "service=repository" separated by
      # spaces; buildspec-services.yml picks its entry per service.
      name  = "ECRBUILD_SERVICE_REPOSITORIES"
      value = join(" ", [for service, repository in aws_ecr_repository.image : "${service}=${repository.name}"])
    }
    environment_variable {
      name  = "AWS_ACCOUNT_ID"
      value = local.account_id
    }
    environment_variable {
      name  = "AWS_REGION"
      value = var.region
    }
    environment_variable {
      # From the repository URL, so the host is right in every partition.
      name  = "ECR_REGISTRY"
      value = split("/", aws_ecr_repository.image[local.primary_service].repository_url)[0]
    }
    dynamic "environment_variable" {
      for_each = var.extra_image_tag == "" ? [] : [var.extra_image_tag]
      content {
        name  = "IMAGE_TAG"
        value = environment_variable.value
      }
    }

    # Read by buildspec.yml's install phase only.
    environment_variable {
      name  = "ECRBUILD_DOWNLOAD_URL"
      value = var.ecrbuild_download_url
    }
    environment_variable {
      name  = "ECRBUILD_DOWNLOAD_SHA256"
      value = var.ecrbuild_download_sha256
    }
    environment_variable {
      # ARM hosts of buildspec-multiarch.yml.
      name  = "ECRBUILD_DOWNLOAD_URL_AARCH64"
      value = var.ecrbuild_download_url_aarch64
    }
    environment_variable {
      name  = "ECRBUILD_DOWNLOAD_SHA256_AARCH64"
      value = var.ecrbuild_download_sha256_aarch64
    }
    environment_variable {
      name  = "ECRBUILD_WAIT_SCAN"
      value = var.enable_wait_scan ? "1" : "0"
    }
  }

  # LOCAL_CUSTOM_CACHE keeps the paths listed in buildspec.yml (cargo registry
  # and target/) on the build host; LOCAL_DOCKER_LAYER_CACHE is optional.
  cache {
    type  = "LOCAL"
    modes = concat(["LOCAL_CUSTOM_CACHE"], var.enable_docker_layer_cache ? ["LOCAL_DOCKER_LAYER_CACHE"] : [])
  }

  # Batch builds (enable_batch_builds): the builds of a batch are started,
  # stopped and retried by CodeBuild with the batch service role; each build
  # still runs with the project's service role.
  dynamic "build_batch_config" {
    for_each = var.enable_batch_builds ? [1] : []
    content {
      service_role      = aws_iam_role.codebuild_batch[0].arn
      combine_artifacts = false
      timeout_in_mins   = var.batch_timeout_minutes

      restrictions {
        compute_types_allowed  = distinct(concat(var.batch_compute_types_allowed, [var.compute_type]))
        maximum_builds_allowed = var.batch_maximum_builds
      }
    }
  }

  logs_config {
    cloudwatch_logs {
      status     = "ENABLED"
      group_name = aws_cloudwatch_log_group.build.name
    }
    s3_logs {
      status = "DISABLED"
    }
  }

  tags = {
    Name = local.names.project
  }

  lifecycle {
    precondition {
      condition     = (var.ecrbuild_download_url == "") == (var.ecrbuild_download_sha256 == "")
      error_message = "Set ecrbuild_download_url and ecrbuild_download_sha256 together, or neither."
    }
    precondition {
      condition     = (var.ecrbuild_download_url_aarch64 == "") == (var.ecrbuild_download_sha256_aarch64 == "")
      error_message = "Set ecrbuild_download_url_aarch64 and ecrbuild_download_sha256_aarch64 together, or neither."
    }
  }

  # The role's policy must exist before the first build can write its logs.
  depends_on = [
    aws_iam_role_policy_attachment.codebuild,
    aws_iam_role_policy_attachment.codebuild_wait_scan,
    aws_iam_role_policy_attachment.codebuild_batch,
  ]
}
