"""The launcher's backends, built from settings at the edge (`functions/wiring.py` calls this).

Only the backends this deployment can use are built; one whose configuration is missing or broken
(`Settings.backend_problems()`) is left out, so the launcher fails its jobs with `BackendUnavailable`
instead of failing obscurely later (the api refuses such requests up front). Nothing connects here:
the Kubernetes and Vertex clients are created on first use, and never for a dry run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from shared.adapters.kubernetes.backend import KubernetesBackend
from shared.adapters.kubernetes.config import KubernetesConfig
from shared.adapters.local_backend import LocalBackend
from shared.adapters.vertex_backend import VertexBackend
from shared.adapters.vertex_render import VertexConfig
from shared.domain.job import Backend as BackendKind
from shared.ports import Backend

log = logging.getLogger(__name__)


def build_backends(settings: Any, events: Callable[[dict[str, Any]], Any] | None = None) -> dict[BackendKind, Backend]:
    """`events` receives the local supervisor's `training-events` envelopes (the embedded server
    publishes them on its bus); without it, local jobs run unobserved."""
    from shared.settings import REPO_ROOT

    problems = settings.backend_problems()
    backends: dict[BackendKind, Backend] = {}
    for kind, problem in problems.items():
        if problem:
            log.info("%s backend not available: %s", kind.value, problem)
    if not problems.get(BackendKind.KUBERNETES):
        backends[BackendKind.KUBERNETES] = KubernetesBackend(KubernetesConfig.from_settings(settings))
    if not problems.get(BackendKind.VERTEX):
        backends[BackendKind.VERTEX] = VertexBackend(VertexConfig.from_settings(settings))
    if not problems.get(BackendKind.LOCAL):
        backends[BackendKind.LOCAL] = LocalBackend(
            python_bin=settings.python_bin,
            script=settings.train_script,
            cwd=REPO_ROOT,
            events=events,
            # Next to the store, so a restarted embedded server finds the runs its jobs refer to.
            runs_dir=settings.sqlite_file.with_name(settings.sqlite_file.stem + "-runs"),
        )
    return backends
