# Export pipeline: the export role, the state machine's role, the bucket
# policy, the state machine definition and the export buildspec.

variables {
  region            = "ap-northeast-1"
  account_id        = "123456789012"
  repository_names  = ["avarobotics-prod-api", "avarobotics-prod-worker"]
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

run "export_role_pulls_the_service_repositories_and_writes_the_prefix_only" {
  command = plan

  assert {
    condition = jsondecode(output.export_permissions_policy) == {
      Version = "2012-10-17"
      Statement = [
        {
          Sid      = "EcrAuthorizationToken"
          Effect   = "Allow"
          Action   = ["ecr:GetAuthorizationToken"]
          Resource = "*"
        },
        {
          Sid    = "EcrPullServiceRepositories"
          Effect = "Allow"
          Action = ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]
          Resource = [
            "arn:aws:ecr:ap-northeast-1:123456789012:repository/avarobotics-prod-api",
            "arn:aws:ecr:ap-northeast-1:123456789012:repository/avarobotics-prod-worker",
          ]
        },
        {
          Sid      = "S3WriteExportPrefixOnly"
          Effect   = "Allow"
          Action   = ["s3:AbortMultipartUpload", "s3:PutObject"]
          Resource = "arn:aws:s3:::avarobotics-prod-api-exports-123456789012/exports/*"
        },
        {
          Sid    = "LogsExportProjectOnly"
          Effect = "Allow"
          Action = ["logs:CreateLogStream", "logs:PutLogEvents"]
          Resource = [
            "arn:aws:logs:ap-northeast-1:123456789012:log-group:/aws/codebuild/avarobotics-prod-api-export",
            "arn:aws:logs:ap-northeast-1:123456789012:log-group:/aws/codebuild/avarobotics-prod-api-export:*",
          ]
        },
      ]
    }
    error_message = "Export role permissions differ from the reviewed list: ${output.export_permissions_policy}"
  }

  # Never read, list or delete objects, never push images.
  assert {
    condition = length(setintersection(
      flatten([for s in jsondecode(output.export_permissions_policy).Statement : s.Action]),
      ["s3:GetObject", "s3:DeleteObject", "s3:ListBucket", "s3:PutObjectAcl", "ecr:PutImage", "ecr:InitiateLayerUpload"],
    )) == 0
    error_message = "The export role must not read, list or delete objects, nor push images."
  }
}

run "export_role_with_a_kms_key_uses_it_through_s3_only" {
  command = plan

  variables {
    export_kms_key_arn = "arn:aws:kms:ap-northeast-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
  }

  assert {
    condition = jsondecode(output.export_permissions_policy).Statement[4] == {
      Sid       = "KmsExportBucketThroughS3Only"
      Effect    = "Allow"
      Action    = ["kms:Decrypt", "kms:GenerateDataKey"]
      Resource  = "arn:aws:kms:ap-northeast-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
      Condition = { StringEquals = { "kms:ViaService" = "s3.ap-northeast-1.amazonaws.com" } }
    }
    error_message = "KMS statement differs: ${output.export_permissions_policy}"
  }
}

run "export_trust_is_the_export_project_only" {
  command = plan

  assert {
    condition = jsondecode(output.export_trust_policy).Statement == [{
      Sid       = "CodeBuildExportProjectOnly"
      Effect    = "Allow"
      Principal = { Service = "codebuild.amazonaws.com" }
      Action    = "sts:AssumeRole"
      Condition = {
        StringEquals = { "aws:SourceAccount" = "123456789012" }
        ArnLike      = { "aws:SourceArn" = "arn:aws:codebuild:ap-northeast-1:123456789012:project/avarobotics-prod-api-export" }
      }
    }]
    error_message = "Export trust policy differs: ${output.export_trust_policy}"
  }
}

run "bucket_policy_denies_every_request_without_tls" {
  command = plan

  assert {
    condition = jsondecode(output.export_bucket_policy) == {
      Version = "2012-10-17"
      Statement = [{
        Sid       = "DenyInsecureTransport"
        Effect    = "Deny"
        Principal = "*"
        Action    = "s3:*"
        Resource = [
          "arn:aws:s3:::avarobotics-prod-api-exports-123456789012",
          "arn:aws:s3:::avarobotics-prod-api-exports-123456789012/*",
        ]
        Condition = { Bool = { "aws:SecureTransport" = "false" } }
      }]
    }
    error_message = "Bucket policy differs: ${output.export_bucket_policy}"
  }
}

