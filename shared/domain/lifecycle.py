"""The lifecycle seam: every change of a job is planned here, in one pure function, before a store writes it.

A writer (the api, the launcher, status sync, reconcile) decides a `Change`: the job to write, the log
lines and timeline entries to append, and who it is (`source`). `plan` turns the job as stored plus that
change into exactly what one store transaction commits:
- the log lines and timeline entries, numbered after the job's own counters (the only place they are
  numbered), the job's counters and rolling log tail moved on;
- a `status` timeline entry for a status change the change did not describe itself, so no status can
  change without the timeline showing it (from, to, time, source, reason);
- one `Notification` per status entry: the outbox row the same transaction stores and the relay
  publishes to `job-transitions`. Its id is `<job id>.<timeline seq>`, the same on every re-publish and
  every delivery attempt (it is the Standard Webhooks `webhook-id`).
- for a job with a status callback (the studio's), a `progress` entry and its notification while it runs,
  when its progress changed and `PROGRESS_INTERVAL_SECONDS` passed (by the change's `updated_at`) since
  the last one (`Job.progress_notified_at`): the studio sees progress at most once a minute, and the
  notification rides the same channel, order and retries as the statuses. Jobs without a callback get
  none (their timeline is as it always was); Standard Webhooks channels skip them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from shared.domain.job import Job, LogLine, clip_tail, iso
from shared.domain.status import JobStatus
from shared.domain.webhooks import event_body

STATUS = "status"
PROGRESS = "progress"
# At most one progress notification a minute per job (the studio's contract).
PROGRESS_INTERVAL_SECONDS = 60.0


@dataclass(frozen=True)
class TimelineEvent:
    """One entry of a job's timeline (`GET /jobs/{id}/events`)."""

    at: datetime
    kind: str
    data: dict[str, Any] = field(default_factory=dict)
    seq: int = 0


@dataclass(frozen=True)
class Change:
    """What one decision writes. `job` None: the job stays as it is (lines or entries may still be
    appended). `source` names the writer in the timeline entry of a status change."""

    job: Job | None
    lines: tuple[LogLine, ...] = ()
    timeline: tuple[TimelineEvent, ...] = ()
    source: str | None = None


