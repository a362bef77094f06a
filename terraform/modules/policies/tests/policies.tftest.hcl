# Exact assertions on every document the stack deploys. Runs offline:
# the module under test declares no provider.

variables {
  region            = "ap-northeast-1"
  account_id        = "123456789012"
  repository_names  = ["avarobotics-prod-api"]
  project_name      = "avarobotics-prod-api-image"
  log_group_name    = "/aws/codebuild/avarobotics-prod-api-image"
  github_repository = "avachen2005/avarobotics"
  github_branch     = "main"
  oidc_provider_arn = "arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com"

  export_project_name   = "avarobotics-prod-api-export"
  export_log_group_name = "/aws/codebuild/avarobotics-prod-api-export"
  export_bucket_name    = "avarobotics-prod-api-exports-123456789012"
  state_machine_name    = "avarobotics-prod-api-export"
}

run "codebuild_role_permissions_are_exact" {
  command = plan

  assert {
    condition = jsondecode(output.codebuild_permissions_policy).Statement == [
      {
        Sid      = "EcrAuthorizationToken"
        Effect   = "Allow"
        Action   = ["ecr:GetAuthorizationToken"]
        Resource = "*"
      },
      {
        Sid    = "EcrPushServiceRepositories"
        Effect = "Allow"
        Action = [
          "ecr:BatchCheckLayerAvailability",
          "ecr:CompleteLayerUpload",
          "ecr:InitiateLayerUpload",
          "ecr:PutImage",
          "ecr:UploadLayerPart",
        ]
        Resource = ["arn:aws:ecr:ap-northeast-1:123456789012:repository/avarobotics-prod-api"]
      },
      {
        Sid    = "EcrReadServiceRepositories"
        Effect = "Allow"
        Action = [
          "ecr:BatchGetImage",
          "ecr:DescribeRepositories",
          "ecr:GetDownloadUrlForLayer",
        ]
        Resource = ["arn:aws:ecr:ap-northeast-1:123456789012:repository/avarobotics-prod-api"]
      },
      {
        Sid    = "LogsThisProjectOnly"
        Effect = "Allow"
        Action = ["logs:CreateLogStream", "logs:PutLogEvents"]
        Resource = [
          "arn:aws:logs:ap-northeast-1:123456789012:log-group:/aws/codebuild/avarobotics-prod-api-image",
          "arn:aws:logs:ap-northeast-1:123456789012:log-group:/aws/codebuild/avarobotics-prod-api-image:*",
        ]
      },
    ]
    error_message = "CodeBuild role permissions differ from the reviewed list: ${output.codebuild_permissions_policy}"
  }

  assert {
    condition     = jsondecode(output.codebuild_permissions_policy).Version == "2012-10-17"
    error_message = "Policy version must be 2012-10-17."
  }

  # FR-004 push actions are all present, on the repository ARN only.
  assert {
    condition = length(setsubtract(
      ["ecr:GetAuthorizationToken", "ecr:BatchCheckLayerAvailability", "ecr:PutImage", "ecr:InitiateLayerUpload", "ecr:UploadLayerPart", "ecr:CompleteLayerUpload"],
      flatten([for s in jsondecode(output.codebuild_permissions_policy).Statement : s.Action]),
    )) == 0
    error_message = "An FR-004 push action is missing."
  }
}

run "no_wildcard_actions_and_star_resource_only_for_auth_token" {
  command = plan

  assert {
    condition = alltrue(flatten([
      for doc in [output.codebuild_permissions_policy, output.codebuild_wait_scan_policy, output.github_permissions_policy, output.codebuild_batch_permissions_policy] : [
        for s in jsondecode(doc).Statement : [
          for a in flatten([s.Action]) : !strcontains(a, "*") && !strcontains(a, "?")
        ]
      ]
    ]))
    error_message = "A permission policy contains a wildcard action."
  }

  assert {
    condition = toset(flatten([
      for doc in [output.codebuild_permissions_policy, output.codebuild_wait_scan_policy, output.github_permissions_policy, output.codebuild_batch_permissions_policy] : [
        for s in jsondecode(doc).Statement : flatten([s.Action]) if contains(flatten([s.Resource]), "*")
      ]
    ])) == toset(["ecr:GetAuthorizationToken"])
    error_message = "Resource \"*\" is allowed only for ecr:GetAuthorizationToken."
  }

  assert {
    condition = alltrue(flatten([
      for doc in [output.codebuild_permissions_policy, output.codebuild_wait_scan_policy, output.github_permissions_policy, output.codebuild_batch_permissions_policy] : [
        for s in jsondecode(doc).Statement : [
          for r in flatten([s.Resource]) : r == "*" || startswith(r, "arn:aws:")
        ]
      ]
    ]))
    error_message = "Every resource must be \"*\" (auth token only) or a full ARN."
  }

  assert {
    condition = alltrue([
      for s in concat(
        jsondecode(output.codebuild_permissions_policy).Statement,
        jsondecode(output.codebuild_wait_scan_policy).Statement,
        jsondecode(output.codebuild_batch_permissions_policy).Statement,
      ) : s.Effect == "Allow" && !can(s.NotAction) && !can(s.NotResource)
    ])
    error_message = "CodeBuild role statements must be plain Allow statements."
  }
}