run "state_machine_role_is_exact" {
  command = plan

  assert {
    condition = jsondecode(output.states_permissions_policy).Statement == [
      {
        Sid      = "CodeBuildExportProjectOnly"
        Effect   = "Allow"
        Action   = ["codebuild:BatchGetBuilds", "codebuild:StartBuild", "codebuild:StopBuild"]
        Resource = "arn:aws:codebuild:ap-northeast-1:123456789012:project/avarobotics-prod-api-export"
      },
      {
        Sid      = "EventsCodeBuildSyncRuleOnly"
        Effect   = "Allow"
        Action   = ["events:DescribeRule", "events:PutRule", "events:PutTargets"]
        Resource = "arn:aws:events:ap-northeast-1:123456789012:rule/StepFunctionsGetEventForCodeBuildStartBuildRule"
      },
      {
        Sid    = "LogDeliveryForExecutionLogs"
        Effect = "Allow"
        Action = [
          "logs:CreateLogDelivery",
          "logs:DeleteLogDelivery",
          "logs:DescribeLogGroups",
          "logs:DescribeResourcePolicies",
          "logs:GetLogDelivery",
          "logs:ListLogDeliveries",
          "logs:PutResourcePolicy",
          "logs:UpdateLogDelivery",
        ]
        Resource = "*"
      },
      {
        Sid      = "XRayTracing"
        Effect   = "Allow"
        Action   = ["xray:GetSamplingRules", "xray:GetSamplingTargets", "xray:PutTelemetryRecords", "xray:PutTraceSegments"]
        Resource = "*"
      },
    ]
    error_message = "State machine role permissions differ: ${output.states_permissions_policy}"
  }

  assert {
    condition = jsondecode(output.states_trust_policy).Statement == [{
      Sid       = "StepFunctionsExportStateMachineOnly"
      Effect    = "Allow"
      Principal = { Service = "states.amazonaws.com" }
      Action    = "sts:AssumeRole"
      Condition = {
        StringEquals = { "aws:SourceAccount" = "123456789012" }
        ArnLike      = { "aws:SourceArn" = "arn:aws:states:ap-northeast-1:123456789012:stateMachine:avarobotics-prod-api-export" }
      }
    }]
    error_message = "State machine trust policy differs: ${output.states_trust_policy}"
  }
}

run "star_resources_are_only_what_has_no_resource_level_permission" {
  command = plan

  assert {
    condition = toset(flatten([
      for doc in [output.export_permissions_policy, output.states_permissions_policy] : [
        for s in jsondecode(doc).Statement : flatten([s.Action]) if contains(flatten([s.Resource]), "*")
      ]
      ])) == toset([
      "ecr:GetAuthorizationToken",
      "logs:CreateLogDelivery", "logs:DeleteLogDelivery", "logs:DescribeLogGroups", "logs:DescribeResourcePolicies",
      "logs:GetLogDelivery", "logs:ListLogDeliveries", "logs:PutResourcePolicy", "logs:UpdateLogDelivery",
      "xray:GetSamplingRules", "xray:GetSamplingTargets", "xray:PutTelemetryRecords", "xray:PutTraceSegments",
    ])
    error_message = "Resource \"*\" is only for the auth token, log delivery and X-Ray."
  }

  # "*" statements hold nothing else, and no action is a wildcard.
  assert {
    condition = alltrue(flatten([
      for doc in [output.export_permissions_policy, output.states_permissions_policy] : [
        for s in jsondecode(doc).Statement : [
          for a in flatten([s.Action]) : !strcontains(a, "*") && !strcontains(a, "?") && (s.Resource == "*" || !contains(flatten([s.Resource]), "*"))
        ]
      ]
    ]))
    error_message = "Wildcard action, or \"*\" mixed with other resources."
  }
}

run "state_machine_runs_the_export_project_synchronously_with_the_input" {
  command = plan

  assert {
    condition     = jsondecode(output.state_machine_definition).StartAt == "CheckInputPresent"
    error_message = "The state machine must check its input first."
  }

  assert {
    condition = [for k, v in jsondecode(output.state_machine_definition).States : [k, v.Type]] == [
      ["CheckInput", "Choice"],
      ["CheckInputPresent", "Choice"],
      ["ExportFailed", "Fail"],
      ["ExportImage", "Task"],
      ["InvalidInput", "Fail"],
    ]
    error_message = "States differ: ${output.state_machine_definition}"
  }

  assert {
    condition     = jsondecode(output.state_machine_definition).States.ExportImage.Resource == "arn:aws:states:::codebuild:startBuild.sync"
    error_message = "ExportImage must use codebuild:startBuild.sync (wait for the build)."
  }

  assert {
    condition = jsondecode(output.state_machine_definition).States.ExportImage.Parameters == {
      ProjectName = "avarobotics-prod-api-export"
      EnvironmentVariablesOverride = [
        { Name = "IMAGE_URI", Type = "PLAINTEXT", "Value.$" = "$.imageUri" },
        { Name = "ARTIFACT_BUCKET", Type = "PLAINTEXT", "Value.$" = "$.artifactBucket" },
        { Name = "ARTIFACT_KEY", Type = "PLAINTEXT", "Value.$" = "$.artifactKey" },
      ]
    }
    error_message = "ExportImage parameters differ: ${output.state_machine_definition}"
  }

  assert {
    condition = jsondecode(output.state_machine_definition).States.ExportImage.Retry == [{
      ErrorEquals     = ["CodeBuild.AWSCodeBuildException", "CodeBuild.AccountLimitExceededException", "CodeBuild.CodeBuildException"]
      IntervalSeconds = 10
      BackoffRate     = 2
      MaxAttempts     = 5
      MaxDelaySeconds = 300
      JitterStrategy  = "FULL"
    }]
    error_message = "Retry differs: ${output.state_machine_definition}"
  }

  # A failed build is not retried (ecrbuild retries transient errors itself).
  assert {
    condition = alltrue([for r in jsondecode(output.state_machine_definition).States.ExportImage.Retry :
    !contains(r.ErrorEquals, "States.ALL") && !contains(r.ErrorEquals, "States.TaskFailed") && !contains(r.ErrorEquals, "States.Timeout")])
    error_message = "Only start and throttling errors are retried."
  }

  assert {
    condition = jsondecode(output.state_machine_definition).States.ExportImage.Catch == [{
      ErrorEquals = ["States.ALL"]
      ResultPath  = "$.error"
      Next        = "ExportFailed"
    }]
    error_message = "Every failure must be caught into ExportFailed."
  }

  assert {
    condition = jsondecode(output.state_machine_definition).States.ExportFailed == {
      Type      = "Fail"
      ErrorPath = "$.error.Error"
      CausePath = "$.error.Cause"
    }
    error_message = "ExportFailed must carry the caught error and the build's cause."
  }

  assert {
    condition     = jsondecode(output.state_machine_definition).States.ExportImage.TimeoutSeconds == 3600 && jsondecode(output.state_machine_definition).States.ExportImage.End
    error_message = "ExportImage must have a timeout and end the execution."
  }
}

