"""Request policies and backend rules for tests of the pure core, built from the built-in backends'
own rules (`shared/domain/backends/`) the way their units build them, with what a test overrides."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shared.domain.backend import BackendRules
from shared.domain.backends.kubernetes import KUBERNETES, KubernetesRules
from shared.domain.backends.local import LOCAL, LocalRules
from shared.domain.backends.vertex import VERTEX, VertexRules
from shared.domain.request_policy import RequestPolicy

# Every built-in backend's rules with no settings behind them: how their events read.
BUILT_IN_RULES: dict[str, BackendRules] = {KUBERNETES: KubernetesRules(), VERTEX: VertexRules(), LOCAL: LocalRules()}


def make_policy(
    *,
    local_roots: tuple[str, ...] = (),
    local_base: str = "/",
    backend_problems: Mapping[str, str | None] | None = None,
    placements: Mapping[str, Any] | None = None,
    secret_names: Mapping[str, frozenset[str] | None] | None = None,
    secret_settings: Mapping[str, str] | None = None,
    studio_output_roots: Mapping[str, str] | None = None,
    default_parallel: Mapping[str, tuple[int, int]] | None = None,
    **rest: Any,
) -> RequestPolicy:
    """A policy over the three built-in backends; each keyword maps a backend to what its rules say."""

    def own(kind: str) -> dict[str, Any]:
        kw: dict[str, Any] = {"problem": (backend_problems or {}).get(kind)}
        if placements is not None and kind in placements:
            kw["placement"] = placements[kind]
        if secret_names is not None and kind in secret_names:
            kw["secret_names"] = secret_names[kind]
        if secret_settings is not None:
            kw["secret_settings"] = dict(secret_settings)
        if studio_output_roots is not None and kind in studio_output_roots:
            kw["studio_output_root"] = studio_output_roots[kind]
        if default_parallel is not None and kind in default_parallel:
            kw["default_parallel"] = default_parallel[kind]
        return kw

    backends: dict[str, BackendRules] = {
        KUBERNETES: KubernetesRules(**own(KUBERNETES)),
        VERTEX: VertexRules(**own(VERTEX)),
        LOCAL: LocalRules(roots=tuple(local_roots), base=local_base, **own(LOCAL)),
    }
    rest.setdefault("default_backend", KUBERNETES)
    return RequestPolicy(backends=backends, **rest)
