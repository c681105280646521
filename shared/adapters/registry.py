"""The registry: the one place that lists the backends. Adding one is its unit (`shared/adapters/unit.py`
says what a unit is; docs/architecture.md walks through it) and one line in `BUILT_IN` below.

Everything else asks the registry: the settings build each unit's settings group from the environment
and its rules (`shared.settings.Settings`), `/health` shows each one, the api validates a request's
`backend` against the names here, and the composition root (`functions/wiring.py`) builds the adapters
of the usable ones. Tests add a backend of their own with `registered(unit)`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from shared.adapters.kubernetes.unit import KubernetesUnit
from shared.adapters.local_unit import LocalUnit
from shared.adapters.unit import BackendUnit
from shared.adapters.vertex_unit import VertexUnit
from shared.domain.backend import BackendKind

log = logging.getLogger(__name__)

# The built-in backends, in the order /health and the README list them.
BUILT_IN: tuple[BackendUnit, ...] = (KubernetesUnit(), VertexUnit(), LocalUnit())


class Registry:
    def __init__(self, units: tuple[BackendUnit, ...] = BUILT_IN):
        self._units: dict[str, BackendUnit] = {}
        for unit in units:
            self.register(unit)

    def register(self, unit: BackendUnit) -> None:
        if unit.kind in self._units:
            raise ValueError(f"a backend named {unit.kind!r} is registered already")
        self._units[unit.kind] = unit

    def unregister(self, kind: str) -> None:
        self._units.pop(kind, None)

    @property
    def units(self) -> tuple[BackendUnit, ...]:
        return tuple(self._units.values())

    @property
    def kinds(self) -> tuple[BackendKind, ...]:
        return tuple(unit.kind for unit in self._units.values())

    def get(self, kind: str) -> BackendUnit | None:
        return self._units.get(kind)


REGISTRY = Registry()


@contextmanager
def registered(unit: BackendUnit) -> Iterator[BackendUnit]:
    """`unit` in the registry for the duration (a test's own backend)."""
    REGISTRY.register(unit)
    try:
        yield unit
    finally:
        REGISTRY.unregister(unit.kind)
