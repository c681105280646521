"""The job: a frozen domain object, its summary (the studio's camelCase shape) and its log lines.

Adapters translate between this object and their stored shape (`shared/adapters/*_store.py`); nothing
here knows how a job is stored.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import StrEnum
from typing import Any

from shared.domain.callback import Callback
from shared.domain.resources import Resources
from shared.domain.status import FailureClass, JobStatus


class Backend(StrEnum):
    KUBERNETES = "kubernetes"
    VERTEX = "vertex"
    LOCAL = "local"


REDACTED = "[redacted]"


def iso(ts: datetime | None) -> str | None:
    if ts is None:
        return None
    return ts.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class LogLine:
    """One line of a job's output, in the shape the api returns (`timestamp`, `stream`, `message`)."""

    timestamp: datetime
    stream: str
    message: str
    seq: int = 0  # position in the job's log, assigned by the store; 1-based

    def to_api(self) -> dict[str, Any]:
        return {"seq": self.seq, "timestamp": iso(self.timestamp), "stream": self.stream, "message": self.message}


@dataclass(frozen=True)
class Job:
    id: str
    name: str
    backend: Backend
    status: JobStatus
    created_at: datetime
    updated_at: datetime
    dataset_file: str
    output_dir: str
    args: tuple[str, ...] = ()
    model_id: str | None = None
    upload_output_to: str | None = None
    # Names of the secret environment variables the job gets; values never leave the launch message.
    env_names: tuple[str, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)
    # The job's own webhook URLs (a request's `webhooks`); WEBHOOK_URLS adds the deployment's.
    webhooks: tuple[str, ...] = ()
    # What the request's `resources` asked for (unset fields: the backend's settings).
    resources: Resources = Resources()
    # The studio's status callback (its `callbacks`), the Authorization value sealed; None: none asked.
    callback: Callback | None = None
    status_reason: str | None = None
    failure_class: FailureClass | None = None
    external_id: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    exit_code: int | None = None
    command: str | None = None
    error: str | None = None
    log_tail: str = ""
    log_count: int = 0
    event_count: int = 0  # entries in the job's timeline (their seq is 1..event_count)
    progress: dict[str, Any] | None = None
    # When the last `progress` notification was planned (only jobs with a callback get them, one a minute).
    progress_notified_at: datetime | None = None
    # Rendered Kubernetes manifest or Vertex spec, secrets redacted (kept for dry runs and debugging).
    manifest: dict[str, Any] | None = None
    dry_run: bool = False
    cancel_requested: bool = False
    idempotency_key: str | None = None
    request_hash: str | None = None
    # Observed time of the newest backend event applied; older events never move the job.
    last_event_at: datetime | None = None
    # Per event source, the highest log line `seq` applied: a redelivered batch is not appended twice.
    log_cursors: dict[str, int] = field(default_factory=dict)
    # The ids of the most recent events applied (bounded): a redelivered event with an id is a no-op.
    recent_event_ids: tuple[str, ...] = ()
    # Incremented by the store on every write: the compare-and-set token.
    version: int = 0

    def replace(self, **changes: Any) -> "Job":
        """A copy with `changes` (every store write makes a few: `dataclasses.replace` re-runs `__init__`
        over all the fields, ~10x slower). Unknown field names raise like `dataclasses.replace`."""
        unknown = changes.keys() - _JOB_FIELDS
        if unknown:
            raise TypeError(f"Job has no field(s) {', '.join(sorted(unknown))}")
        new = object.__new__(Job)
        state = new.__dict__
        state.update(self.__dict__)
        state.update(changes)
        return new

    def is_terminal(self) -> bool:
        return self.status.is_terminal()

    def is_final(self) -> bool:
        """Nothing more will happen: a terminal status, or a dry run that stopped at `submitted`."""
        return self.status.is_terminal() or (self.dry_run and self.status is JobStatus.SUBMITTED)

    def to_summary(self) -> dict[str, Any]:
        """The studio's job shape: the old service's camelCase keys plus ours. No logs."""
        return {
            "id": self.id,
            "name": self.name,
            "backend": self.backend.value,
            "externalId": self.external_id,
            "status": self.status.value,
            "statusReason": self.status_reason,
            "failureClass": self.failure_class.value if self.failure_class else None,
            "createdAt": iso(self.created_at),
            "updatedAt": iso(self.updated_at),
            "startedAt": iso(self.started_at),
            "finishedAt": iso(self.finished_at),
            "exitCode": self.exit_code,
            "command": self.command,
            "args": list(self.args),
            "modelId": self.model_id,
            "outputDir": self.output_dir,
            "datasetFile": self.dataset_file,
            # Every source when a job has several (`datasetFile` keeps the old shape: the first one).
            "datasetFiles": [a.split("=", 1)[1] for a in self.args if a.startswith("--dataset_file=")] or [self.dataset_file],
            "uploadOutputTo": self.upload_output_to,
            "env": {name: REDACTED for name in self.env_names},
            "labels": dict(self.labels),
            # Without query strings: a receiver's URL may carry a token there.
            "webhooks": [u.split("?", 1)[0].split("#", 1)[0] for u in self.webhooks],
            "resources": self.resources.to_dict(),
            # Never the Authorization, sealed or not.
            "callback": {"kind": self.callback.kind, "url": self.callback.url.split("?", 1)[0].split("#", 1)[0]} if self.callback else None,
            "error": self.error,
            "logTail": self.log_tail,
            "logCount": self.log_count,
            "progress": self.progress,
            "dryRun": self.dry_run,
            "cancelRequested": self.cancel_requested,
        }


_JOB_FIELDS = frozenset(f.name for f in dataclasses.fields(Job))


def clip_tail(tail: str, lines: list[LogLine] | tuple[LogLine, ...], max_chars: int) -> str:
    """Append lines to a rolling tail and keep its last `max_chars` characters."""
    if lines:
        tail = tail + "".join(f"{line.message}\n" for line in lines)
    if max_chars >= 0 and len(tail) > max_chars:
        tail = tail[len(tail) - max_chars :]
    return tail
