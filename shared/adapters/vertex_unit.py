"""The Vertex backend as a unit: its settings (`vertex_settings.VertexSettings`), rules
(`shared.domain.backends.vertex`) and adapter (`vertex_backend.VertexBackend`). Its events come from
Cloud Logging's sink of its CustomJobs' state changes (`shared.domain.vertex_logs`) as `"source": "vertex"`."""

from __future__ import annotations

from typing import Any

from shared.adapters.unit import BackendUnit, BuildContext, RulesContext
from shared.adapters.vertex_settings import VertexSettings
from shared.domain.backends.vertex import VERTEX, VertexRules, vertex_placement
from shared.ports import Backend


class VertexUnit(BackendUnit):
    kind = VERTEX
    settings = VertexSettings

    def rules(self, settings: Any, context: RulesContext) -> VertexRules:
        return VertexRules(
            placement=vertex_placement(settings.machine_table, settings.accelerator_type, settings.accelerator_count),
            default_parallel=(max(settings.accelerator_count, 1) if settings.accelerator_type else 1, settings.replica_count),
            # A dry run renders a placeholder for a secret with no reference (and shows it); a real
            # submission can't pass it, so the api refuses it up front. With per-job secrets any can be passed.
            secret_names=frozenset(settings.secret_refs) if settings.submit and not settings.job_secrets else None,
            secret_settings={"HF_TOKEN": "VERTEX_HF_TOKEN_SECRET", "*": "VERTEX_JOB_SECRETS=1"},
        )

    def build(self, settings: Any, context: BuildContext) -> Backend:
        from shared.adapters.vertex_backend import VertexBackend

        return VertexBackend(settings)
