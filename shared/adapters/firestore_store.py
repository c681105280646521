"""Firestore job store: production. Tested against the real emulator.

Layout (collection names carry an optional prefix, so tests and tenants can share a database):
- `jobs/{jobId}`: the job record (`records.to_record`), with `createdAt` a native timestamp.
- `jobs/{jobId}/logs/{firstSeq:012d}`: chunks of consecutive log lines `{first, last, lines: [{t,s,m}]}`,
  so a burst of 10k lines is a handful of document writes and a job with 100k lines costs nothing to list.
- `jobs/{jobId}/events/{seq:012d}`: the timeline.
- `idempotency/{sha256(key)}`: `{jobId, requestHash}` written in the same transaction as the job.

Every state write is a transaction (compare-and-set): Firestore re-runs it if the job changed between
the read and the commit. The composite indexes the list queries need are declared in
`infra/firestore/indexes.json` (the emulator needs none; production does).
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any, Iterable

from google.api_core import exceptions as gexc
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from shared.adapters.records import decode_cursor, encode_cursor, from_record, to_record
from shared.domain.job import Job, LogLine, clip_tail
from shared.errors import Conflict, FieldError, TransientError, ValidationFailed
from shared.ports import IdempotentCreate, JobQuery, LogMutation, Mutation, Page, Rejection, TimelineEvent

LINES_PER_CHUNK = 1000
CHUNK_CHARS = 700_000  # well under Firestore's 1 MiB document limit
MAX_WRITES_PER_TX = 450  # Firestore allows 500 writes per commit

_TRANSIENT = (
    gexc.ServiceUnavailable,
    gexc.DeadlineExceeded,
    gexc.InternalServerError,
    gexc.TooManyRequests,
    gexc.Aborted,
    gexc.Unknown,
    gexc.ResourceExhausted,
)


def _ts_in(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


class FirestoreJobStore:
    kind = "firestore"

    def __init__(self, client: firestore.Client, prefix: str = ""):
        self.client = client
        self.jobs = client.collection(f"{prefix}jobs")
        self.idempotency = client.collection(f"{prefix}idempotency")
        self.rejections = client.collection(f"{prefix}rejections")

    @classmethod
    def from_settings(cls, project: str, database: str, prefix: str = "") -> "FirestoreJobStore":
        return cls(firestore.Client(project=project, database=database), prefix)

    # ---- helpers ---------------------------------------------------------------------------------
    def _wrap(self, exc: Exception) -> Exception:
        if isinstance(exc, _TRANSIENT):
            return TransientError(f"Firestore unavailable: {exc.__class__.__name__}: {exc}")
        return exc

    @staticmethod
    def _job(snapshot: Any) -> Job | None:
        if not snapshot.exists:
            return None
        return from_record(snapshot.to_dict(), _ts_in)

    # ---- jobs ------------------------------------------------------------------------------------
    def create(self, job: Job, idempotency_key: str | None = None) -> IdempotentCreate:
        job = job.replace(version=1)
        ref = self.jobs.document(job.id)
        key_ref = (
            self.idempotency.document(hashlib.sha256(idempotency_key.encode()).hexdigest())
            if idempotency_key is not None
            else None
        )

        @firestore.transactional
        def run(tx: firestore.Transaction) -> IdempotentCreate:
            if key_ref is not None:
                key_snap = key_ref.get(transaction=tx)
                if key_snap.exists:
                    data = key_snap.to_dict()
                    if data.get("requestHash") != job.request_hash:
                        raise Conflict("Idempotency-Key was already used with a different request body")
                    existing = self._job(self.jobs.document(data["jobId"]).get(transaction=tx))
                    if existing is None:  # pragma: no cover - written together
                        raise Conflict("Idempotency-Key refers to a job that no longer exists")
                    return IdempotentCreate(existing, created=False)
            if ref.get(transaction=tx).exists:
                raise Conflict(f"job {job.id} already exists")
            tx.create(ref, to_record(job))
            if key_ref is not None:
                tx.create(key_ref, {"jobId": job.id, "requestHash": job.request_hash or ""})
            return IdempotentCreate(job, created=True)

        try:
            return run(self.client.transaction())
        except gexc.AlreadyExists as exc:
            # Two concurrent creates with one key: the loser reads the winner's result.
            if idempotency_key is not None:
                return self.create(job, idempotency_key)
            raise Conflict(f"job {job.id} already exists") from exc
        except Conflict:
            raise
        except Exception as exc:  # noqa: BLE001
            raise self._wrap(exc) from exc

    def get(self, job_id: str) -> Job | None:
        try:
            return self._job(self.jobs.document(job_id).get())
        except Exception as exc:  # noqa: BLE001
            raise self._wrap(exc) from exc

    def list(self, query: JobQuery) -> Page:
        q: Any = self.jobs
        for field, value in (("status", query.status), ("backend", query.backend), ("name", query.name)):
            if value is not None:
                q = q.where(filter=FieldFilter(field, "==", value))
        if query.label is not None:
            q = q.where(filter=FieldFilter(f"labels.`{query.label[0]}`", "==", query.label[1]))
        q = q.order_by("createdAt", direction=firestore.Query.DESCENDING).order_by(
            "id", direction=firestore.Query.DESCENDING
        )
        if query.cursor:
            try:
                created, last_id = decode_cursor(query.cursor)
            except ValueError:
                raise ValidationFailed([FieldError("cursor", "is not a cursor this service returned")]) from None
            q = q.start_after({"createdAt": created, "id": last_id})
        try:
            snaps = list(q.limit(query.limit + 1).stream())
        except Exception as exc:  # noqa: BLE001
            raise self._wrap(exc) from exc
        jobs = [from_record(s.to_dict(), _ts_in) for s in snaps[: query.limit]]
        next_cursor = encode_cursor(jobs[-1].created_at, jobs[-1].id) if len(snaps) > query.limit else None
        return Page(jobs, next_cursor)

    def update(self, job_id: str, mutate: Mutation) -> Job | None:
        ref = self.jobs.document(job_id)

        @firestore.transactional
        def run(tx: firestore.Transaction) -> Job | None:
            current = self._job(ref.get(transaction=tx))
            if current is None:
                return None
            new = mutate(current)
            if new is None or new == current:
                return current
            new = new.replace(version=current.version + 1)
            tx.set(ref, to_record(new))
            return new

        try:
            return run(self.client.transaction(max_attempts=10))
        except Exception as exc:  # noqa: BLE001
            raise self._wrap(exc) from exc

    # ---- logs and events -------------------------------------------------------------------------
    @staticmethod
    def _chunks(lines: list[LogLine]) -> list[list[LogLine]]:
        chunks: list[list[LogLine]] = []
        current: list[LogLine] = []
        size = 0
        for line in lines:
            cost = len(line.message) + 64
            if current and (len(current) >= LINES_PER_CHUNK or size + cost > CHUNK_CHARS):
                chunks.append(current)
                current, size = [], 0
            current.append(line)
            size += cost
        if current:
            chunks.append(current)
        return chunks

    def append_logs(self, job_id: str, lines: Iterable[LogLine], max_tail_chars: int) -> int:
        lines = list(lines)
        count = 0
        # One transaction per group of chunks keeps each commit under Firestore's write limit.
        group_size = LINES_PER_CHUNK * (MAX_WRITES_PER_TX - 1)
        for start in range(0, max(len(lines), 1), group_size):
            group = lines[start : start + group_size]
            job = self.apply(job_id, lambda current, group=group: (current, group), max_tail_chars)
            count = job.log_count if job is not None else 0
        return count

    def apply(self, job_id: str, decide: LogMutation, max_tail_chars: int) -> Job | None:
        ref = self.jobs.document(job_id)
        logs = ref.collection("logs")

        @firestore.transactional
        def run(tx: firestore.Transaction) -> Job | None:
            current = self._job(ref.get(transaction=tx))
            if current is None:
                return None
            new, lines = decide(current)
            lines = list(lines)
            new = new or current
            if lines:
                first = current.log_count
                numbered = [
                    LogLine(timestamp=l.timestamp, stream=l.stream, message=l.message, seq=first + i + 1)
                    for i, l in enumerate(lines)
                ]
                for chunk in self._chunks(numbered):
                    tx.set(
                        logs.document(f"{chunk[0].seq:012d}"),
                        {
                            "first": chunk[0].seq,
                            "last": chunk[-1].seq,
                            "lines": [{"t": l.timestamp, "s": l.stream, "m": l.message} for l in chunk],
                        },
                    )
                new = new.replace(log_count=first + len(lines), log_tail=clip_tail(current.log_tail, numbered, max_tail_chars))
            if new == current:
                return current
            new = new.replace(version=current.version + 1)
            tx.set(ref, to_record(new))
            return new

        try:
            return run(self.client.transaction(max_attempts=10))
        except Exception as exc:  # noqa: BLE001
            raise self._wrap(exc) from exc

    def get_logs(self, job_id: str, after: int = 0, limit: int = 1000) -> list[LogLine]:
        q = (
            self.jobs.document(job_id)
            .collection("logs")
            .where(filter=FieldFilter("last", ">", after))
            .order_by("last")
        )
        out: list[LogLine] = []
        try:
            for snap in q.stream():
                data = snap.to_dict()
                for i, raw in enumerate(data["lines"]):
                    seq = data["first"] + i
                    if seq <= after:
                        continue
                    out.append(LogLine(seq=seq, timestamp=_ts_in(raw["t"]), stream=raw["s"], message=raw["m"]))
                    if len(out) >= limit:
                        return out
        except Exception as exc:  # noqa: BLE001
            raise self._wrap(exc) from exc
        return out

    def append_event(self, job_id: str, event: TimelineEvent) -> None:
        events = self.jobs.document(job_id).collection("events")

        @firestore.transactional
        def run(tx: firestore.Transaction) -> None:
            last = list(events.order_by("seq", direction=firestore.Query.DESCENDING).limit(1).get(transaction=tx))
            seq = (last[0].to_dict()["seq"] if last else 0) + 1
            tx.create(events.document(f"{seq:012d}"), {"seq": seq, "at": event.at, "kind": event.kind, "data": event.data})

        try:
            run(self.client.transaction(max_attempts=10))
        except Exception as exc:  # noqa: BLE001
            raise self._wrap(exc) from exc

    def list_events(self, job_id: str, after: int = 0, limit: int = 100) -> list[TimelineEvent]:
        q = (
            self.jobs.document(job_id)
            .collection("events")
            .where(filter=FieldFilter("seq", ">", after))
            .order_by("seq")
            .limit(limit)
        )
        try:
            return [
                TimelineEvent(seq=d["seq"], at=_ts_in(d["at"]), kind=d["kind"], data=d.get("data") or {})
                for d in (s.to_dict() for s in q.stream())
            ]
        except Exception as exc:  # noqa: BLE001
            raise self._wrap(exc) from exc

    def find_by_external_key(self, backend: str, key: str) -> Job | None:
        q = self.jobs.where(filter=FieldFilter("externalKey", "==", key)).limit(5)
        try:
            for snap in q.stream():
                job = from_record(snap.to_dict(), _ts_in)
                if job.backend.value == backend:
                    return job
        except Exception as exc:  # noqa: BLE001
            raise self._wrap(exc) from exc
        return None

    def record_rejection(self, rejection: Rejection) -> bool:
        ref = self.rejections.document(hashlib.sha256(rejection.key.encode()).hexdigest())
        try:
            ref.create(
                {
                    "key": rejection.key,
                    "batchId": rejection.batch_id,
                    "index": rejection.index,
                    "error": rejection.error,
                    "errors": rejection.errors,
                    "at": rejection.at,
                    "messageId": rejection.message_id,
                }
            )
            return True
        except gexc.AlreadyExists:
            return False
        except Exception as exc:  # noqa: BLE001
            raise self._wrap(exc) from exc

    def list_rejections(self, batch_id: str, limit: int = 1000) -> list[Rejection]:
        # Equality only (a single-field index); ordered here, so no composite index is needed.
        q = self.rejections.where(filter=FieldFilter("batchId", "==", batch_id)).limit(limit)
        try:
            docs = [s.to_dict() for s in q.stream()]
        except Exception as exc:  # noqa: BLE001
            raise self._wrap(exc) from exc
        out = [
            Rejection(key=d["key"], batch_id=d["batchId"], index=d["index"], error=d["error"], errors=d.get("errors") or [], at=_ts_in(d["at"]), message_id=d.get("messageId", ""))
            for d in docs
        ]
        return sorted(out, key=lambda r: (r.index, r.key))

    def ping(self) -> None:
        try:
            self.jobs.limit(1).get(timeout=5)
        except Exception as exc:  # noqa: BLE001
            raise self._wrap(exc) from exc

