# CodeBuild service role: push to the service repositories, write this project's logs.
# Documents: modules/policies (see the IAM table in README.md).

resource "aws_iam_role" "codebuild" {
  name                 = local.names.codebuild_role
  description          = "CodeBuild service role of ${local.names.project}: push the service repositories and write its own logs."
  assume_role_policy   = module.policies.codebuild_trust_policy
  max_session_duration = 3600

  tags = {
    Name = local.names.codebuild_role
  }
}

resource "aws_iam_policy" "codebuild" {
  name        = local.names.codebuild_role
  description = substr("ECR push to ${join(", ", values(local.repositories))} only, and logs of ${local.names.project} only.", 0, 1000)
  policy      = module.policies.codebuild_permissions_policy

  tags = {
    Name = local.names.codebuild_role
  }
}

resource "aws_iam_role_policy_attachment" "codebuild" {
  role       = aws_iam_role.codebuild.name
  policy_arn = aws_iam_policy.codebuild.arn
}

# Only for `ecrbuild --wait-scan`: read the scan-on-push result of the pushed image.
resource "aws_iam_policy" "codebuild_wait_scan" {
  count = var.enable_wait_scan ? 1 : 0

  name        = "${local.names.codebuild_role}-wait-scan"
  description = substr("Read scan findings of ${join(", ", values(local.repositories))} only.", 0, 1000)
  policy      = module.policies.codebuild_wait_scan_policy

  tags = {
    Name = "${local.names.codebuild_role}-wait-scan"
  }
}

resource "aws_iam_role_policy_attachment" "codebuild_wait_scan" {
  count = var.enable_wait_scan ? 1 : 0

  role       = aws_iam_role.codebuild.name
  policy_arn = aws_iam_policy.codebuild_wait_scan[0].arn
}

# Batch service role (enable_batch_builds): CodeBuild starts, stops and
# retries the builds of a batch of this project with it. AWS advises a role
# apart from the build's service role; this one can do nothing else.
resource "aws_iam_role" "codebuild_batch" {
  count = var.enable_batch_builds ? 1 : 0

  name                 = local.names.codebuild_batch_role
  description          = "CodeBuild batch service role of ${local.names.project}: start, stop and retry its builds."
  assume_role_policy   = module.policies.codebuild_trust_policy
  max_session_duration = 3600

  tags = {
    Name = local.names.codebuild_batch_role
  }

  lifecycle {
    precondition {
      condition     = length(local.names.codebuild_batch_role) <= 64
      error_message = "The batch role name exceeds 64 characters; shorten project, environment or component."
    }
  }
}

resource "aws_iam_policy" "codebuild_batch" {
  count = var.enable_batch_builds ? 1 : 0

  name        = local.names.codebuild_batch_role
  description = "codebuild:StartBuild, StopBuild and RetryBuild on ${local.names.project} only."
  policy      = module.policies.codebuild_batch_permissions_policy

  tags = {
    Name = local.names.codebuild_batch_role
  }
}

resource "aws_iam_role_policy_attachment" "codebuild_batch" {
  count = var.enable_batch_builds ? 1 : 0

  role       = aws_iam_role.codebuild_batch[0].name
  policy_arn = aws_iam_policy.codebuild_batch[0].arn
}
