"""Firestore job store: production. Tested against the real emulator.

Layout (collection names carry an optional prefix, so tests and tenants can share a database):
- `jobs/{jobId}`: the job record (`records.to_record`), with `createdAt` a native timestamp.
- `jobs/{jobId}/logs/{firstSeq:012d}`: chunks of consecutive log lines `{first, last, count, data}` (data:
  the lines as one JSON string of `[timestamp, stream, message]`),
  so a burst of 10k lines is a handful of document writes and a job with 100k lines costs nothing to list.
- `jobs/{jobId}/events/{seq:012d}`: the timeline.
- `jobs/{jobId}/metrics/{firstSeq:012d}`: chunks of the job's metric points (its `PROGRESS` lines, seq =
  the line's), written in the commit that appends their lines.
- `idempotency/{sha256(key)}`: `{jobId, requestHash}` written in the same transaction as the job.
The outbox, delivery channels, attempts and rejections, and the wrapping of Firestore's errors into ours,
are in `firestore_outbox.py`; what is written is planned as in the SQLite store (`store_common.py`).

Every state write is a compare-and-set: the job document is written with the precondition that its
update time is still the one the decision was based on (creates and idempotency keys use transactions).
The composite indexes the list queries need are declared in `infra/firestore/indexes.json` (the emulator
needs none; production does).
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from shared.adapters.firestore_outbox import CACHE_SIZE, MAX_WRITES_PER_TX, FirestoreOutbox, doc_of, ts_in
from shared.adapters.records import encode_cursor, from_record, to_record
from shared.adapters.store_common import PlannedWrites, parse_cursor, plan_create, plan_write, written
from shared.domain.job import Job, LogLine, iso
from shared.domain.lifecycle import Plan, TimelineEvent
from shared.domain.metrics import MetricPoint, metric_points
from shared.errors import Conflict, TransientError
from shared.ports import IdempotentCreate, JobQuery, LogMutation, Mutation, Page

LINES_PER_CHUNK = 1000
CHUNK_CHARS = 700_000  # well under Firestore's 1 MiB document limit
MAX_CAS_ATTEMPTS = 20


def _chunk_doc(chunk: list[LogLine]) -> dict[str, Any]:
    """A chunk of consecutive lines. The lines travel as one JSON string: encoding hundreds of small
    Firestore maps costs far more client CPU than one string, and nothing queries inside a chunk."""
    return {
        "first": chunk[0].seq,
        "last": chunk[-1].seq,
        "count": len(chunk),
        "data": json.dumps([[iso(l.timestamp), l.stream, l.message] for l in chunk], ensure_ascii=False, separators=(",", ":")),
    }


def _metric_chunk_doc(points: list[MetricPoint]) -> dict[str, Any]:
    """Consecutive metric points, as one JSON string like the log chunks."""
    return {
        "first": points[0].seq,
        "last": points[-1].seq,
        "count": len(points),
        "data": json.dumps([p.to_api() for p in points], separators=(",", ":")),
    }


class FirestoreJobStore(FirestoreOutbox, PlannedWrites):
    kind = "firestore"

    def __init__(self, client: firestore.Client, prefix: str = ""):
        super().__init__(client, prefix)
        self._cache: OrderedDict[str, tuple[Job, Any]] = OrderedDict()

    @classmethod
    def from_settings(cls, project: str, database: str, prefix: str = "") -> FirestoreJobStore:
        return cls(firestore.Client(project=project, database=database), prefix)

    # ---- helpers ---------------------------------------------------------------------------------
    @staticmethod
    def _job(snapshot: Any) -> Job | None:
        if not snapshot.exists:
            return None
        return from_record(doc_of(snapshot), ts_in)

    # ---- jobs ------------------------------------------------------------------------------------
    def create(self, job: Job, idempotency_key: str | None = None) -> IdempotentCreate:
        planned = plan_create(job)
        job = written(planned)
        ref = self.jobs.document(job.id)
        key_ref = self.idempotency.document(hashlib.sha256(idempotency_key.encode()).hexdigest()) if idempotency_key is not None else None

        @firestore.transactional
        def run(tx: firestore.Transaction) -> IdempotentCreate:
            if key_ref is not None:
                key_snap = key_ref.get(transaction=tx)
                if key_snap.exists:
                    data = doc_of(key_snap)
                    if data.get("requestHash") != (job.request_hash or ""):  # stored as "" when there is none
                        raise Conflict("Idempotency-Key was already used with a different request body")
                    existing = self._job(self.jobs.document(data["jobId"]).get(transaction=tx))
                    if existing is None:  # pragma: no cover - written together
                        raise Conflict("Idempotency-Key refers to a job that no longer exists")
                    return IdempotentCreate(existing, created=False)
            if ref.get(transaction=tx).exists:
                raise Conflict(f"job {job.id} already exists")
            tx.create(ref, to_record(job))
            self._side_writes(tx, ref, planned)
            if key_ref is not None:
                tx.create(key_ref, {"jobId": job.id, "requestHash": job.request_hash or ""})
            return IdempotentCreate(job, created=True)

        try:
            outcome: IdempotentCreate = run(self.client.transaction())
            return outcome
        except gexc.AlreadyExists as exc:
            # Two concurrent creates with one key: the loser reads the winner's result.
            if idempotency_key is not None:
                return self.create(job, idempotency_key)
            raise Conflict(f"job {job.id} already exists") from exc
        except Conflict:
            raise
        except Exception as exc:  # noqa: BLE001
            raise self._wrap(exc) from exc

    def create_many(self, items: Sequence[tuple[Job, str | None]]) -> list[IdempotentCreate | Exception]:
        out: list[IdempotentCreate | Exception] = []
        for job, key in items:
            try:
                out.append(self.create(job, key))
            except (Conflict, TransientError) as exc:
                out.append(exc)
        return out

    def get(self, job_id: str) -> Job | None:
        try:
            snap = self.jobs.document(job_id).get()
        except Exception as exc:  # noqa: BLE001
            raise self._wrap(exc) from exc
        job = self._job(snap)
        if job is not None:
            self._cache_put(job_id, job, snap.update_time)
        return job

    def update_many(self, mutations: Mapping[str, Mutation], *, known: Mapping[str, Job] | None = None) -> dict[str, Job | None]:
        # Each job is its own precondition-guarded commit (this store's cache already spares the re-read
        # of a job it wrote); the deployed launcher gets one message a call.
        return {job_id: self.update(job_id, mutate) for job_id, mutate in mutations.items()}

    # ---- logs and events -------------------------------------------------------------------------
    @staticmethod
    def _chunks(lines: list[LogLine]) -> list[list[LogLine]]:
        chunks: list[list[LogLine]] = []
        current: list[LogLine] = []
        size = 0
        for line in lines:
            cost = len(json.dumps(line.message, ensure_ascii=False).encode()) + 48  # bytes as stored
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
        # One transaction per group of chunks keeps each commit under Firestore's write limit: a group's
        # lines take at most as many metric chunks as log chunks, and one write is the job's.
        group_size = LINES_PER_CHUNK * ((MAX_WRITES_PER_TX - 1) // 2)
        for start in range(0, max(len(lines), 1), group_size):
            group = lines[start : start + group_size]

            def append(current: Job, group: list[LogLine] = group) -> tuple[Job, list[LogLine]]:
                return current, group

            job = self.apply(job_id, append, max_tail_chars)
            count = job.log_count if job is not None else 0
        return count

    def apply(self, job_id: str, decide: LogMutation, max_tail_chars: int) -> Job | None:
        """Compare-and-set on the document's update time: decide on the job as last read (cached from
        this store's own reads and writes, so a single writer needs one round trip), then commit the job
        and its log chunks in one batch with the precondition `last_update_time`. If someone else wrote
        in between, the precondition fails: re-read and decide again."""
        ref = self.jobs.document(job_id)
        for attempt in range(MAX_CAS_ATTEMPTS):
            cached = self._cache_get(job_id) if attempt == 0 else None
            try:
                if cached is None:
                    snap = ref.get()
                    current = self._job(snap)
                    if current is None:
                        return None
                    cached = (current, snap.update_time)
                    self._cache_put(job_id, *cached)
                current, update_time = cached
                planned = plan_write(current, decide, max_tail_chars)
                if planned is None:
                    return current
                new = written(planned)
                batch = self.client.batch()
                self._side_writes(batch, ref, planned)
                batch.update(ref, to_record(new), option=self.client.write_option(last_update_time=update_time))
                results = batch.commit()
                self._cache_put(job_id, new, results[-1].update_time)
                return new
            except (gexc.FailedPrecondition, gexc.Aborted, gexc.NotFound):
                self._cache_drop(job_id)  # someone else wrote: read again and decide again
                continue
            except Exception as exc:  # noqa: BLE001
                self._cache_drop(job_id)
                raise self._wrap(exc) from exc
        raise TransientError(f"job {job_id}: too much contention ({MAX_CAS_ATTEMPTS} attempts)")

    def _side_writes(self, writer: Any, ref: Any, planned: Plan) -> None:
        """What a plan appends beside the job (batch or transaction): log chunks, metric chunks, timeline
        entries, notifications and their outbox entries."""
        for e in planned.timeline:
            writer.set(ref.collection("events").document(f"{e.seq:012d}"), {"seq": e.seq, "at": e.at, "kind": e.kind, "data": e.data})
        if planned.lines:
            numbered = list(planned.lines)
            for chunk in self._chunks(numbered):
                writer.set(ref.collection("logs").document(f"{chunk[0].seq:012d}"), _chunk_doc(chunk))
            points = metric_points(numbered)
            for start in range(0, len(points), LINES_PER_CHUNK):  # never more chunks than the lines'
                part = points[start : start + LINES_PER_CHUNK]
                writer.set(ref.collection("metrics").document(f"{part[0].seq:012d}"), _metric_chunk_doc(part))
        for n in planned.notifications:
            doc = {"jobId": n.job_id, "seq": n.seq, "doc": json.dumps(n.to_doc(), separators=(",", ":"))}
            writer.set(ref.collection("notifications").document(f"{n.seq:012d}"), doc)
            writer.set(self.outbox.document(n.id), {**doc, "at": n.at})

    # ---- the last version this store saw of each job (compare-and-set base) ----------------------
    def _cache_get(self, job_id: str) -> tuple[Job, Any] | None:
        with self._cache_lock:
            return self._cache.get(job_id)

    def _cache_put(self, job_id: str, job: Job, update_time: Any) -> None:
        with self._cache_lock:
            self._cache[job_id] = (job, update_time)
            self._cache.move_to_end(job_id)
            while len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)

    def _cache_drop(self, job_id: str) -> None:
        with self._cache_lock:
            self._cache.pop(job_id, None)

    def get_logs(self, job_id: str, after: int = 0, limit: int = 1000) -> list[LogLine]:
        q = self.jobs.document(job_id).collection("logs").where(filter=FieldFilter("last", ">", after)).order_by("last")
        out: list[LogLine] = []
        try:
            for snap in q.stream():
                data = doc_of(snap)
                for i, (ts, stream, message) in enumerate(json.loads(data["data"])):
                    seq = data["first"] + i
                    if seq <= after:
                        continue
                    out.append(LogLine(seq=seq, timestamp=ts_in(ts), stream=stream, message=message))
                    if len(out) >= limit:
                        return out
        except Exception as exc:  # noqa: BLE001
            raise self._wrap(exc) from exc
        return out

    def get_metrics(self, job_id: str, after: int = 0, limit: int = 1000) -> list[MetricPoint]:
        q = self.jobs.document(job_id).collection("metrics").where(filter=FieldFilter("last", ">", after)).order_by("last")
        out: list[MetricPoint] = []
        try:
            for snap in q.stream():
                for doc in json.loads(doc_of(snap)["data"]):
                    if doc["seq"] > after:
                        out.append(MetricPoint.from_api(doc))
                        if len(out) >= limit:
                            return out
        except Exception as exc:  # noqa: BLE001
            raise self._wrap(exc) from exc
        return out

    def list_events(self, job_id: str, after: int = 0, limit: int = 100) -> list[TimelineEvent]:
        q = self.jobs.document(job_id).collection("events").where(filter=FieldFilter("seq", ">", after)).order_by("seq").limit(limit)
        try:
            return [TimelineEvent(seq=d["seq"], at=ts_in(d["at"]), kind=d["kind"], data=d.get("data") or {}) for d in (doc_of(s) for s in q.stream())]
        except Exception as exc:  # noqa: BLE001
            raise self._wrap(exc) from exc

    def find_by_external_key(self, backend: str, key: str) -> Job | None:
        q = self.jobs.where(filter=FieldFilter("externalKey", "==", key)).limit(5)
        try:
            for snap in q.stream():
                job = from_record(doc_of(snap), ts_in)
                if job.backend.value == backend:
                    return job
        except Exception as exc:  # noqa: BLE001
            raise self._wrap(exc) from exc
        return None

    def ping(self) -> None:
        try:
            self.jobs.limit(1).get(timeout=5)
        except Exception as exc:  # noqa: BLE001
            raise self._wrap(exc) from exc

    # Last in the class: below it, `list` in an annotation would name this method, not the builtin.
    def list(self, query: JobQuery) -> Page:
        q: Any = self.jobs
        for field, value in (("status", query.status), ("backend", query.backend), ("name", query.name)):
            if value is not None:
                q = q.where(filter=FieldFilter(field, "==", value))
        if query.label is not None:
            q = q.where(filter=FieldFilter(f"labels.`{query.label[0]}`", "==", query.label[1]))
        q = q.order_by("createdAt", direction=firestore.Query.DESCENDING).order_by("id", direction=firestore.Query.DESCENDING)
        if query.cursor:
            created, last_id = parse_cursor(query.cursor)
            q = q.start_after({"createdAt": created, "id": last_id})
        try:
            snaps = list(q.limit(query.limit + 1).stream())
        except Exception as exc:  # noqa: BLE001
            raise self._wrap(exc) from exc
        jobs = [from_record(doc_of(s), ts_in) for s in snaps[: query.limit]]
        next_cursor = encode_cursor(jobs[-1].created_at, jobs[-1].id) if len(snaps) > query.limit else None
        return Page(jobs, next_cursor)