run "wait_scan_policy_is_two_read_actions_on_the_repository" {
  command = plan

  assert {
    condition = jsondecode(output.codebuild_wait_scan_policy) == {
      Version = "2012-10-17"
      Statement = [{
        Sid      = "EcrScanFindingsServiceRepositories"
        Effect   = "Allow"
        Action   = ["ecr:DescribeImageScanFindings", "ecr:DescribeImages"]
        Resource = ["arn:aws:ecr:ap-northeast-1:123456789012:repository/avarobotics-prod-api"]
      }]
    }
    error_message = "--wait-scan permissions differ from the reviewed list: ${output.codebuild_wait_scan_policy}"
  }

  assert {
    condition = !contains(
      flatten([for s in jsondecode(output.codebuild_permissions_policy).Statement : s.Action]),
      "ecr:DescribeImageScanFindings",
    )
    error_message = "Scan findings belong only in the optional wait-scan policy."
  }
}

run "codebuild_trust_is_this_project_only" {
  command = plan

  assert {
    condition = jsondecode(output.codebuild_trust_policy) == {
      Version = "2012-10-17"
      Statement = [{
        Sid       = "CodeBuildThisProjectOnly"
        Effect    = "Allow"
        Principal = { Service = "codebuild.amazonaws.com" }
        Action    = "sts:AssumeRole"
        Condition = {
          StringEquals = { "aws:SourceAccount" = "123456789012" }
          ArnLike      = { "aws:SourceArn" = "arn:aws:codebuild:ap-northeast-1:123456789012:project/avarobotics-prod-api-image" }
        }
      }]
    }
    error_message = "CodeBuild trust policy differs: ${output.codebuild_trust_policy}"
  }
}

run "github_trust_is_one_branch_of_one_repository" {
  command = plan

  assert {
    condition = jsondecode(output.github_trust_policy) == {
      Version = "2012-10-17"
      Statement = [{
        Sid       = "GitHubActionsOneBranchOnly"
        Effect    = "Allow"
        Principal = { Federated = "arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com" }
        Action    = "sts:AssumeRoleWithWebIdentity"
        Condition = {
          StringEquals = {
            "token.actions.githubusercontent.com:aud" = "sts.amazonaws.com"
            "token.actions.githubusercontent.com:sub" = "repo:avachen2005/avarobotics:ref:refs/heads/main"
          }
        }
      }]
    }
    error_message = "GitHub trust policy differs: ${output.github_trust_policy}"
  }

  assert {
    condition     = output.github_subject == "repo:avachen2005/avarobotics:ref:refs/heads/main"
    error_message = "Unexpected subject ${output.github_subject}."
  }

  assert {
    condition     = !strcontains(output.github_trust_policy, "StringLike")
    error_message = "The GitHub trust policy must not use StringLike."
  }
}

run "github_role_may_only_start_this_project_with_its_own_buildspec" {
  command = plan

  assert {
    condition = jsondecode(output.github_permissions_policy) == {
      Version = "2012-10-17"
      Statement = [
        {
          Sid      = "StartThisProjectOnly"
          Effect   = "Allow"
          Action   = ["codebuild:StartBuild"]
          Resource = "arn:aws:codebuild:ap-northeast-1:123456789012:project/avarobotics-prod-api-image"
        },
        {
          Sid       = "DenyBuildspecOverride"
          Effect    = "Deny"
          Action    = ["codebuild:StartBuild"]
          Resource  = "arn:aws:codebuild:ap-northeast-1:123456789012:project/avarobotics-prod-api-image"
          Condition = { Null = { "codebuild:source.buildspec" = "false" } }
        },
      ]
    }
    error_message = "GitHub role permissions differ: ${output.github_permissions_policy}"
  }
}

