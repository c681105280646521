# GKE cluster for training Jobs: private nodes behind Cloud NAT, Workload Identity, a system pool and an
# autoscaled GPU pool. GKE installs the NVIDIA driver (gpu_driver_installation_config) and runs its own
# device plugin on GPU nodes, so nothing else is deployed for GPUs. The pool carries the taint
# nvidia.com/gpu=present:NoSchedule that the launcher's default K8S_TOLERATIONS tolerates.

data "google_project" "this" {
  project_id = var.project_id
}

locals {
  platform_project = var.platform_project_id != "" ? var.platform_project_id : var.project_id
  gpu_profiles = {
    a100 = { machine = "a2-highgpu-1g", accelerator = "nvidia-tesla-a100", count = 1 }
    h100 = { machine = "a3-highgpu-8g", accelerator = "nvidia-h100-80gb", count = 8 }
  }
  gpu_machine     = var.gpu_machine_type != "" ? var.gpu_machine_type : local.gpu_profiles[var.gpu_profile].machine
  gpu_accelerator = var.gpu_accelerator_type != "" ? var.gpu_accelerator_type : local.gpu_profiles[var.gpu_profile].accelerator
  gpu_count       = var.gpu_accelerator_count > 0 ? var.gpu_accelerator_count : local.gpu_profiles[var.gpu_profile].count

  # Workload Identity Federation for GKE: IAM grants name Kubernetes service accounts directly.
  wi_principal = "principal://iam.googleapis.com/projects/${data.google_project.this.number}/locations/global/workloadIdentityPools/${var.project_id}.svc.id.goog/subject"
}

resource "google_project_service" "container" {
  project            = var.project_id
  service            = "container.googleapis.com"
  disable_on_destroy = false
}

# --- Network ---------------------------------------------------------------------------------------------
resource "google_compute_network" "this" {
  project                 = var.project_id
  name                    = var.cluster_name
  auto_create_subnetworks = false
}

resource "google_compute_subnetwork" "nodes" {
  project                  = var.project_id
  name                     = "${var.cluster_name}-nodes"
  region                   = var.region
  network                  = google_compute_network.this.id
  ip_cidr_range            = var.subnet_cidr
  private_ip_google_access = true

  secondary_ip_range {
    range_name    = "pods"
    ip_cidr_range = var.pods_cidr
  }

  secondary_ip_range {
    range_name    = "services"
    ip_cidr_range = var.services_cidr
  }

  log_config {
    aggregation_interval = "INTERVAL_10_MIN"
    flow_sampling        = 0.5
    metadata             = "INCLUDE_ALL_METADATA"
  }
}

# Lowest-priority deny-all ingress: only GKE's own rules (control plane to nodes, health checks) open
# anything.
resource "google_compute_firewall" "deny_all_ingress" {
  project   = var.project_id
  name      = "${var.cluster_name}-deny-all-ingress"
  network   = google_compute_network.this.id
  direction = "INGRESS"
  priority  = 65534

  deny {
    protocol = "all"
  }

  source_ranges = ["0.0.0.0/0"]

  log_config {
    metadata = "INCLUDE_ALL_METADATA"
  }
}

resource "google_compute_router" "this" {
  project = var.project_id
  name    = var.cluster_name
  region  = var.region
  network = google_compute_network.this.id
}

# Private nodes reach the Hugging Face hub and other registries through Cloud NAT.
resource "google_compute_router_nat" "this" {
  project                            = var.project_id
  name                               = var.cluster_name
  router                             = google_compute_router.this.name
  region                             = var.region
  nat_ip_allocate_option             = "AUTO_ONLY"
  source_subnetwork_ip_ranges_to_nat = "ALL_SUBNETWORKS_ALL_IP_RANGES"

  log_config {
    enable = true
    filter = "ERRORS_ONLY"
  }
}

# --- Node identity: minimal roles, not the default compute SA ---------------------------------------------
resource "google_service_account" "nodes" {
  project      = var.project_id
  account_id   = "${var.cluster_name}-gke-nodes"
  display_name = "GKE nodes of ${var.cluster_name}"
}

resource "google_project_iam_member" "nodes" {
  for_each = toset([
    "roles/logging.logWriter",
    "roles/monitoring.metricWriter",
    "roles/monitoring.viewer",
    "roles/stackdriver.resourceMetadata.writer",
  ])

  project = var.project_id
  role    = each.value
  member  = google_service_account.nodes.member
}

resource "google_artifact_registry_repository_iam_member" "nodes_pull" {
  project    = local.platform_project
  location   = var.region
  repository = var.artifact_registry_repository
  role       = "roles/artifactregistry.reader"
  member     = google_service_account.nodes.member
}

