# Every IAM and lifecycle document of the stack, built with jsonencode.
# ARNs are assembled from names (not read from resources) so that the
# CodeBuild role can name its project before the project exists.

locals {
  # One ARN per service repository, in the order given; every ECR statement
  # names exactly these (no wildcard, no prefix match).
  repository_arns = [for name in var.repository_names : "arn:${var.partition}:ecr:${var.region}:${var.account_id}:repository/${name}"]
  project_arn     = "arn:${var.partition}:codebuild:${var.region}:${var.account_id}:project/${var.project_name}"
  log_group_arn   = "arn:${var.partition}:logs:${var.region}:${var.account_id}:log-group:${var.log_group_name}"

  github_token_host = "token.actions.githubusercontent.com"
  github_audience   = "sts.amazonaws.com"
  github_subject    = "repo:${var.github_repository}:ref:refs/heads/${var.github_branch}"

  # FR-004: the five actions of an image push.
  ecr_push_actions = [
    "ecr:BatchCheckLayerAvailability",
    "ecr:CompleteLayerUpload",
    "ecr:InitiateLayerUpload",
    "ecr:PutImage",
    "ecr:UploadLayerPart",
  ]

  # Reads ecrbuild makes on its own repository, around the push:
  # - BatchGetImage: read a manifest. Post-push verification that every tag
  #   resolves to the pushed digest; skip re-pushing a SHA that is already
  #   published (immutable tags would reject it); read the manifest behind
  #   `latest` so that `latest` never moves to an older commit.
  # - GetDownloadUrlForLayer: fetch the config blob behind `latest`, which
  #   carries the revision label compared above.
  # - DescribeRepositories: preflight, so a missing repository fails in
  #   seconds instead of after the build.
  ecr_read_actions = [
    "ecr:BatchGetImage",
    "ecr:DescribeRepositories",
    "ecr:GetDownloadUrlForLayer",
  ]

  # Only for `ecrbuild --wait-scan`: poll the scan-on-push result.
  ecr_scan_actions = [
    "ecr:DescribeImageScanFindings",
    "ecr:DescribeImages",
  ]

  # The log group is created by Terraform, so logs:CreateLogGroup is not granted.
  # Resources: the group and "<group>:*" (its streams), the form CodeBuild documents.
  log_actions = [
    "logs:CreateLogStream",
    "logs:PutLogEvents",
  ]

  codebuild_trust_policy = {
    Version = "2012-10-17"
    Statement = [{
      Sid       = "CodeBuildThisProjectOnly"
      Effect    = "Allow"
      Principal = { Service = var.codebuild_service_principal }
      Action    = "sts:AssumeRole"
      # Confused-deputy protection: only this account's project may assume it.
      Condition = {
        StringEquals = { "aws:SourceAccount" = var.account_id }
        ArnLike      = { "aws:SourceArn" = local.project_arn }
      }
    }]
  }

  codebuild_permissions_policy = {
    Version = "2012-10-17"
    Statement = [
      {
        # GetAuthorizationToken supports no resource-level permission:
        # "*" is the only valid resource, so it stays alone in this statement.
        Sid      = "EcrAuthorizationToken"
        Effect   = "Allow"
        Action   = ["ecr:GetAuthorizationToken"]
        Resource = "*"
      },
      {
        Sid      = "EcrPushServiceRepositories"
        Effect   = "Allow"
        Action   = local.ecr_push_actions
        Resource = local.repository_arns
      },
      {
        Sid      = "EcrReadServiceRepositories"
        Effect   = "Allow"
        Action   = local.ecr_read_actions
        Resource = local.repository_arns
      },
      {
        Sid      = "LogsThisProjectOnly"
        Effect   = "Allow"
        Action   = local.log_actions
        Resource = [local.log_group_arn, "${local.log_group_arn}:*"]
      },
    ]
  }

  # A separate document, attached only when enable_wait_scan is true. (Kept
  # out of the main document so that document stays a plain literal list.)
  codebuild_wait_scan_policy = {
    Version = "2012-10-17"
    Statement = [
      {
        Sid      = "EcrScanFindingsServiceRepositories"
        Effect   = "Allow"
        Action   = local.ecr_scan_actions
        Resource = local.repository_arns
      },
    ]
  }

  github_trust_policy = {
    Version = "2012-10-17"
    Statement = [{
      Sid       = "GitHubActionsOneBranchOnly"
      Effect    = "Allow"
      Principal = { Federated = var.oidc_provider_arn }
      Action    = "sts:AssumeRoleWithWebIdentity"
      # StringEquals, never StringLike: the subject is one exact branch of one
      # repository. Pull requests, forks, tags, other branches and jobs bound
      # to a GitHub environment all present a different `sub`.
      Condition = {
        StringEquals = {
          "${local.github_token_host}:aud" = local.github_audience
          "${local.github_token_host}:sub" = local.github_subject
        }
      }
    }]
  }

  # FR-006: the trigger role starts a build, nothing else. With batch builds
  # on, it may also start a batch of this project (a departure from FR-006
  # that enable_batch_builds opts into; README.md, "Batch builds").
  github_start_actions = var.enable_batch_builds ? ["codebuild:StartBuild", "codebuild:StartBuildBatch"] : ["codebuild:StartBuild"]

  github_permissions_policy = {
    Version = "2012-10-17"
    Statement = [
      {
        Sid      = "StartThisProjectOnly"
        Effect   = "Allow"
        Action   = local.github_start_actions
        Resource = local.project_arn
      },
      {
        # The build must run the buildspec of the commit, never one
        # supplied by the caller.
        Sid       = "DenyBuildspecOverride"
        Effect    = "Deny"
        Action    = local.github_start_actions
        Resource  = local.project_arn
        Condition = { Null = { "codebuild:source.buildspec" = "false" } }
      },
    ]
  }

  # Batch service role (build_batch_config.service_role): CodeBuild uses it to
  # start, stop and retry the builds of a batch of this project. AWS asks for
  # a role apart from the build's own service role.
  codebuild_batch_permissions_policy = {
    Version = "2012-10-17"
    Statement = [
      {
        Sid      = "BatchBuildsOfThisProjectOnly"
        Effect   = "Allow"
        Action   = ["codebuild:RetryBuild", "codebuild:StartBuild", "codebuild:StopBuild"]
        Resource = local.project_arn
      },
    ]
  }

  # Lifecycle of every service repository.
  #
  # ecrbuild publishes a multi-platform image as an OCI index under the SHA
  # tag; its per-platform children are pushed by digest (untagged) or, from
  # native build hosts, tagged <sha>-<os>-<arch>[-<variant>]. ECR's lifecycle
  # does not know that an index references its children
  # (aws/containers-roadmap#1596), so:
  #
  # - there is no rule on untagged images at all. Untagged images are the
  #   children of kept indexes; any age- or count-based expiry of them can
  #   delete a child of an index that is still kept (a kept index may be any
  #   age: tagged images are kept by count, not by time). The price is that
  #   children of expired indexes, and digests of runs that failed before
  #   their index was pushed, stay until removed by hand (README.md).
  # - per-platform tags are kept for as many commits as the SHA tags: the
  #   last keep_tagged_images x max_platforms_per_image of them, in a rule
  #   that comes before the catch-all SHA rule (a rule never expires an image
  #   that a higher-priority rule selected).
  # - the moving tags (latest, extra_image_tag) are never expired.
  # - staging images expire a day after their push. The daemon pushes every
  #   image under ecrbuild-staging-<tag> (<tag>: the SHA tag or a platform
  #   tag), and ecrbuild then writes the image with its provenance labels
  #   under <tag> itself: an immutable tag is written once. The labelled
  #   image is another manifest (another digest) that carries no staging tag,
  #   and an index lists labelled images only, so this age rule never selects
  #   a published image or a child of an index. It comes before the platform
  #   and SHA rules, whose patterns (*-linux-*, *) match staging tags too.
  #
  # Invariant (asserted in tests/lifecycle.tftest.hcl): no rule selects
  # untagged (or "any") images, the platform rule keeps at least
  # keep_tagged_images x max_platforms_per_image images and outranks the SHA
  # rule, every moving tag has a keep-one rule that outranks all three, and
  # the only rule by age is the staging rule, which outranks the platform and
  # SHA rules.
  moving_tag_rules = [
    for i, tag in var.moving_tags : {
      # Only one image can carry a moving tag, so this rule never expires
      # anything; it exists so that no lower rule can expire that image.
      # (One rule per tag: the patterns of one tagPatternList must all match.)
      rulePriority = i + 1
      description  = "Never expire the image tagged ${tag}"
      selection = {
        tagStatus      = "tagged"
        tagPatternList = [tag]
        countType      = "imageCountMoreThan"
        countNumber    = 1
      }
      action = { type = "expire" }
    }
  ]

  # The tags the daemon pushes under (ecrbuild's Tag::staging).
  staging_tag_pattern = "ecrbuild-staging-*"

  lifecycle_policy = {
    rules = concat(local.moving_tag_rules, [
      {
        rulePriority = 10
        description  = "Expire the images the daemon pushed under ${local.staging_tag_pattern} a day after their push"
        selection = {
          tagStatus      = "tagged"
          tagPatternList = [local.staging_tag_pattern]
          countType      = "sinceImagePushed"
          countUnit      = "days"
          countNumber    = 1
        }
        action = { type = "expire" }
      },
      {
        rulePriority = 15
        description  = "Keep the per-platform images of the last ${var.keep_tagged_images} commits (<sha>-linux-*)"
        selection = {
          tagStatus      = "tagged"
          tagPatternList = ["*-linux-*"]
          countType      = "imageCountMoreThan"
          countNumber    = var.keep_tagged_images * var.max_platforms_per_image
        }
        action = { type = "expire" }
      },
      {
        # Commit SHAs have no fixed prefix, so this selects every remaining
        # tagged image; in this repository those are the SHA-tagged images
        # (single-platform images and multi-platform indexes).
        rulePriority = 20
        description  = "Keep the last ${var.keep_tagged_images} SHA-tagged images"
        selection = {
          tagStatus      = "tagged"
          tagPatternList = ["*"]
          countType      = "imageCountMoreThan"
          countNumber    = var.keep_tagged_images
        }
        action = { type = "expire" }
      },
    ])
  }
}
