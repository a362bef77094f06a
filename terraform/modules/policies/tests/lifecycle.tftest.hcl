# The lifecycle policy never breaks a multi-platform index, and expires the
# staging images the daemon pushes (ecrbuild-staging-*) a day after their push.
#
# Invariant: no rule selects untagged (or "any") images; the per-platform
# rule (*-linux-*) keeps at least keep_tagged_images x max_platforms_per_image
# images and outranks the SHA rule; every moving tag has a keep-one rule that
# outranks all others; the only rule by age selects ecrbuild-staging-* alone
# and outranks the platform and SHA rules (whose patterns match staging tags
# too). Then every child of a kept index is kept: untagged children are never
# expired, tagged children are kept for as many commits as the indexes
# themselves, and no published image carries a staging tag (ecrbuild writes
# the labelled image, another digest, under the SHA or platform tag), so the
# age rule never reaches one. tests/infra/test_policy_evaluation.py replays
# pushes through the rendered policy to show it.

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

run "default_rules_are_exact" {
  command = plan

  assert {
    condition = jsondecode(output.lifecycle_policy).rules == [
      {
        rulePriority = 1
        description  = "Never expire the image tagged latest"
        selection    = { tagStatus = "tagged", tagPatternList = ["latest"], countType = "imageCountMoreThan", countNumber = 1 }
        action       = { type = "expire" }
      },
      {
        rulePriority = 10
        description  = "Expire the images the daemon pushed under ecrbuild-staging-* a day after their push"
        selection    = { tagStatus = "tagged", tagPatternList = ["ecrbuild-staging-*"], countType = "sinceImagePushed", countUnit = "days", countNumber = 1 }
        action       = { type = "expire" }
      },
      {
        rulePriority = 15
        description  = "Keep the per-platform images of the last 50 commits (<sha>-linux-*)"
        selection    = { tagStatus = "tagged", tagPatternList = ["*-linux-*"], countType = "imageCountMoreThan", countNumber = 200 }
        action       = { type = "expire" }
      },
      {
        rulePriority = 20
        description  = "Keep the last 50 SHA-tagged images"
        selection    = { tagStatus = "tagged", tagPatternList = ["*"], countType = "imageCountMoreThan", countNumber = 50 }
        action       = { type = "expire" }
      },
    ]
    error_message = "Lifecycle rules differ from the reviewed list: ${output.lifecycle_policy}"
  }
}

run "extra_moving_tag_gets_its_own_keep_rule" {
  command = plan

  variables {
    moving_tags             = ["latest", "prod"]
    keep_tagged_images      = 20
    max_platforms_per_image = 2
  }

  assert {
    condition = [for r in jsondecode(output.lifecycle_policy).rules : [r.rulePriority, r.selection.tagPatternList, r.selection.countNumber]] == [
      [1, ["latest"], 1],
      [2, ["prod"], 1],
      [10, ["ecrbuild-staging-*"], 1],
      [15, ["*-linux-*"], 40],
      [20, ["*"], 20],
    ]
    error_message = "Rules with an extra moving tag differ: ${output.lifecycle_policy}"
  }
}

run "invariant_holds_for_small_and_large_retention" {
  command = plan

  variables {
    keep_tagged_images      = 1
    max_platforms_per_image = 3
    moving_tags             = ["latest", "stable"]
  }

  # No rule may touch untagged images: they are the children of kept indexes.
  assert {
    condition     = alltrue([for r in jsondecode(output.lifecycle_policy).rules : r.selection.tagStatus == "tagged"])
    error_message = "A rule selects untagged or any images: ${output.lifecycle_policy}"
  }

  # Every rule but the staging rule expires by count, never by age (an age
  # limit could expire a child of an index that is kept by count). The
  # staging rule selects ecrbuild-staging-* only: no published image, and no
  # child of an index, carries such a tag.
  assert {
    condition = alltrue([for r in jsondecode(output.lifecycle_policy).rules :
      r.action == { type = "expire" } && (
        r.selection.tagPatternList == ["ecrbuild-staging-*"]
        ? r.selection.countType == "sinceImagePushed" && r.selection.countUnit == "days" && r.selection.countNumber >= 1
        : r.selection.countType == "imageCountMoreThan" && !can(r.selection.countUnit)
    )])
    error_message = "Every rule but the staging rule must expire by image count; the staging rule by days since push."
  }

  # Exactly one staging rule, before the platform and SHA rules (their
  # patterns match staging tags too: a staging image must be selected, and
  # expired, by its own rule) and after every moving tag's keep-one rule.
  assert {
    condition = length([for r in jsondecode(output.lifecycle_policy).rules : r if r.selection.tagPatternList == ["ecrbuild-staging-*"]]) == 1 && alltrue([
      for st in jsondecode(output.lifecycle_policy).rules : alltrue([
        for r in jsondecode(output.lifecycle_policy).rules :
        (contains([["*-linux-*"], ["*"]], r.selection.tagPatternList) ? st.rulePriority < r.rulePriority : true) &&
        (contains([for tag in var.moving_tags : [tag]], r.selection.tagPatternList) ? r.rulePriority < st.rulePriority : true)
      ]) if st.selection.tagPatternList == ["ecrbuild-staging-*"]
    ])
    error_message = "The staging rule must come after the moving tags' rules and before the platform and SHA rules."
  }

  # The platform rule keeps the children of every kept SHA image and comes
  # before the SHA rule.
  assert {
    condition = alltrue([
      for p in jsondecode(output.lifecycle_policy).rules : alltrue([
        for s in jsondecode(output.lifecycle_policy).rules :
        p.rulePriority < s.rulePriority && p.selection.countNumber >= s.selection.countNumber * 3
        if s.selection.tagPatternList == ["*"]
      ]) if p.selection.tagPatternList == ["*-linux-*"]
    ]) && length([for r in jsondecode(output.lifecycle_policy).rules : r if r.selection.tagPatternList == ["*-linux-*"]]) == 1
    error_message = "The *-linux-* rule must keep keep_tagged_images x max_platforms_per_image images and outrank the SHA rule."
  }

  # Moving tags outrank everything else, and keep their one image.
  assert {
    condition = alltrue([
      for tag in ["latest", "stable"] : length([
        for r in jsondecode(output.lifecycle_policy).rules : r
        if r.selection.tagPatternList == [tag] && r.selection.countNumber == 1 && r.rulePriority < 10
      ]) == 1
    ])
    error_message = "Every moving tag needs a keep-one rule before the platform and SHA rules."
  }

  assert {
    condition     = length(distinct([for r in jsondecode(output.lifecycle_policy).rules : r.rulePriority])) == length(jsondecode(output.lifecycle_policy).rules)
    error_message = "Rule priorities must be unique."
  }
}

run "wildcard_moving_tag_is_rejected" {
  command = plan

  variables {
    moving_tags = ["latest", "*"]
  }

  expect_failures = [var.moving_tags]
}

run "moving_tag_that_looks_like_a_staging_tag_is_rejected" {
  command = plan

  variables {
    moving_tags = ["latest", "ecrbuild-staging-main"]
  }

  expect_failures = [var.moving_tags]
}

run "moving_tag_that_looks_like_a_platform_tag_is_rejected" {
  command = plan

  variables {
    moving_tags = ["latest", "x-linux-amd64"]
  }

  expect_failures = [var.moving_tags]
}