@dataclass(frozen=True)
class Notification:
    """A transition to announce: stored in the transaction that made it, published by the outbox relay."""

    id: str
    job_id: str
    seq: int  # the timeline entry's seq: a job's notifications are ordered by it
    status: str
    previous: str | None
    at: datetime
    body: dict[str, Any]  # the webhook message: {"type": "job.<status>", "timestamp", "data": {...}}
    # `status`: a transition; `progress`: a running job's progress (status and previous both `running`).
    kind: str = STATUS

    def to_doc(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "jobId": self.job_id,
            "seq": self.seq,
            "status": self.status,
            "previous": self.previous,
            "at": iso(self.at),
            "body": self.body,
            "kind": self.kind,
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Notification:
        at = datetime.fromisoformat(str(doc["at"]).replace("Z", "+00:00"))
        return cls(
            id=doc["id"],
            job_id=doc["jobId"],
            seq=int(doc["seq"]),
            status=doc["status"],
            previous=doc.get("previous"),
            at=at,
            body=doc["body"],
            kind=doc.get("kind") or STATUS,
        )


@dataclass(frozen=True)
class Plan:
    """Exactly what one transaction writes. `job` is None when nothing changes (no write at all)."""

    job: Job | None
    lines: tuple[LogLine, ...] = ()
    timeline: tuple[TimelineEvent, ...] = ()
    notifications: tuple[Notification, ...] = ()


def as_change(decision: Any) -> Change:
    """What a mutation may return, as a Change: a Change, a Job, None, (job, lines) or (job, lines, entries)."""
    if isinstance(decision, Change):
        return decision
    if decision is None or isinstance(decision, Job):
        return Change(decision)
    if isinstance(decision, tuple) and len(decision) in (2, 3):
        job, lines, *rest = decision
        return Change(job, tuple(lines), tuple(rest[0]) if rest else ())
    raise TypeError(f"a mutation returned {type(decision).__name__}")


def status_entry(at: datetime, old: JobStatus | None, new: JobStatus, *, source: str, reason: str | None, **extra: Any) -> TimelineEvent:
    data = {"from": old.value if old is not None else None, "to": new.value, "reason": reason, "source": source, **extra}
    return TimelineEvent(at=at, kind=STATUS, data=data)


def notification_summary(job: Job) -> dict[str, Any]:
    """The job as a notification carries it: its summary without the rolling log tail (up to a megabyte;
    the logs are one GET away), so every message stays small."""
    summary = job.to_summary()
    summary.pop("logTail", None)
    return summary


def progress_due(current: Job, new: Job, interval_seconds: float = PROGRESS_INTERVAL_SECONDS) -> bool:
    """Whether this change of a running job with a callback announces its progress: it stays running
    (a status change announces itself), its progress changed and has a training step, and the last progress notification is at
    least `interval_seconds` old by the change's own time (so a test moves time by moving `updated_at`)."""
    if new.callback is None or current.status is not JobStatus.RUNNING or new.status is not JobStatus.RUNNING:
        return False
    if not new.progress or new.progress == current.progress:
        return False
    step = new.progress.get("step")
    if isinstance(step, bool) or not isinstance(step, (int, float)):
        # Not a training step (the trainer's start or dataset report): nothing to show yet, and it would
        # use up the minute the first step's progress needs.
        return False
    last = current.progress_notified_at
    return last is None or new.updated_at - last >= timedelta(seconds=interval_seconds)


def plan(current: Job | None, change: Change, max_tail_chars: int = -1) -> Plan:
    """The write of `change` over `current` (None: a new job, `change.job` is it)."""
    if current is None:
        if change.job is None:
            raise ValueError("a new job needs a job")
        base = change.job.replace(log_count=0, event_count=0, log_tail="")
        new = change.job
        entries = list(change.timeline)
        if not any(e.kind == STATUS for e in entries):
            entries.insert(0, status_entry(new.created_at, None, new.status, source=change.source or "api", reason=new.status_reason))
    else:
        base = current
        new = change.job or current
        entries = list(change.timeline)
        if new.status != current.status and not any(e.kind == STATUS for e in entries):
            entries.append(status_entry(new.updated_at, current.status, new.status, source=change.source or "platform", reason=new.status_reason))
    changes: dict[str, Any] = {}
    if current is not None and progress_due(current, new):
        entries.append(TimelineEvent(at=new.updated_at, kind=PROGRESS, data=dict(new.progress or {})))
        changes["progress_notified_at"] = new.updated_at
    lines: tuple[LogLine, ...] = ()
    if change.lines:
        first = base.log_count
        lines = tuple(LogLine(timestamp=l.timestamp, stream=l.stream, message=l.message, seq=first + i + 1) for i, l in enumerate(change.lines))
        changes["log_count"] = first + len(lines)
        changes["log_tail"] = clip_tail(base.log_tail, list(lines), max_tail_chars)
    timeline: tuple[TimelineEvent, ...] = ()
    if entries:
        first = base.event_count
        timeline = tuple(TimelineEvent(at=e.at, kind=e.kind, data=e.data, seq=first + i + 1) for i, e in enumerate(entries))
        changes["event_count"] = first + len(timeline)
    if changes:
        new = new.replace(**changes)
    if current is not None and new == current:
        return Plan(None)
    notes = []
    summary: dict[str, Any] | None = None
    for e in timeline:
        if e.kind == PROGRESS:
            summary = summary or notification_summary(new)
            notes.append(
                Notification(
                    id=f"{new.id}.{e.seq}",
                    job_id=new.id,
                    seq=e.seq,
                    status=JobStatus.RUNNING.value,
                    previous=JobStatus.RUNNING.value,
                    at=e.at,
                    body=event_body(PROGRESS, JobStatus.RUNNING.value, iso(e.at) or "", summary),
                    kind=PROGRESS,
                )
            )
            continue
        if e.kind != STATUS:
            continue
        summary = summary or notification_summary(new)
        to, frm = str(e.data.get("to")), e.data.get("from")
        notes.append(
            Notification(
                id=f"{new.id}.{e.seq}",
                job_id=new.id,
                seq=e.seq,
                status=to,
                previous=frm,
                at=e.at,
                body=event_body(to, frm, iso(e.at) or "", summary),
            )
        )
    return Plan(new, lines, timeline, tuple(notes))
