"""Ports: the Protocols the core talks to. Adapters in `shared/adapters/` implement them.

Only these shapes cross the boundary: domain objects in, domain objects out. No vendor type leaks.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

from shared.domain.delivery import Attempt, Channel
from shared.domain.job import Job, LogLine
from shared.domain.lifecycle import Change, Notification, TimelineEvent
from shared.domain.metrics import MetricPoint

# `Change`, `Notification` and `TimelineEvent` are the domain's (lifecycle.py), re-exported: they are
# what crosses the store port, and the use cases and tests read them here.
__all__ = [
    "Backend",
    "Bus",
    "Change",
    "Clock",
    "IdempotentCreate",
    "JobQuery",
    "JobStore",
    "LogMutation",
    "Mutation",
    "Notification",
    "Observation",
    "Page",
    "Rejection",
    "Submission",
    "SystemClock",
    "TimelineEvent",
]


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    """The real clock (UTC): the default wherever a Clock is not injected."""

    def now(self) -> datetime:
        return datetime.now(UTC)


@dataclass(frozen=True)
class JobQuery:
    limit: int = 50
    cursor: str | None = None
    status: str | None = None
    backend: str | None = None
    name: str | None = None
    label: tuple[str, str] | None = None


@dataclass(frozen=True)
class Page:
    items: list[Job]
    next_cursor: str | None = None


@dataclass(frozen=True)
class IdempotentCreate:
    job: Job
    created: bool  # False: the key was seen before with the same body; `job` is the first one


@dataclass(frozen=True)
class Rejection:
    """A batch item that was refused: what a 400 would have said, kept where the submitter can see it."""

    key: str  # the item's idempotency key: recording twice is recording once
    batch_id: str
    index: int  # position in the message (-1: the whole message)
    error: str
    errors: list[dict[str, str]]
    at: datetime
    message_id: str = ""

    def to_api(self) -> dict[str, Any]:
        from shared.domain.job import iso

        return {
            "batchId": self.batch_id,
            "index": self.index,
            "idempotencyKey": self.key,
            "error": self.error,
            "errors": self.errors,
            "at": iso(self.at),
            "messageId": self.message_id,
        }


# A pure decision: given the current job, the change to write (`shared.domain.lifecycle.Change`: the job,
# lines, timeline entries and who decided), or just the job, or None to leave it as it is. The store plans
# it (`lifecycle.plan`) and commits the job, its lines and entries and the outbox rows together.
Mutation = Callable[[Job], "Change | Job | None"]
# The same, also in the older tuple forms: (job or None, lines) or (job or None, lines, timeline entries).
LogMutation = Callable[[Job], "Change | Job | None | tuple[Job | None, Iterable[LogLine]] | tuple[Job | None, Iterable[LogLine], Iterable[TimelineEvent]]"]


@runtime_checkable
class JobStore(Protocol):
    kind: str

    def create(self, job: Job, idempotency_key: str | None = None) -> IdempotentCreate:
        """Store a new job. With a key already used: the same request hash returns the first job
        (created=False); another hash raises Conflict. A job id that exists raises Conflict."""

    def create_many(self, items: Sequence[tuple[Job, str | None]]) -> list[IdempotentCreate | Exception]:
        """`create` for several (job, idempotency key) pairs, in order, as if one after another; the
        store may commit them together (group commit). One outcome per item: its result, or the
        exception `create` would have raised (Conflict, TransientError)."""

    def get(self, job_id: str) -> Job | None: ...

    def list(self, query: JobQuery) -> Page:
        """Newest first (createdAt desc, id desc); `cursor` is opaque and comes from `next_cursor`."""

    # From here on `list` in this class body is the method above: the type is spelled `builtins.list`.

    def update(self, job_id: str, mutate: Mutation) -> Job | None:
        """Compare-and-set: read the job, apply `mutate`, write only if the job did not change meanwhile
        (retrying the read on a race). Returns the job as stored afterwards; None if there is no such job."""

    def update_many(self, mutations: Mapping[str, Mutation], *, known: Mapping[str, Job] | None = None) -> dict[str, Job | None]:
        """`update` for several jobs at once (the launcher's batches): each job is compared-and-set on its
        own, exactly as `update` would; the store may share round trips and commits between them.
        `known`: jobs as the caller last had them from this store; the store may skip reading those
        (a stale one loses its compare-and-set and is read again). Returns, for every id given, what
        `update` would have returned."""

    def append_logs(self, job_id: str, lines: Iterable[LogLine], max_tail_chars: int) -> int:
        """Append lines in order (seq assigned here) and roll the job's logTail; returns the new count."""

    def apply(self, job_id: str, decide: LogMutation, max_tail_chars: int) -> Job | None:
        """Compare-and-set of the job together with an append of log lines (and timeline entries), in one
        commit: `decide` sees the current job and returns the job to write and what to append."""

    def get_logs(self, job_id: str, after: int = 0, limit: int = 1000) -> builtins.list[LogLine]:
        """Lines with seq > after, in order."""

    def get_metrics(self, job_id: str, after: int = 0, limit: int = 1000) -> builtins.list[MetricPoint]:
        """The job's metric points (its `PROGRESS` lines, each with its log line's seq) with seq > after."""

    def append_event(self, job_id: str, event: TimelineEvent) -> None: ...

    def list_events(self, job_id: str, after: int = 0, limit: int = 100) -> builtins.list[TimelineEvent]: ...

    def find_by_external_key(self, backend: str, key: str) -> Job | None:
        """The job whose external id ends with `key` on that backend (e.g. Vertex's numeric job id)."""

    def record_rejection(self, rejection: Rejection) -> bool:
        """Store a rejection once per key; False when it was already recorded."""

    def list_rejections(self, batch_id: str, limit: int = 1000) -> builtins.list[Rejection]:
        """A batch's rejections by index."""

    def unpublished(self, limit: int = 500, job_id: str | None = None) -> builtins.list[Notification]:
        """The outbox: notifications not yet marked published (all jobs', or one's), each job's in order."""

    def mark_published(self, notifications: Sequence[Notification]) -> None: ...

    def get_notifications(self, job_id: str, after: int = 0, limit: int = 100) -> builtins.list[Notification]:
        """A job's notifications with seq > after, in order (what its delivery channels walk)."""

    # Delivery channels (shared/domain/delivery.py): one per (job, subscriber), compare-and-set on version.
    def get_channel(self, job_id: str, key: str) -> Channel | None: ...

    def list_channels(self, job_id: str) -> builtins.list[Channel]: ...

    def save_channel(self, channel: Channel) -> Channel | None:
        """Create (version 0) or compare-and-set a channel; the saved one, or None if another writer won."""

    def due_channels(self, now: datetime, limit: int = 100) -> builtins.list[Channel]:
        """Channels whose next attempt is at or before `now`, soonest first."""

    def record_attempt(self, attempt: Attempt) -> None:
        """Store one delivery attempt (by its id: writing it twice is writing it once)."""

    def list_attempts(self, job_id: str, after: str = "", limit: int = 100) -> builtins.list[dict[str, Any]]: ...

    def ping(self) -> None:
        """Raise if the store can't be reached."""


class Bus(Protocol):
    kind: str

    def publish(
        self,
        topic: str,
        data: dict[str, Any],
        *,
        attributes: dict[str, str] | None = None,
        ordering_key: str | None = None,
    ) -> str:
        """Publish one JSON message; returns its message id. Raises TransientError when it can't."""


class Backend(Protocol):
    """A place jobs run (Kubernetes, Vertex, a local process). Implemented by the launcher's adapters."""

    name: str

    def submit(self, job: Job, env: dict[str, str]) -> Submission: ...

    def cancel(self, job: Job) -> bool | None:
        """Stop the job. True: a stop was requested; False: nothing of this job runs there any more —
        in both cases the launcher marks it `cancelled`. None: it had already finished on its own; its
        own terminal event (or reconcile) says how."""

    def observe(self, job: Job) -> Observation | None:
        """Ask the backend for the job's state (reconcile). None: the backend can't tell."""

    def release(self, job: Job) -> None:
        """Free what the job held only while it ran (Vertex: its per-job Secret Manager secret), once the
        job is final. Idempotent: nothing left to free is success. Raises TransientError to be retried;
        status_sync calls it after it wrote a final status (never before, never instead), reconcile for
        whatever `held()` still lists."""

    def held(self) -> list[str]:
        """Ids of the jobs the backend still holds such resources for (reconcile releases those whose job
        is final: a release that failed, a launcher that died mid-submit). [] when it holds none."""


@dataclass(frozen=True)
class Observation:
    """What a backend says of a job right now when asked (`Backend.observe`, for reconcile), in the words
    its events use (see shared/domain/events.py): Kubernetes `Pending`/`Running`/`Complete`/`Failed`/
    `Deleted`, Vertex `JOB_STATE_*`, local `running`/`exited`/`lost`. Not to be confused with
    `shared.domain.k8s_observe.ObservedState`: the pure reading of one Kubernetes Job and its pods,
    which the Kubernetes backend turns into an Observation and its watcher publishes as an event."""

    state: str | None
    reason: str | None = None
    message: str | None = None
    exit_code: int | None = None


@dataclass(frozen=True)
class Submission:
    external_id: str
    command: str | None = None
    manifest: dict[str, Any] | None = None
    dry_run: bool = False
    status_reason: str | None = None
