variable "project_id" {
  description = "GCP project that hosts the control plane (functions, Pub/Sub, Firestore, Vertex jobs)."
  type        = string
}

variable "region" {
  description = "Region of the Cloud Functions, Artifact Registry repository, Cloud Scheduler job and buckets."
  type        = string
  default     = "us-central1"
}

variable "deploy_functions" {
  description = "Create the Cloud Functions, their push subscriptions, invoker bindings and the reconcile schedule. Leave false on the first apply, until the secrets have versions (docs/deploy.md, phase 1), then set true."
  type        = bool
  default     = true
}

variable "functions_source_dir" {
  description = "Folder staged by `infra/scripts/stage_functions.sh` that Terraform zips and deploys as the first revision of every function. Later code changes are deployed by cloudbuild.yaml."
  type        = string
  default     = "../../../build/functions"
}

variable "studio_service_account" {
  description = "Email of the studio backend's service account: the only principal granted run.invoker on the api function."
  type        = string
}

variable "firestore_database" {
  description = "Firestore database id the functions use (FIRESTORE_DATABASE). '(default)' is free-tier eligible."
  type        = string
  default     = "(default)"
}

variable "firestore_location" {
  description = "Firestore location id (multi-region such as nam5 / eur3, or a region such as us-central1). Cannot be changed after creation."
  type        = string
  default     = "nam5"
}

variable "firestore_indexes_file" {
  description = "Firebase-format composite index declarations (`{\"indexes\": [...]}`) that the store's queries need."
  type        = string
  default     = "../../firestore/indexes.json"
}

variable "artifact_registry_repository" {
  description = "Id of the Docker repository in Artifact Registry that holds the trainer and api/watcher images."
  type        = string
  default     = "training"
}

variable "trainer_image_tag" {
  description = "Tag of the trainer image (`<region>-docker.pkg.dev/<project>/<repository>/trainer:<tag>`) that jobs run. cloudbuild.yaml pushes both the commit SHA and `latest`."
  type        = string
  default     = "latest"
}

variable "data_bucket_name" {
  description = "Name of the GCS bucket for datasets and trained models (gs:// paths in /train requests). Empty: <project_id>-training-data."
  type        = string
  default     = ""
}

variable "default_training_backend" {
  description = "DEFAULT_TRAINING_BACKEND: backend used when a request names none (kubernetes or vertex; local is for the embedded mode only)."
  type        = string
  default     = "kubernetes"

  validation {
    condition     = contains(["kubernetes", "vertex"], var.default_training_backend)
    error_message = "default_training_backend must be kubernetes or vertex in the cloud."
  }
}

variable "kubernetes_enabled" {
  description = "Whether the launcher and reconcile talk to a Kubernetes cluster. When true they mount the kubeconfig secret (training-kubeconfig), which must have a version before the functions deploy."
  type        = bool
  default     = true
}

variable "k8s_namespace" {
  description = "K8S_NAMESPACE: namespace that training Jobs run in (created by infra/k8s/namespace.yaml)."
  type        = string
  default     = "training"
}

variable "k8s_service_account" {
  description = "K8S_SERVICE_ACCOUNT: Kubernetes service account of the training pods; bound to bucket access by the cluster module's workload identity."
  type        = string
  default     = "training-job"
}

variable "k8s_node_selector" {
  description = "K8S_NODE_SELECTOR: JSON map of node labels training pods must land on. Empty: none (the GPU taint + toleration and the GPU resource request already steer pods)."
  type        = string
  default     = ""
}

variable "k8s_tolerations" {
  description = "K8S_TOLERATIONS: JSON array of tolerations. The default matches the nvidia.com/gpu=present:NoSchedule taint of every cluster module's GPU pool."
  type        = string
  default     = "[{\"key\":\"nvidia.com/gpu\",\"operator\":\"Exists\",\"effect\":\"NoSchedule\"}]"
}

