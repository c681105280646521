output "cluster_id" {
  description = "CKS cluster id."
  value       = coreweave_cks_cluster.this.id
}

output "api_server_endpoint" {
  description = "Kubernetes API server URL."
  value       = local.api_server
}

output "service_account_oidc_issuer_url" {
  description = "Issuer of the cluster's service-account tokens: federate it with a GCP workload identity pool (or AWS IAM OIDC) to give training pods bucket access without keys."
  value       = coreweave_cks_cluster.this.service_account_oidc_issuer_url
}

# Built from the cluster's attributes and the API token (CKS accepts CoreWeave API tokens as bearer
# tokens). Write it with: terraform output -raw kubeconfig > kubeconfig
output "kubeconfig" {
  description = "kubeconfig (YAML) for administrators; authenticates with the CoreWeave API token."
  sensitive   = true
  value = yamlencode({
    apiVersion      = "v1"
    kind            = "Config"
    current-context = var.cluster_name
    clusters = [{
      name = var.cluster_name
      cluster = merge(
        { server = local.api_server },
        var.cluster_ca_certificate != "" ? { certificate-authority-data = var.cluster_ca_certificate } : {},
      )
    }]
    contexts = [{
      name    = var.cluster_name
      context = { cluster = var.cluster_name, user = var.cluster_name }
    }]
    users = [{
      name = var.cluster_name
      user = { token = var.coreweave_api_token }
    }]
  })
}

output "gpu_taint" {
  description = "Taint of the GPU Node Pool; the launcher's default K8S_TOLERATIONS tolerates it."
  value       = "nvidia.com/gpu=present:NoSchedule"
}
