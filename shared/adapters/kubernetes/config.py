"""The Kubernetes backend's settings group: every `K8S_*` variable, its default and its JSON parsing,
in one pydantic-settings model the adapter (backend, manifests, client, watcher) takes as it is."""

from __future__ import annotations

import copy
from typing import Any, ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.domain import resources as res
from shared.settings_group import JsonArray, JsonObject, SettingsGroup, env

DEFAULT_SCHEMA_VERSION = "1.30"
DEFAULT_MASTER_PORT = 29500
DEFAULT_TOLERATIONS = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
DEFAULT_RESOURCE_LIMITS = {"nvidia.com/gpu": 1}


class KubernetesSettings(SettingsGroup):
    """The Kubernetes backend: image, namespace, scheduling and the Job's shape (`K8S_*`)."""

    model_config = SettingsConfigDict(env_prefix="K8S_")
    # Kubernetes version whose schema the manifests are validated against (the oldest we support).
    schema_version: ClassVar[str] = DEFAULT_SCHEMA_VERSION

    image: str | None = Field(None, validation_alias="K8S_TRAINING_IMAGE", description="Kubernetes: trainer image URI (required for the backend).")
    namespace: str = Field("default", description="Kubernetes: namespace of the Jobs.")
    service_account: str | None = Field(None, description="Kubernetes: `serviceAccountName` of the pods (bucket access).")
    apply: bool = Field(False, description="Kubernetes: `1` creates the Job; `0` renders and stores the manifest only (dry run, job ends `submitted`).")
    kubeconfig: str | None = Field(
        None,
        validation_alias=env("K8S_KUBECONFIG", "KUBECONFIG"),
        description="Kubernetes: kubeconfig path (`KUBECONFIG` also read); empty: in-cluster config.",
    )
    context: str | None = Field(None, description="Kubernetes: kubeconfig context.")
    node_selector: JsonObject = Field(None, description='Kubernetes: JSON map, e.g. `{"cloud.google.com/gke-accelerator": "nvidia-h100-80gb"}`.')
    tolerations: JsonArray = Field(
        default_factory=lambda: copy.deepcopy(DEFAULT_TOLERATIONS),
        description="Kubernetes: JSON array of tolerations; the default tolerates the `nvidia.com/gpu` taint the infra puts on GPU pools.",
    )
    image_pull_secrets: JsonArray = Field(None, description='Kubernetes: JSON array of names or `{"name": ...}` objects.')
    backoff_limit: int = Field(0, description="Kubernetes: Job `backoffLimit`.", ge=0)
    ttl_seconds_after_finished: int | None = Field(None, description="Kubernetes: Job `ttlSecondsAfterFinished` (unset: kept).", ge=0)
    resource_limits: JsonObject = Field(
        default_factory=lambda: dict(DEFAULT_RESOURCE_LIMITS),
        description="Kubernetes: JSON map of container resource limits (also used as requests); a request's `resources` "
        "overrides `nvidia.com/gpu`, `cpu` and `memory`.",
    )
    gpu_node_selectors: JsonObject = Field(
        default_factory=lambda: copy.deepcopy(res.DEFAULT_K8S_GPU_NODE_SELECTORS),
        description="Kubernetes: JSON map, GPU type -> node selector a request's `resources.gpu_type` adds to `K8S_NODE_SELECTOR`; "
        "the types it names are the ones the api accepts (default: GKE's `cloud.google.com/gke-accelerator` values).",
    )
    kueue_queue: str | None = Field(
        None, description="Kubernetes: Kueue `LocalQueue` for gang admission (label `kueue.x-k8s.io/queue-name` on every Job); unset: no Kueue."
    )
    master_port: int = Field(
        DEFAULT_MASTER_PORT, description="Kubernetes: port of the rendezvous on the index-0 pod of a several-node job (`PET_MASTER_PORT`).", ge=1, le=65535
    )

    def shape_problems(self) -> list[str]:
        """K8S_GPU_NODE_SELECTORS' rows: a broken one makes the backend unavailable (never half a table);
        the others are keyed by the built-in spelling of their type (`h100` -> `H100`)."""
        table = self.gpu_node_selectors
        if not isinstance(table, dict):
            object.__setattr__(self, "gpu_node_selectors", {})
            return []
        problems = [
            f"K8S_GPU_NODE_SELECTORS[{name!r}] must be a non-empty JSON object of strings"
            for name, sel in table.items()
            if not isinstance(sel, dict) or not sel or not all(isinstance(k, str) and isinstance(v, str) for k, v in sel.items())
        ]
        object.__setattr__(self, "gpu_node_selectors", {} if problems else res.by_type_name(table))
        return problems

    def problems(self) -> list[str]:
        """What keeps the backend from taking jobs (none: it can)."""
        missing = [] if self.image else ["K8S_TRAINING_IMAGE is not set"]
        return missing + self.config_errors

    def default_gpus(self) -> int:
        """Trainer processes per pod when a request names no GPUs: K8S_RESOURCE_LIMITS' GPU count (one
        CPU process without one), as the manifests render it."""
        raw = (self.resource_limits or {}).get("nvidia.com/gpu")
        try:
            return max(int(str(raw)), 1) if raw is not None else 1
        except ValueError:
            return 1

    def describe(self) -> dict[str, Any]:
        """What /health shows of it."""
        # What `resources.gpu_type` can name here (K8S_GPU_NODE_SELECTORS), any count each.
        return {"apply": self.apply, "namespace": self.namespace, "gpuTypes": list(self.gpu_node_selectors)}
