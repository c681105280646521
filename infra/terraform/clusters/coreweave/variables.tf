variable "coreweave_api_token" {
  description = "CoreWeave API access token (CW-SECRET-...) with the CKS Admin role; also the bearer token of the kubeconfig. Pass with TF_VAR_coreweave_api_token."
  type        = string
  sensitive   = true
}

variable "zone" {
  description = "CoreWeave availability zone (e.g. US-EAST-04A) that offers the GPU instance type."
  type        = string
  default     = "US-EAST-04A"
}

variable "cluster_name" {
  description = "CKS cluster name (at most 30 characters)."
  type        = string
  default     = "training"
}

variable "kubernetes_version" {
  description = "CKS Kubernetes minor version (e.g. v1.32)."
  type        = string
  default     = "v1.32"
}

variable "public_api_server" {
  description = "Expose the API server on the internet (the launcher Cloud Function reaches it from Google Cloud)."
  type        = bool
  default     = true
}

variable "host_prefix" {
  description = "Host prefix of the VPC."
  type        = string
  default     = "10.16.192.0/18"
}

variable "pod_cidr" {
  description = "Pod CIDR of the VPC."
  type        = string
  default     = "10.0.0.0/13"
}

variable "service_cidr" {
  description = "Service CIDR of the VPC."
  type        = string
  default     = "10.16.0.0/22"
}

variable "internal_lb_cidr" {
  description = "Internal load balancer CIDR of the VPC."
  type        = string
  default     = "10.32.4.0/22"
}

variable "cluster_ca_certificate" {
  description = "Base64 PEM CA of the API server, if your CKS kubeconfig (Cloud Console) carries certificate-authority-data. Empty: the system trust store verifies the endpoint."
  type        = string
  default     = ""
}

variable "gpu_profile" {
  description = "GPU node choice: a100 (gd-8xa100-i128, 8 x A100 80GB) or h100 (gd-8xh100ib-i128, 8 x H100 with InfiniBand)."
  type        = string
  default     = "h100"

  validation {
    condition     = contains(["a100", "h100"], var.gpu_profile)
    error_message = "gpu_profile must be a100 or h100."
  }
}

variable "gpu_instance_type" {
  description = "Override of the CoreWeave instance type of the GPU Node Pool. Empty: the gpu_profile default."
  type        = string
  default     = ""
}

variable "gpu_target_nodes" {
  description = "Nodes the GPU Node Pool asks for (CKS bills reserved nodes; autoscaling moves between min and max)."
  type        = number
  default     = 1
}

variable "gpu_min_nodes" {
  description = "Minimum GPU nodes when autoscaling."
  type        = number
  default     = 0
}

variable "gpu_max_nodes" {
  description = "Maximum GPU nodes when autoscaling."
  type        = number
  default     = 2
}

variable "gpu_autoscaling" {
  description = "Let CKS autoscale the GPU Node Pool between gpu_min_nodes and gpu_max_nodes."
  type        = bool
  default     = true
}

variable "create_node_pool" {
  description = "Create the GPU Node Pool (false on the first, cluster-only apply)."
  type        = bool
  default     = true
}
