"""What a backend unit is: one class per backend that brings together everything the platform needs
of it, so that adding a backend is a unit and one line of the registry (`shared/adapters/registry.py`).

A unit names its backend (`kind`), owns its settings group (`settings`, a `SettingsGroup` with its env
prefix), says whether this deployment can use it (`problem`: its group's `problems()`), what `/health`
shows of it (`health`: its group's `describe()`), builds its pure rules (`rules`, a
`shared.domain.backend.BackendRules`: request locations, placement, default ranks, the studio's output
folder, passable secrets, event interpretation), and builds its adapter (`build`, a
`shared.ports.Backend`: submit / cancel / observe). Its events reach status sync as `training-events`
envelopes with `"source": <kind>`, published through `BuildContext.events` or by a process of its own
(the cluster watcher, Vertex's log sink).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from shared.domain.backend import BackendKind, BackendRules
from shared.ports import Backend
from shared.settings_group import SettingsGroup


@dataclass(frozen=True)
class RulesContext:
    """What a unit's rules may need of the platform: where relative local paths start from."""

    repo_root: Path


@dataclass(frozen=True)
class BuildContext:
    """What a unit's adapter may need of the platform."""

    # Publishes a `training-events` envelope (the embedded server: on its bus); None: unobserved.
    events: Callable[[dict[str, Any]], Any] | None
    # The embedded store's file: a backend's own state lives beside it (`state_dir`).
    store_file: Path
    repo_root: Path

    def state_dir(self, name: str) -> Path:
        """A folder the backend may keep state in, next to the store, so a restarted server finds it."""
        return self.store_file.with_name(f"{self.store_file.stem}-{name}")


class BackendUnit:
    """One backend, whole; subclass it and list an instance in the registry."""

    kind: ClassVar[BackendKind]
    settings: ClassVar[type[SettingsGroup]]

    def problem(self, settings: SettingsGroup) -> str | None:
        """None when the backend can take jobs here, else what is missing (named by variable)."""
        return "; ".join(settings.problems()) or None

    def health(self, settings: SettingsGroup) -> dict[str, Any]:
        """What `/health` shows of it beside `configured` and `problem`."""
        return settings.describe()

    def rules(self, settings: Any, context: RulesContext) -> BackendRules:
        """Its pure rules under these settings (`problem` already filled in by the registry's caller)."""
        return BackendRules(self.kind)

    def build(self, settings: Any, context: BuildContext) -> Backend:
        """Its adapter; called only when `problem` is None. Connects to nothing yet (first use does)."""
        raise NotImplementedError
