terraform {
  required_version = ">= 1.5"

  required_providers {
    azurerm = {
      source  = "hashicorp/azurerm"
      version = ">= 4.10, < 5"
    }
    helm = {
      source  = "hashicorp/helm"
      version = ">= 2.12, < 3"
    }
  }
}

provider "azurerm" {
  features {}
  subscription_id = var.subscription_id
}

data "azurerm_client_config" "current" {}

# AKS installs the NVIDIA driver on GPU nodes but not the device plugin; Helm installs it (gpu.tf).
# Azure AD + Azure RBAC is on and local accounts are off, so Helm authenticates with kubelogin as the
# identity that runs terraform (granted cluster admin in main.tf). The AKS AAD server application id
# below is the same in every tenant.
provider "helm" {
  kubernetes {
    host                   = azurerm_kubernetes_cluster.this.kube_config[0].host
    cluster_ca_certificate = base64decode(azurerm_kubernetes_cluster.this.kube_config[0].cluster_ca_certificate)

    exec {
      api_version = "client.authentication.k8s.io/v1beta1"
      command     = "kubelogin"
      args        = ["get-token", "--login", "azurecli", "--server-id", "6dae42f8-4368-4678-94ff-3960e28e3630"]
    }
  }
}
