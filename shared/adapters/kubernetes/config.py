"""The `K8S_*` settings the Kubernetes adapter uses (backend, manifests, client and watcher), as one
frozen value built once at the edge from `shared/settings.py`."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from shared.domain.resources import DEFAULT_K8S_GPU_NODE_SELECTORS

DEFAULT_SCHEMA_VERSION = "1.30"
DEFAULT_MASTER_PORT = 29500


@dataclass(frozen=True)
class KubernetesConfig:
    """The `K8S_*` settings the adapter uses, JSON values already parsed (see `shared/settings.py`)."""

    image: str | None = None
    namespace: str = "default"
    service_account: str | None = None
    apply: bool = False
    kubeconfig: str | None = None
    context: str | None = None
    node_selector: dict[str, Any] | None = None
    tolerations: list[Any] | None = None
    image_pull_secrets: list[Any] | None = None
    backoff_limit: int = 0
    ttl_seconds_after_finished: int | None = None
    resource_limits: dict[str, Any] | None = None
    # GPU type (canonical name) -> the node selector that places it (K8S_GPU_NODE_SELECTORS).
    gpu_node_selectors: dict[str, dict[str, str]] = field(default_factory=lambda: copy.deepcopy(DEFAULT_K8S_GPU_NODE_SELECTORS))
    kueue_queue: str | None = None
    master_port: int = DEFAULT_MASTER_PORT
    # Kubernetes version whose schema the manifests are validated against (the oldest we support).
    schema_version: str = DEFAULT_SCHEMA_VERSION

    @classmethod
    def from_settings(cls, settings: Any) -> KubernetesConfig:
        return cls(
            image=settings.k8s_training_image,
            namespace=settings.k8s_namespace,
            service_account=settings.k8s_service_account,
            apply=settings.k8s_apply,
            kubeconfig=settings.k8s_kubeconfig,
            context=settings.k8s_context,
            node_selector=settings.json_value("K8S_NODE_SELECTOR"),
            tolerations=settings.json_value("K8S_TOLERATIONS"),
            image_pull_secrets=settings.json_value("K8S_IMAGE_PULL_SECRETS"),
            backoff_limit=settings.k8s_backoff_limit,
            ttl_seconds_after_finished=settings.k8s_ttl_seconds_after_finished,
            resource_limits=settings.json_value("K8S_RESOURCE_LIMITS"),
            gpu_node_selectors=settings.gpu_node_selectors,
            kueue_queue=settings.k8s_kueue_queue,
            master_port=settings.k8s_master_port,
        )
