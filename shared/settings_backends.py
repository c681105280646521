"""Settings groups of the backends: Kubernetes and Vertex (the local backend's few are in `shared.settings`).

Each group is a pydantic-settings model with its fields, their env variable names and defaults, in one
place; `shared.settings.Settings` composes them (their order is the README table's order).
"""

from __future__ import annotations

import json

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.domain import resources as res

DEFAULT_TOLERATIONS = '[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]'
DEFAULT_RESOURCE_LIMITS = '{"nvidia.com/gpu": 1}'
DEFAULT_GPU_NODE_SELECTORS = json.dumps(res.DEFAULT_K8S_GPU_NODE_SELECTORS, separators=(",", ":"))
# Every group reads the environment the same way as the composed Settings (variables by exact name).
GROUP_CONFIG = SettingsConfigDict(extra="ignore", populate_by_name=True, case_sensitive=True)


def env(*names: str) -> AliasChoices:
    """A field read from the first of several variables that is set."""
    return AliasChoices(*names)


class KubernetesSettings(BaseSettings):
    """The Kubernetes backend: image, namespace, scheduling and the Job's shape."""

    model_config = GROUP_CONFIG

    k8s_training_image: str | None = Field(None, validation_alias="K8S_TRAINING_IMAGE", description="Kubernetes: trainer image URI (required for the backend).")
    k8s_namespace: str = Field("default", validation_alias="K8S_NAMESPACE", description="Kubernetes: namespace of the Jobs.")
    k8s_service_account: str | None = Field(
        None, validation_alias="K8S_SERVICE_ACCOUNT", description="Kubernetes: `serviceAccountName` of the pods (bucket access)."
    )
    k8s_apply: bool = Field(
        False,
        validation_alias="K8S_APPLY",
        description="Kubernetes: `1` creates the Job; `0` renders and stores the manifest only (dry run, job ends `submitted`).",
    )
    k8s_kubeconfig: str | None = Field(
        None,
        validation_alias=env("K8S_KUBECONFIG", "KUBECONFIG"),
        description="Kubernetes: kubeconfig path (`KUBECONFIG` also read); empty: in-cluster config.",
    )
    k8s_context: str | None = Field(None, validation_alias="K8S_CONTEXT", description="Kubernetes: kubeconfig context.")
    k8s_node_selector: str | None = Field(
        None, validation_alias="K8S_NODE_SELECTOR", description='Kubernetes: JSON map, e.g. `{"cloud.google.com/gke-accelerator": "nvidia-h100-80gb"}`.'
    )
    k8s_tolerations: str | None = Field(
        DEFAULT_TOLERATIONS,
        validation_alias="K8S_TOLERATIONS",
        description="Kubernetes: JSON array of tolerations; the default tolerates the `nvidia.com/gpu` taint the infra puts on GPU pools.",
    )
    k8s_image_pull_secrets: str | None = Field(
        None, validation_alias="K8S_IMAGE_PULL_SECRETS", description='Kubernetes: JSON array of names or `{"name": ...}` objects.'
    )
    k8s_backoff_limit: int = Field(0, validation_alias="K8S_BACKOFF_LIMIT", description="Kubernetes: Job `backoffLimit`.", ge=0)
    k8s_ttl_seconds_after_finished: int | None = Field(
        None, validation_alias="K8S_TTL_SECONDS_AFTER_FINISHED", description="Kubernetes: Job `ttlSecondsAfterFinished` (unset: kept).", ge=0
    )
    k8s_resource_limits: str | None = Field(
        DEFAULT_RESOURCE_LIMITS,
        validation_alias="K8S_RESOURCE_LIMITS",
        description="Kubernetes: JSON map of container resource limits (also used as requests); a request's `resources` "
        "overrides `nvidia.com/gpu`, `cpu` and `memory`.",
    )
    k8s_gpu_node_selectors: str = Field(
        DEFAULT_GPU_NODE_SELECTORS,
        validation_alias="K8S_GPU_NODE_SELECTORS",
        description="Kubernetes: JSON map, GPU type -> node selector a request's `resources.gpu_type` adds to `K8S_NODE_SELECTOR`; "
        "the types it names are the ones the api accepts (default: GKE's `cloud.google.com/gke-accelerator` values).",
    )
    k8s_kueue_queue: str | None = Field(
        None,
        validation_alias="K8S_KUEUE_QUEUE",
        description="Kubernetes: Kueue `LocalQueue` for gang admission (label `kueue.x-k8s.io/queue-name` on every Job); unset: no Kueue.",
    )
    k8s_master_port: int = Field(
        29500,
        validation_alias="K8S_MASTER_PORT",
        description="Kubernetes: port of the rendezvous on the index-0 pod of a several-node job (`PET_MASTER_PORT`).",
        ge=1,
        le=65535,
    )


