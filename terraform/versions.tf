terraform {
  required_version = ">= 1.6"

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # 6.8 adds IMMUTABLE_WITH_EXCLUSION and image_tag_mutability_exclusion_filter.
      version = ">= 6.8, < 7.0"
    }
  }
}

provider "aws" {
  region = var.region

  # Every taggable resource gets these; each resource adds its own Name tag.
  default_tags {
    tags = local.common_tags
  }
}
