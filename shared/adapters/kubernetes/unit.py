"""The Kubernetes backend as a unit: its settings (`config.KubernetesSettings`), rules
(`shared.domain.backends.kubernetes`) and adapter (`backend.KubernetesBackend`). Its events come from
the cluster watcher (`watcher.py`, `functions/watcher.py`) as `"source": "kubernetes"`."""

from __future__ import annotations

from typing import Any

from shared.adapters.kubernetes.config import KubernetesSettings
from shared.adapters.unit import BackendUnit, BuildContext, RulesContext
from shared.domain.backends.kubernetes import KUBERNETES, KubernetesRules, k8s_placement
from shared.ports import Backend


class KubernetesUnit(BackendUnit):
    kind = KUBERNETES
    settings = KubernetesSettings

    def rules(self, settings: Any, context: RulesContext) -> KubernetesRules:
        return KubernetesRules(placement=k8s_placement(settings.gpu_node_selectors), default_parallel=(settings.default_gpus(), 1))

    def build(self, settings: Any, context: BuildContext) -> Backend:
        from shared.adapters.kubernetes.backend import KubernetesBackend

        return KubernetesBackend(settings)