run "state_machine_accepts_only_the_export_bucket_and_prefix" {
  command = plan

  variables {
    export_prefix = "images/out/"
  }

  assert {
    condition = jsondecode(output.state_machine_definition).States.CheckInputPresent.Choices == [{
      And = [
        { Variable = "$.imageUri", IsPresent = true },
        { Variable = "$.artifactBucket", IsPresent = true },
        { Variable = "$.artifactKey", IsPresent = true },
      ]
      Next = "CheckInput"
    }]
    error_message = "CheckInputPresent differs: ${output.state_machine_definition}"
  }

  assert {
    condition = jsondecode(output.state_machine_definition).States.CheckInput.Choices == [{
      And = [
        { Variable = "$.imageUri", IsString = true },
        { Not = { Variable = "$.imageUri", StringEquals = "" } },
        { Variable = "$.artifactBucket", IsString = true },
        { Variable = "$.artifactBucket", StringEquals = "avarobotics-prod-api-exports-123456789012" },
        { Variable = "$.artifactKey", IsString = true },
        { Variable = "$.artifactKey", StringMatches = "images/out/*" },
        { Not = { Variable = "$.artifactKey", StringEquals = "images/out/" } },
      ]
      Next = "ExportImage"
    }]
    error_message = "CheckInput differs: ${output.state_machine_definition}"
  }

  assert {
    condition = (jsondecode(output.state_machine_definition).States.CheckInput.Default == "InvalidInput" &&
    jsondecode(output.state_machine_definition).States.CheckInputPresent.Default == "InvalidInput")
    error_message = "Bad input must end in InvalidInput."
  }

  assert {
    condition     = jsondecode(output.export_permissions_policy).Statement[2].Resource == "arn:aws:s3:::avarobotics-prod-api-exports-123456789012/images/out/*"
    error_message = "The export role must follow the prefix."
  }
}

run "export_buildspec_runs_ecrbuild_export_without_docker" {
  command = plan

  assert {
    condition     = yamldecode(output.export_buildspec).version == 0.2 && keys(yamldecode(output.export_buildspec).phases) == ["build", "install"]
    error_message = "The export buildspec has install and build phases only (no post_build)."
  }

  assert {
    condition     = strcontains(yamldecode(output.export_buildspec).phases.build.commands[0], "ecrbuild export \"$IMAGE_URI\" --to \"s3://$ARTIFACT_BUCKET/$ARTIFACT_KEY\"")
    error_message = "The build phase must run ecrbuild export \"$IMAGE_URI\" --to \"s3://$ARTIFACT_BUCKET/$ARTIFACT_KEY\"."
  }

  assert {
    condition     = strcontains(yamldecode(output.export_buildspec).phases.install.commands[0], "sha256sum --check")
    error_message = "The downloaded ecrbuild must be checked against its SHA-256."
  }

  assert {
    condition     = !strcontains(output.export_buildspec, "docker")
    error_message = "The export needs no Docker."
  }
}

run "wildcard_prefix_is_rejected" {
  command = plan

  variables {
    export_prefix = "exports/*"
  }

  expect_failures = [var.export_prefix]
}

run "prefix_without_trailing_slash_is_rejected" {
  command = plan

  variables {
    export_prefix = "exports"
  }

  expect_failures = [var.export_prefix]
}

run "kms_alias_is_rejected" {
  command = plan

  variables {
    export_kms_key_arn = "arn:aws:kms:ap-northeast-1:123456789012:alias/exports"
  }

  expect_failures = [var.export_kms_key_arn]
}

run "wildcard_bucket_is_rejected" {
  command = plan

  variables {
    export_bucket_name = "avarobotics-*"
  }

  expect_failures = [var.export_bucket_name]
}
