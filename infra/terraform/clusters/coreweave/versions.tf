terraform {
  required_version = ">= 1.5"

  required_providers {
    coreweave = {
      source  = "coreweave/coreweave"
      version = ">= 0.10, < 1"
    }
    kubernetes = {
      source  = "hashicorp/kubernetes"
      version = ">= 2.23, < 3"
    }
  }
}

provider "coreweave" {
  token = var.coreweave_api_token
}

# CKS Node Pools are Kubernetes objects (compute.coreweave.com/v1alpha1 NodePool), created through the
# cluster's API with the same CoreWeave API token. kubernetes_manifest needs the API at plan time, so
# the first apply targets the cluster (docs/deploy.md, "Other clusters").
provider "kubernetes" {
  host                   = local.api_server
  token                  = var.coreweave_api_token
  cluster_ca_certificate = var.cluster_ca_certificate != "" ? base64decode(var.cluster_ca_certificate) : null
}
