# esdb-relay on Google Cloud: Cloud Functions (2nd gen) in the VPC peered with Event Store Cloud.
# Step by step: docs/deploy-gcp.md.

terraform {
  # 1.9: variable validations may refer to other variables (the subnet-inside-peering check).
  required_version = ">= 1.9.0, < 2.0.0"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "~> 7.45"
    }
    # time_sleep: the wait for IAM grants to propagate before the first build (iam.tf).
    time = {
      source  = "hashicorp/time"
      version = "~> 0.13"
    }
  }
}

provider "google" {
  project = var.project
  region  = var.region

  default_labels = local.labels
}