run "two_services_scope_every_ecr_statement_to_exactly_their_repositories" {
  command = plan

  variables {
    repository_names = ["avarobotics-prod-api", "avarobotics-prod-worker"]
  }

  assert {
    condition = {
      for s in jsondecode(output.codebuild_permissions_policy).Statement : s.Sid => s.Resource if startswith(s.Sid, "Ecr")
      } == {
      EcrAuthorizationToken = "*"
      EcrPushServiceRepositories = [
        "arn:aws:ecr:ap-northeast-1:123456789012:repository/avarobotics-prod-api",
        "arn:aws:ecr:ap-northeast-1:123456789012:repository/avarobotics-prod-worker",
      ]
      EcrReadServiceRepositories = [
        "arn:aws:ecr:ap-northeast-1:123456789012:repository/avarobotics-prod-api",
        "arn:aws:ecr:ap-northeast-1:123456789012:repository/avarobotics-prod-worker",
      ]
    }
    error_message = "ECR statements must name exactly the two repositories: ${output.codebuild_permissions_policy}"
  }

  assert {
    condition = jsondecode(output.codebuild_wait_scan_policy).Statement[0].Resource == [
      "arn:aws:ecr:ap-northeast-1:123456789012:repository/avarobotics-prod-api",
      "arn:aws:ecr:ap-northeast-1:123456789012:repository/avarobotics-prod-worker",
    ]
    error_message = "The wait-scan policy must name exactly the two repositories."
  }

  assert {
    condition     = !strcontains(output.codebuild_permissions_policy, "repository/*") && !strcontains(output.codebuild_permissions_policy, "avarobotics-prod-*")
    error_message = "No repository wildcard."
  }
}

run "no_repository_is_rejected" {
  command = plan

  variables {
    repository_names = []
  }

  expect_failures = [var.repository_names]
}

run "duplicate_or_wildcard_repository_is_rejected" {
  command = plan

  variables {
    repository_names = ["avarobotics-prod-api", "avarobotics-prod-*"]
  }

  expect_failures = [var.repository_names]
}

run "other_partition_changes_every_arn" {
  command = plan

  variables {
    partition         = "aws-cn"
    region            = "cn-north-1"
    oidc_provider_arn = "arn:aws-cn:iam::123456789012:oidc-provider/token.actions.githubusercontent.com"
  }

  assert {
    condition = output.arns == {
      repositories = ["arn:aws-cn:ecr:cn-north-1:123456789012:repository/avarobotics-prod-api"]
      project      = "arn:aws-cn:codebuild:cn-north-1:123456789012:project/avarobotics-prod-api-image"
      log_group    = "arn:aws-cn:logs:cn-north-1:123456789012:log-group:/aws/codebuild/avarobotics-prod-api-image"

      export_project   = "arn:aws-cn:codebuild:cn-north-1:123456789012:project/avarobotics-prod-api-export"
      export_log_group = "arn:aws-cn:logs:cn-north-1:123456789012:log-group:/aws/codebuild/avarobotics-prod-api-export"
      export_bucket    = "arn:aws-cn:s3:::avarobotics-prod-api-exports-123456789012"
      export_objects   = "arn:aws-cn:s3:::avarobotics-prod-api-exports-123456789012/exports/*"
      state_machine    = "arn:aws-cn:states:cn-north-1:123456789012:stateMachine:avarobotics-prod-api-export"
      codebuild_rule   = "arn:aws-cn:events:cn-north-1:123456789012:rule/StepFunctionsGetEventForCodeBuildStartBuildRule"
    }
    error_message = "ARNs must follow the partition: ${jsonencode(output.arns)}"
  }

  assert {
    condition     = jsondecode(output.state_machine_definition).States.ExportImage.Resource == "arn:aws-cn:states:::codebuild:startBuild.sync"
    error_message = "The .sync integration ARN must follow the partition."
  }

  assert {
    condition     = !strcontains(join("", [output.export_permissions_policy, output.states_permissions_policy, output.export_bucket_policy, output.states_trust_policy, output.export_trust_policy]), "arn:aws:")
    error_message = "No export document may keep the aws partition."
  }
}

run "wildcard_repository_is_rejected" {
  command = plan

  variables {
    github_repository = "avachen2005/*"
  }

  expect_failures = [var.github_repository]
}

run "wildcard_branch_is_rejected" {
  command = plan

  variables {
    github_branch = "*"
  }

  expect_failures = [var.github_branch]
}

run "refs_prefixed_branch_is_rejected" {
  command = plan

  variables {
    github_branch = "refs/heads/main"
  }

  expect_failures = [var.github_branch]
}

run "foreign_oidc_provider_is_rejected" {
  command = plan

  variables {
    oidc_provider_arn = "arn:aws:iam::123456789012:oidc-provider/gitlab.com"
  }

  expect_failures = [var.oidc_provider_arn]
}
