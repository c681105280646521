"""What the pure core knows of a backend: its name (`BackendKind`) and its rules (`BackendRules`).

A backend is a unit (`shared/adapters/registry.py` lists them, and is the only place that does): its
settings group, its readiness, its adapter, and these rules, which the pure core reads without knowing
which backends exist: where a request's `dataset_file` / `output_dir` may point (`check_location`), what
it can place (`placement`), the ranks a job gets when its resources leave them unset
(`default_parallel`), the folder a studio run writes to, the secrets it can pass, and how its events'
state words become our statuses (`interpret`). Each built-in backend's rules are one module of
`shared/domain/backends/`; the settings build them at the edge and pass them in (`RequestPolicy.backends`,
`StatusSync`'s `rules`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from shared.domain.backend_kind import NAME_PATTERN, BackendKind
from shared.domain.resources import Placement
from shared.domain.status import FailureClass, JobStatus
from shared.errors import FieldError

if TYPE_CHECKING:
    from shared.domain.events import TrainingEvent
    from shared.domain.job import Job

# A signal's exit codes as a shell (143, 137) or Python's subprocess (-15, -9) reports them.
SIGTERM_CODES = (143, -15)
SIGKILL_CODES = (137, -9)


@dataclass(frozen=True)
class Outcome:
    """What one event of a backend says of its job: a status (None: no change), maybe a reason."""

    status: JobStatus | None = None
    reason: str | None = None
    failure_class: FailureClass | None = None
    message: str | None = None


@dataclass(frozen=True)
class ForeignEvent:
    """A backend's own message, read: its id of the job (`Job.external_id`) and the event (no job id
    yet), or both None when it is the backend's but says nothing of a job."""

    external_id: str | None
    event: TrainingEvent | None


@dataclass(frozen=True)
class BackendRules:
    """One backend's rules, as its settings make them (built by its unit at the edge; pure). A backend
    subclasses it where its rules differ from these defaults (any location; no placement limits; one
    process; every state word ignored)."""

    kind: BackendKind
    # None when the backend can take jobs here, else what configuration is missing (named by variable).
    problem: str | None = None
    # What it can place (see shared/domain/resources.py); None: no limits.
    placement: Placement | None = None
    # (trainer processes per node, nodes) a job gets when its `resources` leave gpus / nodes unset.
    default_parallel: tuple[int, int] = (1, 1)
    # The folder a studio run writes to when its spec names none (the studio's job_id is appended).
    studio_output_root: str | None = "/tmp/studio"
    # The secret variable names it can pass (None: any), and the setting that makes one passable
    # (`"*"`: the one setting that makes any passable).
    secret_names: frozenset[str] | None = None
    secret_settings: Mapping[str, str] = field(default_factory=dict)
    # The `kind` `GET /jobs/{id}/manifest` shows a stored object without one as (Vertex's CustomJob spec).
    manifest_kind: str | None = None

    def check_location(
        self, field_name: str, value: str, errors: list[FieldError], path: str | None = None, resolve_links: Callable[[str], str] | None = None
    ) -> str:
        """Where `dataset_file` / `output_dir` may point; returns the value the trainer gets. Errors name
        `path` (`dataset_file[1]` for one of several sources), or the field. `resolve_links` resolves a
        local path's symbolic links (I/O the service injects; None: lexical checks only)."""
        return value

    def interpret(self, job: Job, ev: TrainingEvent) -> Outcome:
        """This backend's state words (its events', and reconcile's observations of its jobs) as ours."""
        return Outcome()

    def foreign_event(self, data: Any, now: datetime) -> ForeignEvent | None:
        """A message on `training-events` in this backend's own format rather than our envelope (Vertex's
        Cloud Logging entries), or None: not one of its messages."""
        return None

    def resolved(self, realpath: Callable[[str], str]) -> BackendRules:
        """These rules with any folder they name resolved by `realpath` (the service does this once)."""
        return self


def interpret(rules: Mapping[str, BackendRules], job: Job, ev: TrainingEvent) -> Outcome:
    """Dispatch on the event's source; `reconcile` events speak the job's own backend's language, and a
    source no backend claims says nothing."""
    source = ev.source
    if source == "reconcile":
        if (ev.state or "") == "Stale":
            return Outcome(None, "Stale", None, ev.message)
        source = job.backend
    own = rules.get(source)
    return own.interpret(job, ev) if own is not None else Outcome()


__all__ = ["NAME_PATTERN", "SIGKILL_CODES", "SIGTERM_CODES", "BackendKind", "BackendRules", "ForeignEvent", "Outcome", "interpret"]
