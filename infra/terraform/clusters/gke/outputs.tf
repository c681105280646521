output "cluster_name" {
  description = "GKE cluster name."
  value       = google_container_cluster.this.name
}

output "location" {
  description = "Zone of the cluster (for `gcloud container clusters get-credentials --location`)."
  value       = google_container_cluster.this.location
}

output "cluster_endpoint" {
  description = "Kubernetes API server URL."
  value       = "https://${google_container_cluster.this.endpoint}"
}

output "cluster_ca_certificate" {
  description = "Base64 PEM CA of the API server."
  value       = google_container_cluster.this.master_auth[0].cluster_ca_certificate
}

# A kubeconfig built from the cluster's attributes; it authenticates with gke-gcloud-auth-plugin
# (`gcloud components install gke-gcloud-auth-plugin`). Write it with:
#   terraform output -raw kubeconfig > kubeconfig && export KUBECONFIG=$PWD/kubeconfig
output "kubeconfig" {
  description = "kubeconfig (YAML) for administrators; exec-authenticates with gke-gcloud-auth-plugin."
  value = yamlencode({
    apiVersion      = "v1"
    kind            = "Config"
    current-context = google_container_cluster.this.name
    clusters = [{
      name = google_container_cluster.this.name
      cluster = {
        server                     = "https://${google_container_cluster.this.endpoint}"
        certificate-authority-data = google_container_cluster.this.master_auth[0].cluster_ca_certificate
      }
    }]
    contexts = [{
      name = google_container_cluster.this.name
      context = {
        cluster = google_container_cluster.this.name
        user    = google_container_cluster.this.name
      }
    }]
    users = [{
      name = google_container_cluster.this.name
      user = {
        exec = {
          apiVersion         = "client.authentication.k8s.io/v1beta1"
          command            = "gke-gcloud-auth-plugin"
          provideClusterInfo = true
          installHint        = "gcloud components install gke-gcloud-auth-plugin"
        }
      }
    }]
  })
}

output "gpu_taint" {
  description = "Taint of the GPU pool; the launcher's default K8S_TOLERATIONS tolerates it."
  value       = "nvidia.com/gpu=present:NoSchedule"
}

output "workload_identity_principals" {
  description = "IAM principals of the training pods and the watcher (Workload Identity Federation for GKE)."
  value = {
    training_pods = google_storage_bucket_iam_member.training_pods.member
    watcher       = google_pubsub_topic_iam_member.watcher.member
  }
}
