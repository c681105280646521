"""SQLite job store: the embedded default. WAL, one connection per thread, survives restarts.

Compare-and-set, optimistic: a state write reads the row, applies the pure mutation and writes with
`WHERE version = ?` (one statement, or one `BEGIN IMMEDIATE` transaction with the job's log lines and
events); a write that lost the race reads again. Mutations may therefore run more than once (as in a
Firestore transaction): they are pure. Writers in this process take turns on a lock held only for the
write itself. What is written is planned as in the Firestore store (`store_common.py`).

This module is the jobs, their log lines, metric points and timeline; the tables are in
`sqlite_schema.py`, the connections, transactions and the wrapping of storage failures into
`StoreUnavailable` (from every public method) in `sqlite_connection.py`, the outbox, delivery channels,
attempts and rejections in `sqlite_outbox.py`. `ping` is a real committed write (the health check).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from shared import jsonutil
from shared.adapters.records import encode_cursor, from_record, to_record
from shared.adapters.sqlite_connection import store_errors
from shared.adapters.sqlite_outbox import SqliteOutbox
from shared.adapters.sqlite_schema import ts_in, ts_out
from shared.adapters.store_common import PlannedWrites, parse_cursor, plan_create, plan_write, written
from shared.domain.job import Job, LogLine
from shared.domain.lifecycle import Plan, TimelineEvent
from shared.domain.metrics import MetricPoint, metric_points
from shared.errors import Conflict, StoreUnavailable, TransientError
from shared.ports import IdempotentCreate, JobQuery, LogMutation, Mutation, Page

# A write that loses a compare-and-set race re-reads and tries again, this many times in all.
CAS_ATTEMPTS = 100


class _LostRace(Exception):
    pass


# A job's row: (id, created_at, status, backend, name, version, doc, external_key).
Row = tuple[str, str, str, str, str, int, str, str | None]


class SqliteJobStore(SqliteOutbox, PlannedWrites):
    kind = "sqlite"

    # ---- jobs ------------------------------------------------------------------------------------
    INSERT = "INSERT INTO jobs (id, created_at, status, backend, name, version, doc, external_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"

    # Compare-and-set of one job's row: written only if its version is still the one read.
    CAS_UPDATE = "UPDATE jobs SET status = ?, name = ?, version = ?, doc = ?, external_key = ? WHERE id = ? AND version = ?"

    @staticmethod
    def _cas_params(row: Row, job_id: str, expected_version: int) -> tuple[Any, ...]:
        """CAS_UPDATE's parameters for a `_row` tuple (id, created_at, status, backend, name, version, doc,
        external_key) written over the row of `job_id`."""
        return (row[2], row[4], row[5], row[6], row[7], job_id, expected_version)

    @staticmethod
    def _row(job: Job) -> Row:
        rec = to_record(job, ts_out)
        doc = jsonutil.dumps(rec).decode()
        return (job.id, rec["createdAt"], job.status.value, job.backend.value, job.name, job.version, doc, rec["externalKey"])

    @store_errors
    def create(self, job: Job, idempotency_key: str | None = None) -> IdempotentCreate:
        outcome = self.create_many([(job, idempotency_key)])[0]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    @store_errors
    def create_many(self, items: Sequence[tuple[Job, str | None]]) -> list[IdempotentCreate | Exception]:
        """Group commit: every new job (and its idempotency key) in one transaction, rows written with
        `executemany`. Each SQLite commit rewrites every page it touched (a job row touches ~7 B-trees), so
        fifty jobs in one commit cost a fraction of fifty commits. Keys repeated inside the batch behave as
        if the items had come one after another."""
        if not items:
            return []
        out: list[IdempotentCreate | Exception] = []
        try:
            with self._tx() as db:
                known: dict[str, tuple[str, str]] = {}
                keys = list(dict.fromkeys(k for _, k in items if k is not None))
                for start in range(0, len(keys), 500):
                    chunk = keys[start : start + 500]
                    sql = f"SELECT key, job_id, request_hash FROM idempotency WHERE key IN ({','.join('?' * len(chunk))})"
                    for key, job_id, request_hash in db.execute(sql, chunk):
                        known[key] = (job_id, request_hash)
                new_jobs: dict[str, Job] = {}
                job_rows: list[Row] = []
                created: list[Plan] = []
                key_rows: list[tuple[str, str, str]] = []
                for job, key in items:
                    if key is not None and key in known:
                        first_id, request_hash = known[key]
                        if request_hash != (job.request_hash or ""):
                            out.append(Conflict("Idempotency-Key was already used with a different request body"))
                            continue
                        existing = new_jobs.get(first_id) or self._get(db, first_id)
                        if existing is None:  # pragma: no cover - both rows are written in one transaction
                            out.append(Conflict("Idempotency-Key refers to a job that no longer exists"))
                        else:
                            out.append(IdempotentCreate(existing, created=False))
                        continue
                    planned = plan_create(job)
                    job = written(planned)
                    created.append(planned)
                    new_jobs[job.id] = job
                    job_rows.append(self._row(job))
                    if key is not None:
                        known[key] = (job.id, job.request_hash or "")
                        key_rows.append((key, job.id, job.request_hash or ""))
                    out.append(IdempotentCreate(job, created=True))
                db.executemany(self.INSERT, job_rows)
                self._insert_side_rows(db, created)
                if key_rows:
                    db.executemany("INSERT INTO idempotency VALUES (?, ?, ?)", key_rows)
        except sqlite3.IntegrityError:
            # A job id that already exists (or repeats in the batch): nothing was committed; one at a
            # time, so only that item gets its Conflict.
            if len(items) == 1:
                return [Conflict(f"job {items[0][0].id} already exists")]
            return [self._create_one(item) for item in items]
        return out

    def _create_one(self, item: tuple[Job, str | None]) -> IdempotentCreate | Exception:
        # One at a time, some items may be committed before the disk fills: each item gets its own
        # outcome, so a stored job is never reported as not stored.
        try:
            return self.create_many([item])[0]
        except StoreUnavailable as exc:
            return exc

    @staticmethod
    def _get(db: sqlite3.Connection, job_id: str) -> Job | None:
        row = db.execute("SELECT doc FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return None if row is None else from_record(jsonutil.loads(row[0]), ts_in)

    @store_errors
    def get(self, job_id: str) -> Job | None:
        return self._get(self._conn(), job_id)

    @store_errors
    def update_many(self, mutations: Mapping[str, Mutation], *, known: Mapping[str, Job] | None = None) -> dict[str, Job | None]:
        """`update` for several jobs: one read of them all (none for those in `known`, taken as current)
        and one `executemany` for every write, in one transaction; if any write lost its race (a job
        changed since it was read or known) the transaction is rolled back and each job goes through
        `update` on its own."""
        if len(mutations) <= 1 and not known:
            return {job_id: self.update(job_id, mutate) for job_id, mutate in mutations.items()}
        conn = self._conn()
        ids = list(mutations)
        found: dict[str, Job] = {job_id: known[job_id] for job_id in ids if known and job_id in known}
        unread = [job_id for job_id in ids if job_id not in found]
        for start in range(0, len(unread), 500):  # SQLite's bound-parameter limit
            chunk = unread[start : start + 500]
            rows = conn.execute(f"SELECT doc FROM jobs WHERE id IN ({','.join('?' * len(chunk))})", chunk).fetchall()
            for (doc,) in rows:
                job = from_record(jsonutil.loads(doc), ts_in)
                found[job.id] = job
        out: dict[str, Job | None] = {}
        writes: list[tuple[str, Job, Plan, Row]] = []
        for job_id in ids:
            current = found.get(job_id)
            if current is None:
                out[job_id] = None
                continue
            planned = plan_write(current, mutations[job_id])
            if planned is None:
                out[job_id] = current
                continue
            writes.append((job_id, current, planned, self._row(written(planned))))
        # A `known` job left alone was judged on what the caller had: only right if it is still current.
        unchecked = [job_id for job_id in ids if known and job_id in known and out.get(job_id) is known[job_id]]
        if unchecked:
            rows = conn.execute(f"SELECT id, version FROM jobs WHERE id IN ({','.join('?' * len(unchecked))})", unchecked).fetchall()
            versions = dict(rows)
            for job_id in unchecked:
                if known is not None and versions.get(job_id) != known[job_id].version:
                    out[job_id] = self.update(job_id, mutations[job_id])
        if writes:
            try:
                with self._tx() as db:
                    cur = db.executemany(self.CAS_UPDATE, [self._cas_params(row, job_id, current.version) for job_id, current, _, row in writes])
                    if cur.rowcount != len(writes):
                        raise _LostRace  # someone wrote one of them meanwhile: nothing of this batch is kept
                    self._insert_side_rows(db, [planned for _, _, planned, _ in writes])
                for job_id, _, planned, _ in writes:
                    out[job_id] = written(planned)
            except _LostRace:
                for job_id, _, _, _ in writes:
                    out[job_id] = self.update(job_id, mutations[job_id])
        return {job_id: out[job_id] for job_id in ids}

    # ---- logs and events -------------------------------------------------------------------------
    @store_errors
    def append_logs(self, job_id: str, lines: Iterable[LogLine], max_tail_chars: int) -> int:
        lines = list(lines)
        job = self.apply(job_id, lambda current: (current, lines), max_tail_chars)
        return job.log_count if job is not None else 0

    @store_errors
    def apply(self, job_id: str, decide: LogMutation, max_tail_chars: int) -> Job | None:
        """The one write of a job (`update` and `append_event` are this too): read it, decide, plan the
        change (`store_common.plan_write`: numbered lines and timeline entries, outbox rows), then write
        the job with `WHERE version = ?` and the rest in the same transaction; a lost race rolls back and
        decides again. A plain change of the job alone is one statement. The write lock is held for the
        write only, so no thread waits while another decodes, mutates and encodes a job."""
        conn = self._conn()
        for _ in range(CAS_ATTEMPTS):
            current = self._get(conn, job_id)
            if current is None:
                return None
            planned = plan_write(current, decide, max_tail_chars)
            if planned is None:
                return current
            new = written(planned)
            params = self._cas_params(self._row(new), job_id, current.version)
            try:
                if not (planned.lines or planned.timeline):
                    with self._write_lock:
                        if conn.execute(self.CAS_UPDATE, params).rowcount != 1:
                            raise _LostRace
                else:
                    with self._tx() as db:
                        if db.execute(self.CAS_UPDATE, params).rowcount != 1:
                            raise _LostRace
                        self._insert_side_rows(db, [planned])
            except _LostRace:
                continue
            return new
        raise TransientError(f"job {job_id} kept changing: {CAS_ATTEMPTS} compare-and-set attempts lost")

    def _insert_side_rows(self, db: sqlite3.Connection, planned: Sequence[Plan]) -> None:
        """What a plan appends beside the job: log lines, their metric points, timeline entries and the
        outbox rows of its notifications."""
        log_rows: list[tuple[str, int, str, str, str]] = []
        metric_rows: list[tuple[str, int, str]] = []
        event_rows: list[tuple[str, int, str, str, str]] = []
        note_rows: list[tuple[str, int, str, str, int]] = []
        for p in planned:
            job_id = written(p).id
            log_rows += [(job_id, l.seq, ts_out(l.timestamp), l.stream, l.message) for l in p.lines]
            metric_rows += [(job_id, m.seq, jsonutil.dumps(m.to_api()).decode()) for m in metric_points(p.lines)]
            event_rows += [(job_id, e.seq, ts_out(e.at), e.kind, json.dumps(e.data, sort_keys=True)) for e in p.timeline]
            note_rows += [(job_id, n.seq, n.id, jsonutil.dumps(n.to_doc()).decode(), 0) for n in p.notifications]
        if log_rows:
            db.executemany("INSERT INTO logs VALUES (?, ?, ?, ?, ?)", log_rows)
        if metric_rows:
            db.executemany("INSERT INTO metrics VALUES (?, ?, ?)", metric_rows)
        if event_rows:
            db.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?)", event_rows)
        if note_rows:
            db.executemany("INSERT INTO notifications VALUES (?, ?, ?, ?, ?)", note_rows)
            self._announce()

    @store_errors
    def get_logs(self, job_id: str, after: int = 0, limit: int = 1000) -> list[LogLine]:
        rows = (
            self._conn()
            .execute(
                "SELECT seq, ts, stream, message FROM logs WHERE job_id = ? AND seq > ? ORDER BY seq LIMIT ?",
                (job_id, after, limit),
            )
            .fetchall()
        )
        return [LogLine(seq=r[0], timestamp=ts_in(r[1]), stream=r[2], message=r[3]) for r in rows]

    @store_errors
    def get_metrics(self, job_id: str, after: int = 0, limit: int = 1000) -> list[MetricPoint]:
        rows = self._conn().execute("SELECT doc FROM metrics WHERE job_id = ? AND seq > ? ORDER BY seq LIMIT ?", (job_id, after, limit)).fetchall()
        return [MetricPoint.from_api(jsonutil.loads(r[0])) for r in rows]

    @store_errors
    def list_events(self, job_id: str, after: int = 0, limit: int = 100) -> list[TimelineEvent]:
        rows = (
            self._conn()
            .execute(
                "SELECT seq, at, kind, data FROM events WHERE job_id = ? AND seq > ? ORDER BY seq LIMIT ?",
                (job_id, after, limit),
            )
            .fetchall()
        )
        return [TimelineEvent(seq=r[0], at=ts_in(r[1]), kind=r[2], data=json.loads(r[3])) for r in rows]

    @store_errors
    def find_by_external_key(self, backend: str, key: str) -> Job | None:
        row = self._conn().execute("SELECT doc FROM jobs WHERE backend = ? AND external_key = ? LIMIT 1", (backend, key)).fetchone()
        return None if row is None else from_record(jsonutil.loads(row[0]), ts_in)

    # Last in the class: below it, `list` in an annotation would name this method, not the builtin.
    @store_errors
    def list(self, query: JobQuery) -> Page:
        where: list[str] = []
        params: list[Any] = []
        for column, value in (("status", query.status), ("backend", query.backend), ("name", query.name)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if query.cursor:
            created, last_id = parse_cursor(query.cursor)
            where.append("(created_at < ? OR (created_at = ? AND id < ?))")
            params += [ts_out(created), ts_out(created), last_id]
        if query.label is not None:
            where.append("json_extract(doc, '$.labels.' || ?) = ?")
            params += [json.dumps(query.label[0]), query.label[1]]
        sql = "SELECT doc FROM jobs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_at DESC, id DESC LIMIT ?"
        params.append(query.limit + 1)
        rows = self._conn().execute(sql, params).fetchall()
        jobs = [from_record(jsonutil.loads(r[0]), ts_in) for r in rows[: query.limit]]
        next_cursor = encode_cursor(jobs[-1].created_at, jobs[-1].id) if len(rows) > query.limit else None
        return Page(jobs, next_cursor)
