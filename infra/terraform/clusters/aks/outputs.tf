output "cluster_name" {
  description = "AKS cluster name."
  value       = azurerm_kubernetes_cluster.this.name
}

output "resource_group_name" {
  description = "Resource group of the cluster (for `az aks get-credentials`)."
  value       = azurerm_resource_group.this.name
}

# The cluster's own kubeconfig attribute (Azure AD user config; convert with `kubelogin convert-kubeconfig
# -l azurecli`). Write it with: terraform output -raw kubeconfig > kubeconfig
output "kubeconfig" {
  description = "kubeconfig (YAML) of the cluster; Azure AD authentication through kubelogin."
  value       = azurerm_kubernetes_cluster.this.kube_config_raw
  sensitive   = true
}

output "oidc_issuer_url" {
  description = "Service-account token issuer of the cluster (for federating with other clouds, e.g. a GCP workload identity pool)."
  value       = azurerm_kubernetes_cluster.this.oidc_issuer_url
}

output "training_identity_client_id" {
  description = "Client id to annotate the training service account with (azure.workload.identity/client-id)."
  value       = azurerm_user_assigned_identity.training.client_id
}

output "gpu_taint" {
  description = "Taint of the GPU pool; the launcher's default K8S_TOLERATIONS tolerates it."
  value       = "nvidia.com/gpu=present:NoSchedule"
}
