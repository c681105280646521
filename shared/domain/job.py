"""The job: a frozen domain object, its summary (`JobSummary`: the studio's camelCase shape, defined once
for the api's answers, the OpenAPI document and the client) and its log lines.

Adapters translate between this object and their stored shape (`shared/adapters/*_store.py`); nothing
here knows how a job is stored.
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from shared.domain.backend_kind import BackendKind
from shared.domain.callback import Callback
from shared.domain.resources import Resources
from shared.domain.status import FailureClass, JobStatus

REDACTED = "[redacted]"


def iso(ts: datetime | None) -> str | None:
    if ts is None:
        return None
    return ts.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


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
    backend: BackendKind
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

    def replace(self, **changes: Any) -> Job:
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
        """The status can never change again (`JobStatus.is_terminal`): what guards writes and releases."""
        return self.status.is_terminal()

    def is_final(self) -> bool:
        """Nothing more will happen: a terminal status, or a dry run that stopped at `submitted` (not a
        terminal status: the table would let it move, but nothing will move it). What readers wait for
        (follow, the client) and what makes a cancel a 409."""
        return self.status.is_terminal() or (self.dry_run and self.status is JobStatus.SUBMITTED)

    def to_summary(self) -> dict[str, Any]:
        """The studio's job shape (`JobSummary` below: the old service's camelCase keys plus ours). No logs."""
        return _summary(self.__dict__)


_JOB_FIELDS = frozenset(f.name for f in dataclasses.fields(Job))


def _without_query(url: str) -> str:
    # A receiver's URL may carry a token in its query string (or fragment): never shown.
    return url.split("?", 1)[0].split("#", 1)[0]


def _value(member: Any) -> Any:
    return None if member is None else member.value


_enum_value = operator.attrgetter("value")  # C speed: the summary builds a few per job


def _dataset_files(args: tuple[str, ...], dataset_file: str) -> list[str]:
    # Every source when a job has several (`datasetFile` keeps the old shape: the first one).
    return [a.split("=", 1)[1] for a in args if a.startswith("--dataset_file=")] or [dataset_file]


class From:
    """Where a `JobSummary` field's value comes from: `Job` attributes, as they are or converted.
    Ignored by pydantic (unknown `Annotated` metadata); read by `to_summary`'s plan."""

    __slots__ = ("attrs", "convert")

    def __init__(self, *attrs: str, convert: Callable[..., Any] | None = None):
        self.attrs = attrs
        self.convert = convert

    def expression(self, convert_name: str) -> str:
        """This source as a Python expression over `d` (a job's `__dict__`); the converter is `convert_name`."""
        reads = ", ".join(f"d[{a!r}]" for a in self.attrs)
        return reads if self.convert is None else f"{convert_name}({reads})"


class JobSummary(BaseModel):
    """The job as the api answers it: the one definition of `Job.to_summary()` (each field's `From`),
    of the OpenAPI `Job` schema and of the client's model. A new field is one line here."""

    model_config = ConfigDict(title="Job")
    id: Annotated[str, From("id")]
    name: Annotated[str, From("name")]
    backend: Annotated[BackendKind, From("backend", convert=str)]
    externalId: Annotated[str | None, From("external_id")]
    status: Annotated[JobStatus, From("status", convert=_enum_value)]
    statusReason: Annotated[str | None, From("status_reason")]
    failureClass: Annotated[FailureClass | None, From("failure_class", convert=_value)]
    createdAt: Annotated[str, From("created_at", convert=iso)]
    updatedAt: Annotated[str, From("updated_at", convert=iso)]
    startedAt: Annotated[str | None, From("started_at", convert=iso)]
    finishedAt: Annotated[str | None, From("finished_at", convert=iso)]
    exitCode: Annotated[int | None, From("exit_code")]
    command: Annotated[str | None, From("command")]
    args: Annotated[list[str], From("args", convert=list)]
    modelId: Annotated[str | None, From("model_id")]
    outputDir: Annotated[str, From("output_dir")]
    datasetFile: Annotated[str, From("dataset_file"), Field(description="The (first) dataset source.")]
    datasetFiles: Annotated[
        list[str], From("args", "dataset_file", convert=_dataset_files), Field(default_factory=list, description="Every dataset source, in order.")
    ]
    uploadOutputTo: Annotated[str | None, From("upload_output_to")]
    env: Annotated[
        dict[str, str],
        From("env_names", convert=lambda names: {name: REDACTED for name in names}),
        Field(description="Names of the secret variables; values are always redacted."),
    ]
    labels: Annotated[dict[str, str], From("labels", convert=dict)]
    webhooks: Annotated[
        list[str],
        From("webhooks", convert=lambda urls: [_without_query(u) for u in urls]),
        Field(default_factory=list, description="The job's own webhook URLs (without their query strings)."),
    ]
    resources: Annotated[
        dict[str, Any],
        From("resources", convert=Resources.to_dict),
        Field(
            default_factory=dict,
            description="What the request's `resources` asked for (gpus, gpu_type, nodes, cpus, memory_gb, max_duration_minutes); unset: the settings.",
        ),
    ]
    callback: Annotated[
        dict[str, str] | None,
        From("callback", convert=lambda c: {"kind": c.kind, "url": _without_query(c.url)} if c else None),
        Field(None, description="The studio's status callback: {kind, url} (without its query string; never its Authorization, sealed or not)."),
    ]
    error: Annotated[str | None, From("error")]
    logTail: Annotated[str, From("log_tail")]
    logCount: Annotated[int, From("log_count")]
    progress: Annotated[dict[str, Any] | None, From("progress")]
    dryRun: Annotated[bool, From("dry_run")]
    cancelRequested: Annotated[bool, From("cancel_requested")]


def _compile_summary() -> Callable[[dict[str, Any]], dict[str, Any]]:
    """`to_summary`'s builder, compiled once from `JobSummary`'s fields into one dict display (as
    `dataclasses` compiles `__init__`): `GET /jobs` builds up to 500 summaries, and a call per field (or a
    `model_dump`) would double the cost of each."""
    namespace: dict[str, Any] = {}
    items = []
    for i, (key, info) in enumerate(JobSummary.model_fields.items()):
        (source,) = [m for m in info.metadata if isinstance(m, From)]  # every field says where it comes from
        unknown = set(source.attrs) - _JOB_FIELDS
        if unknown:
            raise TypeError(f"JobSummary.{key} reads unknown Job field(s) {', '.join(sorted(unknown))}")
        namespace[f"_c{i}"] = source.convert
        items.append(f"{key!r}: {source.expression(f'_c{i}')}")
    exec(f"def summary(d):\n    return {{{', '.join(items)}}}\n", namespace)  # only our own field names reach it
    summary: Callable[[dict[str, Any]], dict[str, Any]] = namespace["summary"]
    return summary


_summary = _compile_summary()


def clip_tail(tail: str, lines: list[LogLine] | tuple[LogLine, ...], max_chars: int) -> str:
    """Append lines to a rolling tail and keep its last `max_chars` characters."""
    if lines:
        tail = tail + "".join(f"{line.message}\n" for line in lines)
    if max_chars >= 0 and len(tail) > max_chars:
        tail = tail[len(tail) - max_chars :]
    return tail
