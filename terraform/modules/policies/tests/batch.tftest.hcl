# Batch builds: the batch service role, and what the GitHub role gains.

variables {
  region            = "ap-northeast-1"
  account_id        = "123456789012"
  repository_names  = ["avarobotics-prod-api"]
  project_name      = "avarobotics-prod-api-build"
  log_group_name    = "/aws/codebuild/avarobotics-prod-api-build"
  github_repository = "avachen2005/avarobotics"
  github_branch     = "main"
  oidc_provider_arn = "arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com"

  export_project_name   = "avarobotics-prod-api-export"
  export_log_group_name = "/aws/codebuild/avarobotics-prod-api-export"
  export_bucket_name    = "avarobotics-prod-api-exports-123456789012"
  state_machine_name    = "avarobotics-prod-api-export"
}

run "batch_role_starts_stops_and_retries_builds_of_this_project_only" {
  command = plan

  assert {
    condition = jsondecode(output.codebuild_batch_permissions_policy) == {
      Version = "2012-10-17"
      Statement = [{
        Sid      = "BatchBuildsOfThisProjectOnly"
        Effect   = "Allow"
        Action   = ["codebuild:RetryBuild", "codebuild:StartBuild", "codebuild:StopBuild"]
        Resource = "arn:aws:codebuild:ap-northeast-1:123456789012:project/avarobotics-prod-api-build"
      }]
    }
    error_message = "Batch role permissions differ: ${output.codebuild_batch_permissions_policy}"
  }
}

run "batch_off_keeps_the_github_role_to_start_build_only" {
  command = plan

  assert {
    condition = [for s in jsondecode(output.github_permissions_policy).Statement : [s.Effect, s.Action]] == [
      ["Allow", ["codebuild:StartBuild"]],
      ["Deny", ["codebuild:StartBuild"]],
    ]
    error_message = "FR-006: without batch builds the GitHub role may only codebuild:StartBuild."
  }
}

run "batch_on_adds_start_build_batch_on_this_project_without_buildspec_override" {
  command = plan

  variables {
    enable_batch_builds = true
  }

  assert {
    condition = jsondecode(output.github_permissions_policy) == {
      Version = "2012-10-17"
      Statement = [
        {
          Sid      = "StartThisProjectOnly"
          Effect   = "Allow"
          Action   = ["codebuild:StartBuild", "codebuild:StartBuildBatch"]
          Resource = "arn:aws:codebuild:ap-northeast-1:123456789012:project/avarobotics-prod-api-build"
        },
        {
          Sid       = "DenyBuildspecOverride"
          Effect    = "Deny"
          Action    = ["codebuild:StartBuild", "codebuild:StartBuildBatch"]
          Resource  = "arn:aws:codebuild:ap-northeast-1:123456789012:project/avarobotics-prod-api-build"
          Condition = { Null = { "codebuild:source.buildspec" = "false" } }
        },
      ]
    }
    error_message = "GitHub role permissions with batch builds differ: ${output.github_permissions_policy}"
  }
}
