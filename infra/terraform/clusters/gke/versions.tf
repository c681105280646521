terraform {
  required_version = ">= 1.5"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 6.14, < 8"
    }
  }

  backend "gcs" {
    prefix = "training-platform/clusters/gke"
  }
}

provider "google" {
  project = var.project_id
  region  = var.region
}
