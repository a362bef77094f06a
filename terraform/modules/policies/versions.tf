# This module declares no provider on purpose: it only computes JSON documents,
# so `terraform init`, `validate` and `test` run offline.
terraform {
  required_version = ">= 1.6"
}
