variable "subscription_id" {
  description = "Azure subscription to create the cluster in."
  type        = string
}

variable "location" {
  description = "Azure region with the chosen GPU VM size (e.g. eastus, westus3, southcentralus)."
  type        = string
  default     = "eastus"
}

variable "resource_group_name" {
  description = "Resource group created for the cluster."
  type        = string
  default     = "training-platform"
}

variable "cluster_name" {
  description = "AKS cluster name (also the kubeconfig context)."
  type        = string
  default     = "training"
}

variable "kubernetes_version" {
  description = "AKS Kubernetes version (minor, e.g. 1.32). Null: the region's default."
  type        = string
  default     = null
}

variable "api_server_authorized_ip_ranges" {
  description = "CIDRs allowed to reach the API server. Empty: any (the launcher Cloud Function has no fixed egress IP without a VPC connector + Cloud NAT)."
  type        = list(string)
  default     = []
}

variable "system_vm_size" {
  description = "VM size of the system node pool."
  type        = string
  default     = "Standard_D4s_v5"
}

variable "gpu_profile" {
  description = "GPU node choice: a100 (Standard_NC24ads_A100_v4, 1 x A100 80GB) or h100 (Standard_NC40ads_H100_v5, 1 x H100 NVL)."
  type        = string
  default     = "a100"

  validation {
    condition     = contains(["a100", "h100"], var.gpu_profile)
    error_message = "gpu_profile must be a100 or h100."
  }
}

variable "gpu_vm_size" {
  description = "Override of the GPU VM size (e.g. Standard_ND96asr_v4 for 8 x A100). Empty: the gpu_profile default."
  type        = string
  default     = ""
}

variable "gpu_min_nodes" {
  description = "Minimum GPU nodes (0: the autoscaler scales the pool to zero when idle)."
  type        = number
  default     = 0
}

variable "gpu_max_nodes" {
  description = "Maximum GPU nodes."
  type        = number
  default     = 2
}

variable "gpu_spot" {
  description = "Use Spot VMs for the GPU pool (preemptible)."
  type        = bool
  default     = false
}

variable "gpu_os_disk_size_gb" {
  description = "OS disk of each GPU node (trainer image and model weights)."
  type        = number
  default     = 256
}

variable "nvidia_device_plugin_version" {
  description = "Version of NVIDIA's nvidia-device-plugin Helm chart."
  type        = string
  default     = "0.17.1"
}

variable "training_namespace" {
  description = "Namespace of training Jobs (infra/k8s)."
  type        = string
  default     = "training"
}

variable "training_service_account" {
  description = "Kubernetes service account of training pods, federated with the training managed identity (AKS workload identity)."
  type        = string
  default     = "training-job"
}

variable "storage_account_id" {
  description = "Resource id of a storage account training pods may read and write (Storage Blob Data Contributor). Empty: no grant."
  type        = string
  default     = ""
}

variable "tags" {
  description = "Tags on every resource."
  type        = map(string)
  default     = { app = "training-platform" }
}