# --- Cluster ---------------------------------------------------------------------------------------------
resource "google_container_cluster" "this" {
  project  = var.project_id
  name     = var.cluster_name
  location = var.zone

  network           = google_compute_network.this.id
  subnetwork        = google_compute_subnetwork.nodes.id
  networking_mode   = "VPC_NATIVE"
  datapath_provider = "ADVANCED_DATAPATH"

  remove_default_node_pool = true
  initial_node_count       = 1
  deletion_protection      = true
  resource_labels          = var.labels

  release_channel {
    channel = var.release_channel
  }

  ip_allocation_policy {
    cluster_secondary_range_name  = "pods"
    services_secondary_range_name = "services"
  }

  private_cluster_config {
    enable_private_nodes    = true
    enable_private_endpoint = false
    master_ipv4_cidr_block  = var.master_ipv4_cidr
  }

  master_authorized_networks_config {
    dynamic "cidr_blocks" {
      for_each = var.master_authorized_cidrs
      content {
        cidr_block   = cidr_blocks.value
        display_name = "authorized-${cidr_blocks.key}"
      }
    }
  }

  workload_identity_config {
    workload_pool = "${var.project_id}.svc.id.goog"
  }

  master_auth {
    client_certificate_config {
      issue_client_certificate = false
    }
  }

  enable_shielded_nodes       = true
  enable_intranode_visibility = true

  # Enforces the project's Binary Authorization policy (allow-all until you tighten it to attested
  # trainer images).
  binary_authorization {
    evaluation_mode = "PROJECT_SINGLETON_POLICY_ENFORCE"
  }

  # The default pool is removed right away; give it sane settings while it lives.
  node_config {
    service_account = google_service_account.nodes.email
    oauth_scopes    = ["https://www.googleapis.com/auth/cloud-platform"]
    workload_metadata_config {
      mode = "GKE_METADATA"
    }
    shielded_instance_config {
      enable_secure_boot          = true
      enable_integrity_monitoring = true
    }
  }

  depends_on = [google_project_service.container]

  lifecycle {
    ignore_changes = [node_config]
  }
}

resource "google_container_node_pool" "system" {
  project    = var.project_id
  name       = "system"
  cluster    = google_container_cluster.this.id
  location   = var.zone
  node_count = 1

  management {
    auto_repair  = true
    auto_upgrade = true
  }

  node_config {
    machine_type    = var.system_machine_type
    disk_size_gb    = 100
    image_type      = "COS_CONTAINERD"
    service_account = google_service_account.nodes.email
    oauth_scopes    = ["https://www.googleapis.com/auth/cloud-platform"]
    labels          = merge(var.labels, { "training-platform/pool" = "system" })
    metadata = {
      disable-legacy-endpoints = "true"
    }

    workload_metadata_config {
      mode = "GKE_METADATA"
    }

    shielded_instance_config {
      enable_secure_boot          = true
      enable_integrity_monitoring = true
    }
  }
}

resource "google_container_node_pool" "gpu" {
  project  = var.project_id
  name     = "gpu-${var.gpu_profile}"
  cluster  = google_container_cluster.this.id
  location = var.zone

  initial_node_count = var.gpu_min_nodes

  autoscaling {
    min_node_count = var.gpu_min_nodes
    max_node_count = var.gpu_max_nodes
  }

  management {
    auto_repair  = true
    auto_upgrade = true
  }

  node_config {
    machine_type    = local.gpu_machine
    disk_size_gb    = var.gpu_disk_size_gb
    disk_type       = "pd-ssd"
    image_type      = "COS_CONTAINERD"
    spot            = var.gpu_spot
    service_account = google_service_account.nodes.email
    oauth_scopes    = ["https://www.googleapis.com/auth/cloud-platform"]
    labels = merge(var.labels, {
      "training-platform/pool" = "gpu"
      "training-platform/gpu"  = var.gpu_profile
    })
    metadata = {
      disable-legacy-endpoints = "true"
    }

    guest_accelerator {
      type  = local.gpu_accelerator
      count = local.gpu_count

      gpu_driver_installation_config {
        gpu_driver_version = "LATEST"
      }
    }

    # GKE adds this taint to GPU nodes itself; declaring it keeps the contract with K8S_TOLERATIONS visible.
    taint {
      key    = "nvidia.com/gpu"
      value  = "present"
      effect = "NO_SCHEDULE"
    }

    workload_metadata_config {
      mode = "GKE_METADATA"
    }

    shielded_instance_config {
      enable_secure_boot          = true
      enable_integrity_monitoring = true
    }
  }

  lifecycle {
    ignore_changes = [initial_node_count]
  }
}

# --- Workload Identity: bucket access for training pods, Pub/Sub for the watcher ----------------------------
resource "google_storage_bucket_iam_member" "training_pods" {
  bucket = var.data_bucket
  role   = "roles/storage.objectUser"
  member = "${local.wi_principal}/ns/${var.training_namespace}/sa/${var.training_service_account}"

  depends_on = [google_container_cluster.this]
}

resource "google_pubsub_topic_iam_member" "watcher" {
  project = local.platform_project
  topic   = var.training_events_topic
  role    = "roles/pubsub.publisher"
  member  = "${local.wi_principal}/ns/${var.training_namespace}/sa/${var.watcher_service_account}"

  depends_on = [google_container_cluster.this]
}
