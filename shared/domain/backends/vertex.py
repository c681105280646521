"""The Vertex backend's rules: datasets on gs://, the GPU counts its machine types come in, secrets
only as Secret Manager references unless per-job secrets are on, and `JOB_STATE_*` as statuses."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared.domain.backend import BackendKind, BackendRules, ForeignEvent, Outcome
from shared.domain.events import TrainingEvent
from shared.domain.job import Job
from shared.domain.resources import Placement
from shared.domain.status import FailureClass as FC
from shared.domain.status import JobStatus as S
from shared.domain.vertex_logs import is_log_entry, parse_log_entry
from shared.errors import FieldError

VERTEX = BackendKind("vertex")


@dataclass(frozen=True)
class VertexRules(BackendRules):
    kind: BackendKind = VERTEX
    manifest_kind: str | None = "CustomJob"

    def check_location(
        self, field_name: str, value: str, errors: list[FieldError], path: str | None = None, resolve_links: Callable[[str], str] | None = None
    ) -> str:
        if field_name == "dataset_file" and not value.startswith("gs://"):
            errors.append(FieldError(path or field_name, "must be a gs:// URI for the vertex backend"))
        return value

    def interpret(self, job: Job, ev: TrainingEvent) -> Outcome:
        return interpret_vertex(job, ev)

    def foreign_event(self, data: Any, now: datetime) -> ForeignEvent | None:
        """A Cloud Logging entry of one of our CustomJobs' state changes (the log sink's messages)."""
        if not is_log_entry(data):
            return None
        parsed = parse_log_entry(data, now)
        return ForeignEvent(None, None) if parsed is None else ForeignEvent(parsed.vertex_job_id, parsed.event)


def vertex_counts(table: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    return {name: tuple(sorted(int(n) for n in (row.get("machines") or {}))) for name, row in table.items()}


def vertex_default_type(table: Mapping[str, Any], accelerator: str | None) -> str | None:
    """The table's type for the configured VERTEX_ACCELERATOR_TYPE (what `gpus` alone gets)."""
    return next((name for name, row in table.items() if row.get("accelerator") == accelerator), None)


def vertex_placement(table: Mapping[str, Any], default_accelerator: str | None, default_gpus: int) -> Placement:
    return Placement(
        "vertex",
        vertex_counts(table),
        default_gpu_type=vertex_default_type(table, default_accelerator),
        default_gpus=default_gpus,
        table_setting="VERTEX_MACHINE_TYPES",
        needs_type=True,
        sized_by_machine=True,
    )


def vertex_machine(table: Mapping[str, Any], gpu_type: str, gpus: int | None, default_gpus: int) -> tuple[str, str, int]:
    """(machine type, accelerator, count) for a type: the asked count, else the default count when the
    type comes in it, else its smallest. Only called for a combination `placement_problems` accepted."""
    row = table[gpu_type]
    machines = {int(n): m for n, m in (row.get("machines") or {}).items()}
    count = gpus if gpus else (default_gpus if default_gpus in machines else min(machines))
    return machines[count], str(row["accelerator"]), count


def interpret_vertex(job: Job, ev: TrainingEvent) -> Outcome:
    state = (ev.state or "").upper()
    if not state.startswith("JOB_STATE_") and state:
        state = f"JOB_STATE_{state}"
    if state in ("JOB_STATE_QUEUED", "JOB_STATE_PENDING"):
        return Outcome(S.SUBMITTED, state.removeprefix("JOB_STATE_").title())
    if state == "JOB_STATE_RUNNING":
        return Outcome(S.RUNNING)
    if state == "JOB_STATE_SUCCEEDED":
        return Outcome(S.SUCCEEDED, "Completed")
    if state == "JOB_STATE_CANCELLING":
        return Outcome(S.CANCELLING, "Cancelling")
    if state == "JOB_STATE_CANCELLED":
        return Outcome(S.CANCELLED, "Cancelled")
    if state == "JOB_STATE_EXPIRED":
        return Outcome(S.FAILED, "Expired", FC.CAPACITY, ev.message or "the job waited too long for resources")
    if state in ("JOB_STATE_FAILED", "JOB_STATE_PARTIALLY_SUCCEEDED"):
        text = (ev.message or "").lower()
        if "quota" in text:
            return Outcome(S.FAILED, "QuotaExceeded", FC.QUOTA, ev.message)
        if "stockout" in text or "resources are insufficient" in text or "insufficient capacity" in text:
            return Outcome(S.FAILED, "InsufficientCapacity", FC.CAPACITY, ev.message)
        if "preempt" in text:
            return Outcome(S.FAILED, "Preempted", FC.PREEMPTED, ev.message)
        return Outcome(S.FAILED, ev.reason or "Failed", FC.USER, ev.message)
    return Outcome()
