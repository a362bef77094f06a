# GitHub Actions OIDC: the provider (unless the account already has one) and
# the role the trigger workflow assumes. The role can start this project's
# build and nothing else (with enable_batch_builds, also a batch of it).

resource "aws_iam_openid_connect_provider" "github" {
  count = var.github_oidc_provider_arn == null ? 1 : 0

  url            = "https://token.actions.githubusercontent.com"
  client_id_list = ["sts.amazonaws.com"]
  # No thumbprint_list: IAM validates this issuer against its own trusted CAs.

  tags = {
    Name = "token.actions.githubusercontent.com"
  }
}

resource "aws_iam_role" "github" {
  name                 = local.names.github_role
  description          = "Assumed by GitHub Actions on ${var.github_repository}@${var.github_branch} to start ${local.names.project}."
  assume_role_policy   = module.policies.github_trust_policy
  max_session_duration = 3600

  tags = {
    Name = local.names.github_role
  }

  lifecycle {
    precondition {
      condition     = length(local.names.github_role) <= 64 && length(local.names.codebuild_role) <= 64
      error_message = "Role names exceed 64 characters; shorten project, environment or component."
    }
  }
}

resource "aws_iam_policy" "github" {
  name        = local.names.github_role
  description = "codebuild:StartBuild${var.enable_batch_builds ? " and StartBuildBatch" : ""} on ${local.names.project} only, without a buildspec override."
  policy      = module.policies.github_permissions_policy

  tags = {
    Name = local.names.github_role
  }
}

resource "aws_iam_role_policy_attachment" "github" {
  role       = aws_iam_role.github.name
  policy_arn = aws_iam_policy.github.arn
}