class VertexSettings(BaseSettings):
    """The Vertex backend: project, region, image, machines and per-job secrets."""

    model_config = GROUP_CONFIG

    vertex_project: str | None = Field(None, validation_alias=env("VERTEX_PROJECT", "PROJECT_ID"), description="Vertex: GCP project (`PROJECT_ID` also read).")
    vertex_region: str = Field("us-central1", validation_alias="VERTEX_REGION", description="Vertex: region of the CustomJob.")
    vertex_image_uri: str | None = Field(None, validation_alias="VERTEX_IMAGE_URI", description="Vertex: trainer image (required).")
    vertex_machine_type: str = Field("a2-highgpu-1g", validation_alias="VERTEX_MACHINE_TYPE", description="Vertex: machine type.")
    vertex_accelerator_type: str = Field("NVIDIA_TESLA_A100", validation_alias="VERTEX_ACCELERATOR_TYPE", description="Vertex: accelerator type.")
    vertex_accelerator_count: int = Field(1, validation_alias="VERTEX_ACCELERATOR_COUNT", description="Vertex: GPUs per replica.", ge=0)
    vertex_replica_count: int = Field(1, validation_alias="VERTEX_REPLICA_COUNT", description="Vertex: worker replicas.", ge=1)
    vertex_machine_types: str | None = Field(
        None,
        validation_alias="VERTEX_MACHINE_TYPES",
        description='Vertex: JSON map, GPU type -> `{"accelerator": ENUM, "machines": {"<gpus>": machine type}}`, replacing or adding '
        "types of the built-in table (Google's GPU machine types: A100 `a2-highgpu-*`, H100 `a3-highgpu-*`, ...).",
    )
    vertex_cpu_machine_type: str = Field(
        "n1-standard-8", validation_alias="VERTEX_CPU_MACHINE_TYPE", description="Vertex: machine type of a job with `resources.gpus: 0`."
    )
    vertex_service_account: str | None = Field(None, validation_alias="VERTEX_SERVICE_ACCOUNT", description="Vertex: service account the job runs as.")
    vertex_network: str | None = Field(None, validation_alias="VERTEX_NETWORK", description="Vertex: VPC network.")
    vertex_submit: bool = Field(False, validation_alias="VERTEX_SUBMIT", description="Vertex: `1` creates the CustomJob; `0` stores the spec only (dry run).")
    vertex_hf_token_secret: str | None = Field(
        None,
        validation_alias="VERTEX_HF_TOKEN_SECRET",
        description="Vertex: Secret Manager secret version the trainer resolves for HF_TOKEN (used where per-job secrets are off, or a relaunch lost the value).",
    )
    vertex_job_secrets: bool = Field(
        True,
        validation_alias="VERTEX_JOB_SECRETS",
        description="Vertex: `1` puts each job's secret variables in a Secret Manager secret of its own, created at submit and deleted when the job ends; `0`: only the per-name references (`VERTEX_HF_TOKEN_SECRET`), and the api refuses other secrets.",
    )
    vertex_secret_project: str | None = Field(
        None, validation_alias="VERTEX_SECRET_PROJECT", description="Vertex: project of the per-job secrets (default: `VERTEX_PROJECT`)."
    )
    vertex_secret_manager_endpoint: str = Field(
        "https://secretmanager.googleapis.com",
        validation_alias="VERTEX_SECRET_MANAGER_ENDPOINT",
        description="Vertex: Secret Manager REST endpoint, for the launcher and (passed on) the trainer; a plain `http://` one (a test fake) is called without credentials.",
    )
    vertex_secret_ttl_seconds: int = Field(
        8 * 24 * 3600,
        validation_alias="VERTEX_SECRET_TTL_SECONDS",
        description="Vertex: seconds after which Secret Manager itself deletes a per-job secret, should the platform never get to (a backstop; Vertex's longest default timeout is 7 days); `0`: none.",
        ge=0,
    )
