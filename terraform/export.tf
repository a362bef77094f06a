# Export pipeline (enable_export): a Step Functions state machine runs a
# CodeBuild project that streams one image from the service repositories into
# an S3 bucket with `ecrbuild export IMAGE --to s3://BUCKET/KEY`. No Docker
# daemon is involved, so the project is not privileged.
#
#   start-execution {imageUri, artifactBucket, artifactKey}
#     └─> state machine: check input ─> codebuild:startBuild.sync ─> done | Fail (with the build's cause)
#           └─> export project (NO_SOURCE, SMALL): ecrbuild export ─> s3://<bucket>/<prefix>…
#
# Every document (roles, bucket policy, state machine definition, buildspec)
# comes from modules/policies, where its tests assert it.

# ---------------------------------------------------------------- bucket

resource "aws_s3_bucket" "export" {
  count = var.enable_export ? 1 : 0

  bucket = local.names.export_bucket
  # Exports are derived data, reproducible from ECR; a destroy may remove them.
  force_destroy = var.force_delete

  tags = {
    Name = local.names.export_bucket
  }

  lifecycle {
    precondition {
      condition     = length(local.names.export_bucket) <= 63
      error_message = "The export bucket name exceeds 63 characters; set export_bucket_name."
    }
  }
}

resource "aws_s3_bucket_ownership_controls" "export" {
  count = var.enable_export ? 1 : 0

  bucket = aws_s3_bucket.export[0].id
  rule {
    # ACLs off: the bucket owner owns every object, whoever writes it.
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "export" {
  count = var.enable_export ? 1 : 0

  bucket                  = aws_s3_bucket.export[0].id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_server_side_encryption_configuration" "export" {
  count = var.enable_export ? 1 : 0

  bucket = aws_s3_bucket.export[0].id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = var.export_kms_key_arn == null ? "AES256" : "aws:kms"
      kms_master_key_id = var.export_kms_key_arn
    }
    bucket_key_enabled = var.export_kms_key_arn != null
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "export" {
  count = var.enable_export ? 1 : 0

  bucket = aws_s3_bucket.export[0].id

  rule {
    id     = "expire-exports"
    status = "Enabled"
    filter {
      prefix = var.export_prefix
    }
    expiration {
      days = var.export_expire_days
    }
  }

  rule {
    id     = "abort-incomplete-multipart-uploads"
    status = "Enabled"
    filter {}
    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }
}

resource "aws_s3_bucket_policy" "export" {
  count = var.enable_export ? 1 : 0

  bucket = aws_s3_bucket.export[0].id
  policy = module.policies.export_bucket_policy

  # S3 refuses a bucket policy while the public access block is being set.
  depends_on = [aws_s3_bucket_public_access_block.export]
}

# ---------------------------------------------------------------- export project

resource "aws_cloudwatch_log_group" "export" {
  count = var.enable_export ? 1 : 0

  name              = local.names.export_log_group
  retention_in_days = var.log_retention_days
  kms_key_id        = var.log_kms_key_arn

  tags = {
    Name = local.names.export_log_group
  }
}

resource "aws_iam_role" "export" {
  count = var.enable_export ? 1 : 0

  name                 = local.names.export_role
  description          = "CodeBuild service role of ${local.names.export_project}: pull the service repositories, write s3://${local.names.export_bucket}/${var.export_prefix}, its own logs."
  assume_role_policy   = module.policies.export_trust_policy
  max_session_duration = 3600

  tags = {
    Name = local.names.export_role
  }

  lifecycle {
    precondition {
      condition     = length(local.names.export_role) <= 64 && length(local.names.export_states_role) <= 64
      error_message = "Export role names exceed 64 characters; shorten project, environment or component."
    }
  }
}

resource "aws_iam_policy" "export" {
  count = var.enable_export ? 1 : 0

  name        = local.names.export_role
  description = "ECR pull from the service repositories, s3:PutObject under ${var.export_prefix} of ${local.names.export_bucket}, logs of ${local.names.export_project}."
  policy      = module.policies.export_permissions_policy

  tags = {
    Name = local.names.export_role
  }
}

resource "aws_iam_role_policy_attachment" "export" {
  count = var.enable_export ? 1 : 0

  role       = aws_iam_role.export[0].name
  policy_arn = aws_iam_policy.export[0].arn
}

resource "aws_codebuild_project" "export" {
  count = var.enable_export ? 1 : 0

  name           = local.names.export_project
  description    = "Exports one image from ECR to s3://${local.names.export_bucket}/${var.export_prefix} with ecrbuild export; started by ${local.names.state_machine}."
  service_role   = aws_iam_role.export[0].arn
  build_timeout  = var.export_build_timeout_minutes
  queued_timeout = var.queued_timeout_minutes

  # No checkout: the inline buildspec installs the prebuilt ecrbuild and runs
  # `ecrbuild export "$IMAGE_URI" --to "s3://$ARTIFACT_BUCKET/$ARTIFACT_KEY"`.
  source {
    type      = "NO_SOURCE"
    buildspec = module.policies.export_buildspec
  }

  # The only output is the object in S3, written by ecrbuild.
  artifacts {
    type = "NO_ARTIFACTS"
  }

  environment {
    type                        = "LINUX_CONTAINER"
    image                       = var.build_image
    compute_type                = "BUILD_GENERAL1_SMALL"
    image_pull_credentials_type = "CODEBUILD"

    # Not privileged: an export reads the registry over HTTPS and writes S3;
    # there is no Docker daemon.
    privileged_mode = false

    environment_variable {
      name  = "AWS_REGION"
      value = var.region
    }
    environment_variable {
      name  = "ECRBUILD_DOWNLOAD_URL"
      value = var.ecrbuild_download_url
    }
    environment_variable {
      name  = "ECRBUILD_DOWNLOAD_SHA256"
      value = var.ecrbuild_download_sha256
    }
  }

  logs_config {
    cloudwatch_logs {
      status     = "ENABLED"
      group_name = aws_cloudwatch_log_group.export[0].name
    }
    s3_logs {
      status = "DISABLED"
    }
  }

  tags = {
    Name = local.names.export_project
  }

  lifecycle {
    precondition {
      # NO_SOURCE: there is no checkout to build ecrbuild from.
      condition     = var.ecrbuild_download_url != "" && var.ecrbuild_download_sha256 != ""
      error_message = "enable_export needs ecrbuild_download_url and ecrbuild_download_sha256 (the export project has no source to build ecrbuild from; use a release binary)."
    }
  }

  depends_on = [aws_iam_role_policy_attachment.export]
}

# ---------------------------------------------------------------- state machine

resource "aws_cloudwatch_log_group" "export_states" {
  count = var.enable_export ? 1 : 0

  # /aws/vendedlogs/ keeps the log-delivery resource policy small.
  name              = local.names.export_states_log_group
  retention_in_days = var.log_retention_days
  kms_key_id        = var.log_kms_key_arn

  tags = {
    Name = local.names.export_states_log_group
  }
}

resource "aws_iam_role" "export_states" {
  count = var.enable_export ? 1 : 0

  name                 = local.names.export_states_role
  description          = "Role of state machine ${local.names.state_machine}: run ${local.names.export_project} synchronously, log, trace."
  assume_role_policy   = module.policies.states_trust_policy
  max_session_duration = 3600

  tags = {
    Name = local.names.export_states_role
  }
}

resource "aws_iam_policy" "export_states" {
  count = var.enable_export ? 1 : 0

  name        = local.names.export_states_role
  description = "Start, stop and read builds of ${local.names.export_project}; the CodeBuild .sync event rule; log delivery and X-Ray."
  policy      = module.policies.states_permissions_policy

  tags = {
    Name = local.names.export_states_role
  }
}

resource "aws_iam_role_policy_attachment" "export_states" {
  count = var.enable_export ? 1 : 0

  role       = aws_iam_role.export_states[0].name
  policy_arn = aws_iam_policy.export_states[0].arn
}

resource "aws_sfn_state_machine" "export" {
  count = var.enable_export ? 1 : 0

  name       = local.names.state_machine
  type       = "STANDARD"
  role_arn   = aws_iam_role.export_states[0].arn
  definition = module.policies.state_machine_definition

  logging_configuration {
    log_destination = "${aws_cloudwatch_log_group.export_states[0].arn}:*"
    level           = var.export_log_level
    # Inputs and outputs stay out of the logs; the execution history has them.
    include_execution_data = false
  }

  tracing_configuration {
    enabled = true
  }

  tags = {
    Name = local.names.state_machine
  }

  depends_on = [aws_iam_role_policy_attachment.export_states]
}
