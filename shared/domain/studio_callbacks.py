"""The studio's status callbacks, pure: which notifications become one, and its body.

The studio knows five statuses and accepts any of them at any time, in any order (it enforces none), so
the platform decides what goes out: our statuses map onto its five (`STUDIO_STATUS`); a transition whose
mapped status equals the one before it (`submitting` and `submitted` after `queued`, `cancelling` after
`running`) is skipped, the channel moving on without a call. Because a job's notifications reach a
channel strictly in order and a status is only ever skipped, never moved, nothing older than what was
delivered can follow it. A progress notification goes out as `running` with the progress in `log`,
unless a later notification of the job exists already (a fresher progress, or a status past running):
then it is stale and skipped, so no `running` can follow `succeeded`.

The body is `{"status", "log"}`; the studio drops any other key, so a failure reason, the output
location and progress travel inside `log`. The notification's own summary of the job (as it was when
the transition was made) is what the log is written from.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from shared.domain.lifecycle import PROGRESS, Notification
from shared.domain.status import JobStatus

STUDIO_STATUS: dict[JobStatus, str] = {
    JobStatus.QUEUED: "queued",
    JobStatus.SUBMITTING: "queued",
    JobStatus.SUBMITTED: "queued",
    JobStatus.RUNNING: "running",
    JobStatus.CANCELLING: "running",
    JobStatus.SUCCEEDED: "succeeded",
    JobStatus.FAILED: "failed",
    JobStatus.CANCELLED: "cancelled",
}
STUDIO_STATUSES = frozenset(STUDIO_STATUS.values())


def studio_status(status: str | None) -> str | None:
    """Our status -> the studio's (None for None or a status we don't know)."""
    try:
        return STUDIO_STATUS[JobStatus(status)] if status is not None else None
    except ValueError:
        return None


def callback_body(n: Notification, *, superseded: bool) -> dict[str, str] | None:
    """The body to POST for notification `n`, or None: skip it (the channel moves on without a call).
    `superseded`: a later notification of the job exists already."""
    job = _job(n)
    if n.kind == PROGRESS:
        if superseded:
            return None
        return {"status": "running", "log": progress_text(job.get("progress"), _parse(job.get("startedAt")), n.at) or "running"}
    status = studio_status(n.status)
    if status is None or status == studio_status(n.previous):
        return None
    return {"status": status, "log": status_text(n.status, job)}


def status_text(status: str, job: dict[str, Any]) -> str:
    reason, error = job.get("statusReason"), job.get("error")
    if status == JobStatus.FAILED.value:
        detail = ": ".join(dict.fromkeys(str(p) for p in (reason, error) if p))  # a reason the error repeats is said once
        return f"failed: {detail}" if detail else "failed"
    if status == JobStatus.SUCCEEDED.value:
        output = job.get("uploadOutputTo") or job.get("outputDir")
        return f"output: {output}" if output else "succeeded"
    shown = studio_status(status) or status
    return f"{shown}: {reason}" if reason else shown


def progress_text(progress: Any, started_at: datetime | None, at: datetime) -> str:
    """`step 120/900 · loss 1.23 · 14 min left`, each part only where it is known."""
    if not isinstance(progress, dict):
        return ""
    parts = []
    step, total = _number(progress.get("step")), _number(progress.get("total_steps"))
    if step is not None:
        parts.append(f"step {int(step)}/{int(total)}" if total else f"step {int(step)}")
    loss = _number(progress.get("loss"))
    if loss is not None:
        parts.append(f"loss {loss:.3g}")
    left = _seconds_left(progress, step, total, started_at, at)
    if left is not None:
        parts.append(f"{max(1, math.ceil(left / 60))} min left")
    return " · ".join(parts)


def _seconds_left(progress: dict[str, Any], step: float | None, total: float | None, started_at: datetime | None, at: datetime) -> float | None:
    eta = _number(progress.get("eta_seconds"))
    if eta is not None:
        return eta
    # No estimate from the trainer: the pace so far, from when the job started running.
    if step and total and total > step and started_at is not None:
        elapsed = (at - started_at).total_seconds()
        if elapsed > 0:
            return elapsed / step * (total - step)
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _job(n: Notification) -> dict[str, Any]:
    data = n.body.get("data") if isinstance(n.body, dict) else None
    job = data.get("job") if isinstance(data, dict) else None
    return job if isinstance(job, dict) else {}


def _parse(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
