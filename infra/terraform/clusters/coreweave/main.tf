# CoreWeave Kubernetes Service cluster for training Jobs. CKS nodes come with the NVIDIA driver, container
# toolkit and device plugin managed by CoreWeave, so the only GPU work here is the Node Pool and its taint
# nvidia.com/gpu=present:NoSchedule (the launcher's default K8S_TOLERATIONS tolerates it).

locals {
  gpu_profiles = {
    a100 = "gd-8xa100-i128"
    h100 = "gd-8xh100ib-i128"
  }
  gpu_instance_type = var.gpu_instance_type != "" ? var.gpu_instance_type : local.gpu_profiles[var.gpu_profile]
  endpoint          = coreweave_cks_cluster.this.api_server_endpoint
  api_server        = startswith(local.endpoint, "https://") ? local.endpoint : "https://${local.endpoint}"
}

resource "coreweave_networking_vpc" "this" {
  name        = var.cluster_name
  zone        = var.zone
  host_prefix = var.host_prefix
  vpc_prefixes = [
    { name = "pod-cidr", value = var.pod_cidr },
    { name = "service-cidr", value = var.service_cidr },
    { name = "internal-lb-cidr", value = var.internal_lb_cidr },
  ]
}

resource "coreweave_cks_cluster" "this" {
  name                   = var.cluster_name
  version                = var.kubernetes_version
  zone                   = var.zone
  vpc_id                 = coreweave_networking_vpc.this.id
  public                 = var.public_api_server
  pod_cidr_name          = "pod-cidr"
  service_cidr_name      = "service-cidr"
  internal_lb_cidr_names = ["internal-lb-cidr"]
}

resource "kubernetes_manifest" "gpu_node_pool" {
  count = var.create_node_pool ? 1 : 0

  manifest = {
    apiVersion = "compute.coreweave.com/v1alpha1"
    kind       = "NodePool"
    metadata = {
      name = "gpu-${var.gpu_profile}"
    }
    spec = {
      instanceType = local.gpu_instance_type
      targetNodes  = var.gpu_target_nodes
      autoscaling  = var.gpu_autoscaling
      minNodes     = var.gpu_min_nodes
      maxNodes     = var.gpu_max_nodes
      nodeLabels = {
        "training-platform/pool" = "gpu"
        "training-platform/gpu"  = var.gpu_profile
      }
      nodeTaints = [
        { key = "nvidia.com/gpu", value = "present", effect = "NoSchedule" },
      ]
    }
  }
}
