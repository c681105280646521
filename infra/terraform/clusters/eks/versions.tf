terraform {
  required_version = ">= 1.5"

  # Only the AWS provider: the GPU nodes run the Bottlerocket NVIDIA variant, whose AMI ships the NVIDIA
  # driver and the Kubernetes device plugin, so no Helm/Kubernetes provider is needed here.
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.80, < 6"
    }
  }
}

provider "aws" {
  region = var.region

  default_tags {
    tags = var.tags
  }
}
