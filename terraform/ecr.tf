# One repository per service (var.services; by default the single service
# named after the component, repository <project>-<environment>-<component>).
resource "aws_ecr_repository" "image" {
  for_each = local.repositories

  name = each.value

  # Commit-SHA tags can never be overwritten; only the moving tags
  # (latest, ecrbuild-candidates, plus extra_image_tag when set) may point at
  # a newer image, and the staging tags (ecrbuild-staging-*) may be pushed
  # again by a re-run.
  image_tag_mutability = "IMMUTABLE_WITH_EXCLUSION"

  dynamic "image_tag_mutability_exclusion_filter" {
    for_each = local.mutable_tag_filters
    content {
      filter      = image_tag_mutability_exclusion_filter.value
      filter_type = "WILDCARD"
    }
  }

  image_scanning_configuration {
    scan_on_push = true
  }

  encryption_configuration {
    encryption_type = var.ecr_kms_key_arn == null ? "AES256" : "KMS"
    kms_key         = var.ecr_kms_key_arn
  }

  # SC-006: false keeps images safe from an accidental destroy; set it to true
  # and apply once before `terraform destroy` of a repository that holds images.
  force_delete = var.force_delete

  tags = {
    Name    = each.value
    Service = each.key
  }
}

# The same policy on every repository: it never expires an image that a kept
# multi-platform index references, and expires staging images a day after
# their push (modules/policies, README.md "Lifecycle").
resource "aws_ecr_lifecycle_policy" "image" {
  for_each = aws_ecr_repository.image

  repository = each.value.name
  policy     = module.policies.lifecycle_policy
}

# The single repository of earlier versions becomes the default service's
# instance, without a replacement. (With a component other than api, move
# the state by hand: README.md, "Services".)
moved {
  from = aws_ecr_repository.image
  to   = aws_ecr_repository.image["api"]
}

moved {
  from = aws_ecr_lifecycle_policy.image
  to   = aws_ecr_lifecycle_policy.image["api"]
}