variable "k8s_resource_limits" {
  description = "K8S_RESOURCE_LIMITS: JSON map of container resource limits for training pods."
  type        = string
  default     = "{\"nvidia.com/gpu\":\"1\"}"
}

variable "k8s_image_pull_secrets" {
  description = "K8S_IMAGE_PULL_SECRETS: JSON array of image pull secret names (not needed on GKE with Artifact Registry in the same project)."
  type        = string
  default     = ""
}

variable "k8s_backoff_limit" {
  description = "K8S_BACKOFF_LIMIT: Job backoffLimit (pod retries before the Job fails)."
  type        = number
  default     = 0
}

variable "k8s_ttl_seconds_after_finished" {
  description = "K8S_TTL_SECONDS_AFTER_FINISHED: seconds a finished Job (and its owned Secret) is kept before Kubernetes deletes it. The watcher has forwarded its state and logs by then."
  type        = number
  default     = 86400
}

variable "vertex_region" {
  description = "VERTEX_REGION: region of Vertex AI CustomJobs."
  type        = string
  default     = "us-central1"
}

variable "vertex_machine_type" {
  description = "VERTEX_MACHINE_TYPE: machine type of the Vertex worker pool (a2-highgpu-1g = 1 x A100 40GB, a3-highgpu-1g = 1 x H100 80GB)."
  type        = string
  default     = "a2-highgpu-1g"
}

variable "vertex_accelerator_type" {
  description = "VERTEX_ACCELERATOR_TYPE: accelerator of the Vertex worker pool (NVIDIA_TESLA_A100, NVIDIA_A100_80GB, NVIDIA_H100_80GB)."
  type        = string
  default     = "NVIDIA_TESLA_A100"
}

variable "vertex_accelerator_count" {
  description = "VERTEX_ACCELERATOR_COUNT: GPUs per Vertex replica; must match the machine type."
  type        = number
  default     = 1
}

variable "vertex_replica_count" {
  description = "VERTEX_REPLICA_COUNT: Vertex worker replicas."
  type        = number
  default     = 1
}

variable "vertex_network" {
  description = "VERTEX_NETWORK: optional VPC network (projects/<number>/global/networks/<name>) peered with Vertex. Empty: Google-managed network."
  type        = string
  default     = ""
}

variable "cors_origins" {
  description = "CORS_ORIGINS: comma-separated origins allowed to call the api from a browser. Empty: no CORS headers."
  type        = string
  default     = ""
}

variable "max_log_chars" {
  description = "MAX_LOG_CHARS: rolling log tail kept per job."
  type        = number
  default     = 1000000
}

variable "reconcile_schedule" {
  description = "Cron schedule (UTC) of the Cloud Scheduler job that invokes reconcile."
  type        = string
  default     = "*/5 * * * *"
}

variable "pubsub_max_delivery_attempts" {
  description = "Deliveries of one message before Pub/Sub moves it to the subscription's dead-letter topic (5-100); null: pubsub_subscriptions.json (5)."
  type        = number
  default     = null
}

variable "pubsub_minimum_backoff" {
  description = "Minimum delay before Pub/Sub redelivers a nacked (HTTP 5xx / timed-out) message; null: pubsub_subscriptions.json (10s)."
  type        = string
  default     = null
}

variable "pubsub_maximum_backoff" {
  description = "Maximum delay between redeliveries (at most 600s); null: pubsub_subscriptions.json (600s)."
  type        = string
  default     = null
}

variable "function_max_instances" {
  description = "Upper bound on instances per function (caps cost and the fan-out of Kubernetes/Vertex API calls)."
  type        = number
  default     = 10
}

variable "api_min_instances" {
  description = "Warm instances of the api function (0 scales to zero; 1 removes cold starts for the studio)."
  type        = number
  default     = 0
}

variable "labels" {
  description = "Labels added to every labelled resource."
  type        = map(string)
  default     = { app = "training-platform" }
}
