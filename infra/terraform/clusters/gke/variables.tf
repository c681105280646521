variable "project_id" {
  description = "GCP project of the cluster (usually the platform's project)."
  type        = string
}

variable "region" {
  description = "Region of the network and Cloud NAT."
  type        = string
  default     = "us-central1"
}

variable "zone" {
  description = "Zone of the (zonal) cluster; pick one that has the chosen GPU (A100: us-central1-a/b/c/f, H100: us-central1-a/c)."
  type        = string
  default     = "us-central1-a"
}

variable "cluster_name" {
  description = "GKE cluster name (also the kubeconfig context)."
  type        = string
  default     = "training"
}

variable "release_channel" {
  description = "GKE release channel (RAPID, REGULAR, STABLE)."
  type        = string
  default     = "REGULAR"
}

variable "subnet_cidr" {
  description = "Primary range of the nodes' subnet."
  type        = string
  default     = "10.10.0.0/20"
}

variable "pods_cidr" {
  description = "Secondary range for pods."
  type        = string
  default     = "10.20.0.0/14"
}

variable "services_cidr" {
  description = "Secondary range for services."
  type        = string
  default     = "10.24.0.0/20"
}

variable "master_ipv4_cidr" {
  description = "/28 range of the private control-plane endpoint peering."
  type        = string
  default     = "172.16.0.0/28"
}

variable "master_authorized_cidrs" {
  description = "CIDRs allowed to reach the public control-plane endpoint. The launcher Cloud Function has no fixed egress IP unless you add a VPC connector + Cloud NAT, so the default is open; access still needs a valid token (RBAC in infra/k8s)."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

variable "gpu_profile" {
  description = "GPU node choice: a100 (a2-highgpu-1g, 1 x A100 40GB) or h100 (a3-highgpu-8g, 8 x H100 80GB)."
  type        = string
  default     = "a100"

  validation {
    condition     = contains(["a100", "h100"], var.gpu_profile)
    error_message = "gpu_profile must be a100 or h100."
  }
}

variable "gpu_machine_type" {
  description = "Override of the GPU node machine type (e.g. a2-ultragpu-1g for A100 80GB). Empty: the gpu_profile default."
  type        = string
  default     = ""
}

variable "gpu_accelerator_type" {
  description = "Override of the accelerator type (nvidia-tesla-a100, nvidia-a100-80gb, nvidia-h100-80gb). Empty: the gpu_profile default."
  type        = string
  default     = ""
}

variable "gpu_accelerator_count" {
  description = "Override of GPUs per node; must match the machine type. 0: the gpu_profile default."
  type        = number
  default     = 0
}

variable "gpu_spot" {
  description = "Use Spot VMs for the GPU pool (cheaper, preemptible: jobs fail with failureClass preempted)."
  type        = bool
  default     = false
}

variable "gpu_min_nodes" {
  description = "Minimum GPU nodes; 0 lets the cluster autoscaler scale the pool to zero when idle."
  type        = number
  default     = 0
}

variable "gpu_max_nodes" {
  description = "Maximum GPU nodes the autoscaler may add for pending training pods."
  type        = number
  default     = 2
}

variable "gpu_disk_size_gb" {
  description = "Boot disk of each GPU node (trainer image and model weights)."
  type        = number
  default     = 300
}

variable "system_machine_type" {
  description = "Machine type of the system pool (kube-system, the watcher)."
  type        = string
  default     = "e2-standard-4"
}

variable "training_namespace" {
  description = "Namespace of training Jobs and the watcher (infra/k8s)."
  type        = string
  default     = "training"
}

variable "training_service_account" {
  description = "Kubernetes service account of training pods; granted objectUser on data_bucket through Workload Identity."
  type        = string
  default     = "training-job"
}

variable "watcher_service_account" {
  description = "Kubernetes service account of the watcher; granted publisher on the training-events topic through Workload Identity."
  type        = string
  default     = "training-watcher"
}

variable "data_bucket" {
  description = "GCS bucket of datasets and models (the platform's data_bucket output)."
  type        = string
}

variable "platform_project_id" {
  description = "Project of the platform's Pub/Sub topics and Artifact Registry. Empty: project_id."
  type        = string
  default     = ""
}

variable "training_events_topic" {
  description = "Topic the watcher publishes to."
  type        = string
  default     = "training-events"
}

variable "artifact_registry_repository" {
  description = "Artifact Registry repository (in the platform project and var.region) the nodes pull the trainer image from."
  type        = string
  default     = "training"
}

variable "labels" {
  description = "Labels on the cluster and node pools."
  type        = map(string)
  default     = { app = "training-platform" }
}
