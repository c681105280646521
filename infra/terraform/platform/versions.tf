terraform {
  required_version = ">= 1.5"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 6.14, < 8"
    }
    archive = {
      source  = "hashicorp/archive"
      version = ">= 2.4, < 3"
    }
  }

  # State belongs in a bucket, not on a laptop: `terraform init -backend-config="bucket=<STATE_BUCKET>"`
  # (docs/deploy.md creates that bucket before the first init).
  backend "gcs" {
    prefix = "training-platform/platform"
  }
}

provider "google" {
  project = var.project_id
  region  = var.region
}
