variable "region" {
  description = "AWS region of the cluster."
  type        = string
  default     = "us-east-1"
}

variable "cluster_name" {
  description = "EKS cluster name (also the kubeconfig context name)."
  type        = string
  default     = "training"
}

variable "kubernetes_version" {
  description = "EKS Kubernetes minor version."
  type        = string
  default     = "1.32"
}

variable "vpc_cidr" {
  description = "CIDR of the VPC created for the cluster (two public and two private subnets are carved from it)."
  type        = string
  default     = "10.40.0.0/16"
}

variable "availability_zones" {
  description = "Two availability zones of the region that offer the chosen GPU instance type."
  type        = list(string)
  default     = ["us-east-1a", "us-east-1b"]

  validation {
    condition     = length(var.availability_zones) == 2
    error_message = "Give exactly two availability zones."
  }
}

variable "endpoint_public_access_cidrs" {
  description = "CIDRs allowed to reach the public API endpoint (the launcher Cloud Function has no fixed egress IP without a VPC connector and Cloud NAT; narrow this when you have one)."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

variable "admin_principal_arns" {
  description = "IAM principals (users/roles) granted cluster-admin through EKS access entries, besides the identity that runs terraform."
  type        = list(string)
  default     = []
}

variable "gpu_profile" {
  description = "GPU node choice: a100 (p4d.24xlarge, 8 x A100 40GB) or h100 (p5.48xlarge, 8 x H100 80GB)."
  type        = string
  default     = "a100"

  validation {
    condition     = contains(["a100", "h100"], var.gpu_profile)
    error_message = "gpu_profile must be a100 or h100."
  }
}

variable "gpu_instance_types" {
  description = "Override of the GPU node instance types (e.g. [\"p4de.24xlarge\"]). Empty: the gpu_profile default."
  type        = list(string)
  default     = []
}

variable "gpu_capacity_type" {
  description = "ON_DEMAND or SPOT for the GPU node group."
  type        = string
  default     = "ON_DEMAND"
}

variable "gpu_min_nodes" {
  description = "Minimum GPU nodes (0 lets the pool scale to zero when a cluster autoscaler is installed)."
  type        = number
  default     = 0
}

variable "gpu_desired_nodes" {
  description = "Initial GPU node count. Managed node groups need a cluster autoscaler (or Karpenter) to follow pending pods; without one, set this to the nodes you want."
  type        = number
  default     = 1
}

variable "gpu_max_nodes" {
  description = "Maximum GPU nodes."
  type        = number
  default     = 2
}

variable "gpu_disk_size_gb" {
  description = "Data volume of each GPU node (model weights and the trainer image are large)."
  type        = number
  default     = 500
}

variable "system_instance_type" {
  description = "Instance type of the system node group (CoreDNS, the watcher)."
  type        = string
  default     = "m6i.large"
}

variable "training_namespace" {
  description = "Namespace of training Jobs (infra/k8s/namespace.yaml)."
  type        = string
  default     = "training"
}

variable "training_service_account" {
  description = "Kubernetes service account of training pods, bound to the S3 role through EKS Pod Identity."
  type        = string
  default     = "training-job"
}

variable "data_bucket_arns" {
  description = "ARNs of the S3 buckets training pods read datasets from and write models to."
  type        = list(string)
  default     = []
}

variable "tags" {
  description = "Tags on every resource."
  type        = map(string)
  default     = { app = "training-platform" }
}
