"""The `training-events` envelope (version 1): what every source publishes and status_sync applies.

```json
{
  "v": 1,
  "job_id": "…",                      // required
  "source": "<backend name>" | "reconcile",      // e.g. "kubernetes", "vertex", "local"
  "observed_at": "2026-11-29T05:00:00.000Z",   // when the source saw it (orders events)
  "event_id": "…",                    // optional, unique per event (dedupe of redeliveries)
  "state": "…",                       // optional, the source's own state word (see below)
  "reason": "…", "message": "…",      // optional
  "exit_code": 0,                     // optional
  "logs": [{"seq": 1, "timestamp": "…", "stream": "stdout", "message": "…"}],   // optional
  "progress": {…},                    // optional, a parsed `PROGRESS {json}` object
  "log_stream": "pod-name"            // optional: the stream `seq` counts in (default: the source)
}
```
`seq` in log lines is the source's own line counter (1-based, increasing) for the job, or for the
`log_stream` the envelope names (the cluster watcher sends one per pod, so a retried pod counts from 1
again); lines at or below the highest `seq` already applied for that stream are duplicates and are dropped.

States by source (each backend's rules map its own to our statuses: `shared/domain/backends/`):
- local: `started`, `running`, `exited` (with `exit_code`; 143 = SIGTERM: preempted, or cancelled when a
  cancel was requested).
- kubernetes: Job conditions and pod states as the watcher reports them (`Pending`, `Running`,
  `Complete`, `Failed`, with `reason` such as `BackoffLimitExceeded`, `ImagePullBackOff`, `OOMKilled`).
- vertex: `JOB_STATE_*`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from shared.domain.job import iso

ENVELOPE_VERSION = 1


@dataclass(frozen=True)
class EventLog:
    seq: int
    timestamp: datetime
    stream: str
    message: str


@dataclass(frozen=True)
class TrainingEvent:
    job_id: str
    source: str
    observed_at: datetime
    event_id: str | None = None
    state: str | None = None
    reason: str | None = None
    message: str | None = None
    exit_code: int | None = None
    logs: tuple[EventLog, ...] = ()
    progress: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_message(self) -> dict[str, Any]:
        msg: dict[str, Any] = {"v": ENVELOPE_VERSION, "job_id": self.job_id, "source": self.source, "observed_at": iso(self.observed_at)}
        for key in ("event_id", "state", "reason", "message", "exit_code", "progress"):
            value = getattr(self, key)
            if value is not None:
                msg[key] = value
        if self.logs:
            msg["logs"] = [{"seq": l.seq, "timestamp": iso(l.timestamp), "stream": l.stream, "message": l.message} for l in self.logs]
        msg.update(self.extra)
        return msg


def parse_time(raw: Any, default: datetime) -> datetime:
    if isinstance(raw, datetime):
        return raw if raw.tzinfo else raw.replace(tzinfo=UTC)
    if isinstance(raw, str):
        try:
            value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
            return value if value.tzinfo else value.replace(tzinfo=UTC)
        except ValueError:
            return default
    return default


def from_message(data: Any, now: datetime) -> TrainingEvent | None:
    """Decode an envelope; None when it isn't one (no job id)."""
    if not isinstance(data, dict) or not isinstance(data.get("job_id"), str):
        return None
    logs = []
    for raw in data.get("logs") or []:
        if not isinstance(raw, dict):
            continue
        seq = raw.get("seq")
        logs.append(
            EventLog(
                seq=int(seq) if isinstance(seq, int) and not isinstance(seq, bool) else 0,
                timestamp=parse_time(raw.get("timestamp"), now),
                stream=str(raw.get("stream") or "stdout"),
                message=str(raw.get("message") if raw.get("message") is not None else ""),
            )
        )
    exit_code = data.get("exit_code")
    progress = data.get("progress")
    known = {"v", "job_id", "source", "observed_at", "event_id", "state", "reason", "message", "exit_code", "logs", "progress"}
    return TrainingEvent(
        job_id=data["job_id"],
        source=str(data.get("source") or "unknown"),
        observed_at=parse_time(data.get("observed_at"), now),
        event_id=str(data["event_id"]) if data.get("event_id") is not None else None,
        state=str(data["state"]) if data.get("state") is not None else None,
        reason=str(data["reason"]) if data.get("reason") is not None else None,
        message=str(data["message"]) if data.get("message") is not None else None,
        exit_code=int(exit_code) if isinstance(exit_code, int) and not isinstance(exit_code, bool) else None,
        logs=tuple(logs),
        progress=progress if isinstance(progress, dict) else None,
        extra={k: v for k, v in data.items() if k not in known},
    )
