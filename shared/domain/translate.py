"""Event translation: the one place where each source's states become our statuses, and the pure
step status_sync applies with compare-and-set.

`interpret(job, event)` maps a source's state word to an `Outcome` (status, reason, failure class), one
function per source. `job_after_event(job, event, now)` returns a `Decision`: the job to write (None:
nothing to write), the new log lines and the status transition, if any; it never moves a job backwards
(the transition table only goes forward), never changes a terminal status, sets `startedAt` /
`finishedAt` / `exitCode` once, applies progress only from events newer than the last applied one,
ignores an event id it applied already, and drops log lines at or below the source's high-water mark
(so a redelivered batch is not appended twice). Trimming the log tail to its size is the store's
(`lifecycle.plan`), not this step's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared.domain.events import TrainingEvent
from shared.domain.job import Backend, Job, LogLine
from shared.domain.status import FailureClass, JobStatus

S = JobStatus
FC = FailureClass

PROGRESS_PREFIX = "PROGRESS "


@dataclass(frozen=True)
class Outcome:
    status: JobStatus | None = None  # None: no status change, maybe a reason
    reason: str | None = None
    failure_class: FailureClass | None = None
    message: str | None = None


# ---- per source -----------------------------------------------------------------------------------
SIGTERM_CODES = (143, -15)
SIGKILL_CODES = (137, -9)


def interpret_local(job: Job, ev: TrainingEvent) -> Outcome:
    state = (ev.state or "").lower()
    if state in ("started", "running"):
        return Outcome(S.RUNNING)
    if state == "exited":
        code = ev.exit_code
        if code == 0:
            return Outcome(S.SUCCEEDED, "Completed")
        if code in SIGTERM_CODES or code in SIGKILL_CODES:
            if job.cancel_requested:
                return Outcome(S.CANCELLED, "Cancelled")
            if code in SIGTERM_CODES:
                return Outcome(S.FAILED, "Preempted", FC.PREEMPTED, "the trainer was stopped with SIGTERM (exit 143)")
            return Outcome(S.FAILED, "Killed", FC.INFRA, "the trainer was killed (SIGKILL; out of memory?)")
        if code == 2:
            return Outcome(S.FAILED, "BadInput", FC.USER, ev.message or "the trainer rejected its input (exit 2)")
        if code is not None and code < 0:
            return Outcome(S.FAILED, f"Signal{-code}", FC.INFRA, f"the trainer died of signal {-code}")
        return Outcome(S.FAILED, "TrainerError", FC.USER, ev.message or f"the trainer exited with code {code}")
    if state == "lost":
        # The supervisor has no such process (the server restarted): it can't still be running here.
        if job.cancel_requested:
            return Outcome(S.CANCELLED, "Cancelled")
        return Outcome(S.FAILED, "ProcessLost", FC.INFRA, "the local trainer process is gone (the server restarted?)")
    if state == "failed_to_start":
        return Outcome(S.FAILED, ev.reason or "StartFailed", FC.INFRA, ev.message)
    return Outcome()


K8S_USER_REASONS = {
    "ImagePullBackOff",
    "ErrImagePull",
    "InvalidImageName",
    "CreateContainerConfigError",
    "BackoffLimitExceeded",
    "DeadlineExceeded",
    "OOMKilled",
    "Error",
}
K8S_PREEMPTION_REASONS = {"Evicted", "Preempted", "PreemptionByScheduler", "PodDisruption", "DisruptionTarget", "Shutdown", "NodeShutdown", "Terminated"}
K8S_CAPACITY_REASONS = {"Unschedulable", "FailedScheduling", "NotTriggerScaleUp"}


def interpret_kubernetes(job: Job, ev: TrainingEvent) -> Outcome:
    state = ev.state or ""
    reason = ev.reason
    if state in ("Pending", "Waiting", "Created"):
        # Pending pods, image pulls still retrying, unschedulable: still `submitted`, with the reason.
        return Outcome(S.SUBMITTED, reason, None, ev.message)
    if state == "Running":
        return Outcome(S.RUNNING)
    if state in ("Complete", "Succeeded"):
        return Outcome(S.SUCCEEDED, "Completed")
    if state == "Deleted":
        if job.cancel_requested:
            return Outcome(S.CANCELLED, "Cancelled")
        return Outcome(S.FAILED, "JobDeleted", FC.INFRA, "the Kubernetes Job was deleted outside the platform")
    if state == "Failed":
        if job.cancel_requested:
            return Outcome(S.CANCELLED, "Cancelled")
        if reason in K8S_PREEMPTION_REASONS or ev.exit_code in SIGTERM_CODES:
            return Outcome(S.FAILED, reason or "Preempted", FC.PREEMPTED, ev.message)
        if reason in K8S_CAPACITY_REASONS:
            return Outcome(S.FAILED, reason, FC.CAPACITY, ev.message)
        if reason and "quota" in reason.lower():
            return Outcome(S.FAILED, reason, FC.QUOTA, ev.message)
        if ev.exit_code == 2:
            return Outcome(S.FAILED, "BadInput", FC.USER, ev.message)
        if reason in K8S_USER_REASONS or ev.exit_code not in (None, 0):
            return Outcome(S.FAILED, reason or "TrainerError", FC.USER, ev.message)
        return Outcome(S.FAILED, reason or "Failed", FC.INFRA, ev.message)
    return Outcome()


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


def interpret(job: Job, ev: TrainingEvent) -> Outcome:
    """Dispatch on the source; `reconcile` events speak the job's own backend's language."""
    source = ev.source
    if source == "reconcile":
        if (ev.state or "") == "Stale":
            return Outcome(None, "Stale", None, ev.message)
        source = job.backend.value
    if source == Backend.LOCAL.value:
        return interpret_local(job, ev)
    if source == Backend.KUBERNETES.value:
        return interpret_kubernetes(job, ev)
    if source == Backend.VERTEX.value:
        return interpret_vertex(job, ev)
    return Outcome()


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


def job_after_event(job: Job, ev: TrainingEvent, now: datetime) -> Decision:
    """The job after one training event (see the module docstring); pure, so it runs inside the store's
    compare-and-set and again on a conflict."""
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

    outcome = interpret(job, ev)
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
