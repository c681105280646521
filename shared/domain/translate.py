"""Event translation: the pure step status_sync applies with compare-and-set.

Each backend's rules (`shared.domain.backend.BackendRules.interpret`, one module per built-in backend in
`shared/domain/backends/`) map its state words to an `Outcome` (status, reason, failure class);
`job_after_event(job, event, now, rules)` returns a `Decision`: the job to write (None:
nothing to write), the new log lines and the status transition, if any; it never moves a job backwards
(the transition table only goes forward), never changes a terminal status, sets `startedAt` /
`finishedAt` / `exitCode` once, applies progress only from events newer than the last applied one,
ignores an event id it applied already, and drops log lines at or below the source's high-water mark
(so a redelivered batch is not appended twice). Trimming the log tail to its size is the store's
(`lifecycle.plan`), not this step's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared.domain.backend import BackendRules, interpret
from shared.domain.events import TrainingEvent
from shared.domain.job import Job, LogLine
from shared.domain.status import FailureClass, JobStatus

PROGRESS_PREFIX = "PROGRESS "


# ---- progress lines -------------------------------------------------------------------------------
def parse_progress(message: str) -> dict[str, Any] | None:
    """`PROGRESS {json}` -> the object; anything else -> None."""
    if not message.startswith(PROGRESS_PREFIX):
        return None
    import json

    try:
        value = json.loads(message[len(PROGRESS_PREFIX) :])
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


# ---- the decision ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Decision:
    """What one event changes: the job to write, the log lines to append, the status transition (old, new)."""

    job: Job | None  # the job to write, None: nothing to write
    lines: tuple[LogLine, ...] = ()
    transition: tuple[JobStatus, JobStatus] | None = None


RECENT_EVENT_IDS = 128


def job_after_event(job: Job, ev: TrainingEvent, now: datetime, rules: Mapping[str, BackendRules]) -> Decision:
    """The job after one training event (see the module docstring); pure, so it runs inside the store's
    compare-and-set and again on a conflict. `rules`: the backends' rules by name, whose `interpret`
    reads the event's state words."""
    if ev.event_id is not None and ev.event_id in job.recent_event_ids:
        return Decision(None)  # this very event was applied already (a redelivery)
    changes: dict[str, Any] = {}
    if ev.event_id is not None:
        changes["recent_event_ids"] = (*job.recent_event_ids, ev.event_id)[-RECENT_EVENT_IDS:]
    newer = job.last_event_at is None or ev.observed_at >= job.last_event_at

    # Logs: drop what this source (this pod, for Kubernetes) already delivered; lift PROGRESS lines.
    stream = ev.extra.get("log_stream")
    cursor_key = f"{ev.source}/{stream}" if isinstance(stream, str) and stream else ev.source
    cursor = job.log_cursors.get(cursor_key, 0)
    fresh = [l for l in ev.logs if l.seq <= 0 or l.seq > cursor]
    lines = tuple(LogLine(timestamp=l.timestamp, stream=l.stream, message=l.message) for l in fresh)
    top = max((l.seq for l in fresh), default=0)
    if top > cursor:
        changes["log_cursors"] = {**job.log_cursors, cursor_key: top}
    progress = ev.progress
    for line in fresh:
        parsed = parse_progress(line.message)
        if parsed is not None:
            progress = parsed
    if progress is not None and newer:
        changes["progress"] = progress

    outcome = interpret(rules, job, ev)
    transition = None
    target = outcome.status
    if target is not None and target != job.status and job.status.can_become(target):
        transition = (job.status, target)
        changes["status"] = target
        changes["status_reason"] = outcome.reason
        if target is JobStatus.FAILED:
            changes["failure_class"] = outcome.failure_class or FailureClass.INFRA
            changes["error"] = outcome.message or outcome.reason
        if target.is_terminal() and job.finished_at is None:
            changes["finished_at"] = ev.observed_at
    elif target is not None and target == job.status and not job.is_terminal() and outcome.reason and outcome.reason != job.status_reason:
        # Same status, new reason (e.g. submitted: Unschedulable).
        changes["status_reason"] = outcome.reason
    elif target is None and outcome.reason and not job.is_terminal() and outcome.reason != job.status_reason:
        changes["status_reason"] = outcome.reason

    if target is JobStatus.RUNNING and (job.started_at is None or ev.observed_at < job.started_at):
        # The earliest sign of life, whatever order the events arrive in.
        changes["started_at"] = ev.observed_at
    if ev.exit_code is not None and job.exit_code is None and (ev.state or "").lower() in ("exited", "failed", "complete", "succeeded"):
        changes["exit_code"] = ev.exit_code
    if newer:
        changes["last_event_at"] = ev.observed_at

    if not changes and not lines:
        return Decision(None)
    if changes or lines:
        changes["updated_at"] = now
    return Decision(job.replace(**changes), lines, transition)
