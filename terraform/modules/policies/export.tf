# Export pipeline: a Step Functions state machine runs the export CodeBuild
# project (`ecrbuild export IMAGE --to s3://BUCKET/KEY`, no Docker daemon),
# which streams an image from the service repositories into the export bucket.
# Every document of it is built here; tests/export.tftest.hcl asserts them.

locals {
  export_project_arn   = "arn:${var.partition}:codebuild:${var.region}:${var.account_id}:project/${var.export_project_name}"
  export_log_group_arn = "arn:${var.partition}:logs:${var.region}:${var.account_id}:log-group:${var.export_log_group_name}"
  export_bucket_arn    = "arn:${var.partition}:s3:::${var.export_bucket_name}"
  # Objects under the prefix only: "<bucket>/<prefix>*".
  export_objects_arn = "${local.export_bucket_arn}/${var.export_prefix}*"
  state_machine_arn  = "arn:${var.partition}:states:${var.region}:${var.account_id}:stateMachine:${var.state_machine_name}"
  # The managed EventBridge rule through which Step Functions learns that a
  # build started with codebuild:startBuild.sync has finished.
  codebuild_sync_rule_arn = "arn:${var.partition}:events:${var.region}:${var.account_id}:rule/StepFunctionsGetEventForCodeBuildStartBuildRule"
  codebuild_sync_resource = "arn:${var.partition}:states:::codebuild:startBuild.sync"
  dns_suffix              = var.partition == "aws-cn" ? "amazonaws.com.cn" : "amazonaws.com"

  # Pull: read a manifest, its config and its layers (ecrbuild export copies
  # the registry blobs byte for byte). No push, no describe, no delete.
  ecr_pull_actions = [
    "ecr:BatchCheckLayerAvailability",
    "ecr:BatchGetImage",
    "ecr:GetDownloadUrlForLayer",
  ]

  # Write one object, in one PUT or as a multipart upload (Create, UploadPart
  # and Complete are all s3:PutObject), and abort an upload that failed. No
  # read, no list, no delete.
  export_s3_actions = [
    "s3:AbortMultipartUpload",
    "s3:PutObject",
  ]

  export_trust_policy = {
    Version = "2012-10-17"
    Statement = [{
      Sid       = "CodeBuildExportProjectOnly"
      Effect    = "Allow"
      Principal = { Service = var.codebuild_service_principal }
      Action    = "sts:AssumeRole"
      Condition = {
        StringEquals = { "aws:SourceAccount" = var.account_id }
        ArnLike      = { "aws:SourceArn" = local.export_project_arn }
      }
    }]
  }

  export_permissions_policy = {
    Version = "2012-10-17"
    Statement = concat(
      [
        {
          # No resource-level permission exists for this action.
          Sid      = "EcrAuthorizationToken"
          Effect   = "Allow"
          Action   = ["ecr:GetAuthorizationToken"]
          Resource = "*"
        },
        {
          Sid      = "EcrPullServiceRepositories"
          Effect   = "Allow"
          Action   = local.ecr_pull_actions
          Resource = local.repository_arns
        },
        {
          Sid      = "S3WriteExportPrefixOnly"
          Effect   = "Allow"
          Action   = local.export_s3_actions
          Resource = local.export_objects_arn
        },
        {
          Sid      = "LogsExportProjectOnly"
          Effect   = "Allow"
          Action   = local.log_actions
          Resource = [local.export_log_group_arn, "${local.export_log_group_arn}:*"]
        },
      ],
      var.export_kms_key_arn == null ? [] : [
        {
          # SSE-KMS: S3 generates and (for multipart uploads) decrypts the
          # data key on the role's behalf; the key is usable through S3 only.
          Sid       = "KmsExportBucketThroughS3Only"
          Effect    = "Allow"
          Action    = ["kms:Decrypt", "kms:GenerateDataKey"]
          Resource  = var.export_kms_key_arn
          Condition = { StringEquals = { "kms:ViaService" = "s3.${var.region}.${local.dns_suffix}" } }
        },
      ],
    )
  }

  export_bucket_policy = {
    Version = "2012-10-17"
    Statement = [{
      Sid       = "DenyInsecureTransport"
      Effect    = "Deny"
      Principal = "*"
      Action    = "s3:*"
      Resource  = [local.export_bucket_arn, "${local.export_bucket_arn}/*"]
      Condition = { Bool = { "aws:SecureTransport" = "false" } }
    }]
  }

  states_trust_policy = {
    Version = "2012-10-17"
    Statement = [{
      Sid       = "StepFunctionsExportStateMachineOnly"
      Effect    = "Allow"
      Principal = { Service = var.states_service_principal }
      Action    = "sts:AssumeRole"
      Condition = {
        StringEquals = { "aws:SourceAccount" = var.account_id }
        ArnLike      = { "aws:SourceArn" = local.state_machine_arn }
      }
    }]
  }

  states_permissions_policy = {
    Version = "2012-10-17"
    Statement = [
      {
        # startBuild.sync: start the build, poll it, stop it when the task
        # times out or the execution is stopped.
        Sid      = "CodeBuildExportProjectOnly"
        Effect   = "Allow"
        Action   = ["codebuild:BatchGetBuilds", "codebuild:StartBuild", "codebuild:StopBuild"]
        Resource = local.export_project_arn
      },
      {
        # The managed rule Step Functions creates to hear that the build ended.
        Sid      = "EventsCodeBuildSyncRuleOnly"
        Effect   = "Allow"
        Action   = ["events:DescribeRule", "events:PutRule", "events:PutTargets"]
        Resource = local.codebuild_sync_rule_arn
      },
      {
        # Execution logging to CloudWatch Logs. These log-delivery actions
        # support no resource-level permission: "*" is the only valid
        # resource (Step Functions' documented logging policy).
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
        # X-Ray tracing of executions; these actions support no
        # resource-level permission either.
        Sid      = "XRayTracing"
        Effect   = "Allow"
        Action   = ["xray:GetSamplingRules", "xray:GetSamplingTargets", "xray:PutTelemetryRecords", "xray:PutTraceSegments"]
        Resource = "*"
      },
    ]
  }

  # Input: {"imageUri": "...", "artifactBucket": "<export bucket>", "artifactKey": "<prefix>..."}.
  # Checked before a build is spent on it: all three present and strings, the
  # bucket is the export bucket, the key lies under the prefix.
  state_machine_definition = {
    Comment = "Exports one image from ECR into S3 with `ecrbuild export` in CodeBuild project ${var.export_project_name}. Input: {imageUri, artifactBucket, artifactKey}."
    StartAt = "CheckInputPresent"
    States = {
      CheckInputPresent = {
        Type = "Choice"
        Choices = [{
          And = [
            { Variable = "$.imageUri", IsPresent = true },
            { Variable = "$.artifactBucket", IsPresent = true },
            { Variable = "$.artifactKey", IsPresent = true },
          ]
          Next = "CheckInput"
        }]
        Default = "InvalidInput"
      }
      CheckInput = {
        Type = "Choice"
        Choices = [{
          And = [
            { Variable = "$.imageUri", IsString = true },
            { Not = { Variable = "$.imageUri", StringEquals = "" } },
            { Variable = "$.artifactBucket", IsString = true },
            { Variable = "$.artifactBucket", StringEquals = var.export_bucket_name },
            { Variable = "$.artifactKey", IsString = true },
            { Variable = "$.artifactKey", StringMatches = "${var.export_prefix}*" },
            { Not = { Variable = "$.artifactKey", StringEquals = var.export_prefix } },
          ]
          Next = "ExportImage"
        }]
        Default = "InvalidInput"
      }
      ExportImage = {
        Type     = "Task"
        Resource = local.codebuild_sync_resource
        Parameters = {
          ProjectName = var.export_project_name
          EnvironmentVariablesOverride = [
            { Name = "IMAGE_URI", Type = "PLAINTEXT", "Value.$" = "$.imageUri" },
            { Name = "ARTIFACT_BUCKET", Type = "PLAINTEXT", "Value.$" = "$.artifactBucket" },
            { Name = "ARTIFACT_KEY", Type = "PLAINTEXT", "Value.$" = "$.artifactKey" },
          ]
        }
        # On timeout Step Functions stops the build (codebuild:StopBuild).
        TimeoutSeconds = var.export_task_timeout_seconds
        # Keep what identifies the build, not the whole Build object.
        ResultSelector = {
          "buildId.$"     = "$.Build.Id"
          "buildStatus.$" = "$.Build.BuildStatus"
        }
        ResultPath = "$.build"
        # Retried: CodeBuild refusing or throttling the start (API errors,
        # the account's concurrent-build limit), with exponential backoff and
        # jitter. Not retried: a build that ran and failed (States.TaskFailed:
        # ecrbuild already retries transient registry and S3 errors itself)
        # and States.Timeout (a build that hung once would hang again).
        Retry = [{
          ErrorEquals     = ["CodeBuild.AWSCodeBuildException", "CodeBuild.AccountLimitExceededException", "CodeBuild.CodeBuildException"]
          IntervalSeconds = 10
          BackoffRate     = 2
          MaxAttempts     = 5
          MaxDelaySeconds = 300
          JitterStrategy  = "FULL"
        }]
        Catch = [{
          ErrorEquals = ["States.ALL"]
          ResultPath  = "$.error"
          Next        = "ExportFailed"
        }]
        End = true
      }
      ExportFailed = {
        # Carries the error and the cause (for a failed build, the build as
        # JSON: id, status, phases, log link) into the execution's result.
        Type      = "Fail"
        ErrorPath = "$.error.Error"
        CausePath = "$.error.Cause"
      }
      InvalidInput = {
        Type  = "Fail"
        Error = "ExportInputInvalid"
        Cause = "Input must be {\"imageUri\": \"<registry>/<repository>:<tag>|@<digest>\", \"artifactBucket\": \"${var.export_bucket_name}\", \"artifactKey\": \"${var.export_prefix}<name>\"}."
      }
    }
  }
}
