resource "aws_ecr_repository" "image" {
  name = local.names.repository

  # Commit-SHA tags can never be overwritten; only the moving tags
  # (latest, plus extra_image_tag when set) may point at a newer image.
  image_tag_mutability = "IMMUTABLE_WITH_EXCLUSION"

  dynamic "image_tag_mutability_exclusion_filter" {
    for_each = local.moving_tags
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
    Name = local.names.repository
  }
}

resource "aws_ecr_lifecycle_policy" "image" {
  repository = aws_ecr_repository.image.name
  policy     = module.policies.lifecycle_policy
}
