"""SQLite job store: the embedded default. WAL, one connection per thread, survives restarts.

Compare-and-set, optimistic: a state write reads the row, applies the pure mutation and writes with
`WHERE version = ?` (one statement, or one `BEGIN IMMEDIATE` transaction with the job's log lines and
events); a write that lost the race reads again. Mutations may therefore run more than once (as in a
Firestore transaction): they are pure. Writers in this process take turns on a lock held only for the
write itself. Log lines and timeline events live in their own tables keyed by (job, seq), so a job with
100k lines costs nothing to list.

Storage failures (a full disk, an I/O error, a file that can't be opened, a lock held past the busy
timeout) are `StoreUnavailable`, raised from every public method: the caller stored nothing and may retry.
A failed commit never leaves a thread's connection inside its transaction, so writes work again as soon
as the disk does, without a restart. `ping` is a real committed write (the health check).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import sqlite3
import threading
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence, TypeVar

from shared import jsonutil
from shared.adapters.records import decode_cursor, encode_cursor, from_record, to_record
from shared.domain.job import Job, LogLine, clip_tail
from shared.domain.delivery import Attempt, Channel
from shared.domain.lifecycle import Change, Notification, Plan, as_change, plan
from shared.domain.metrics import MetricPoint, metric_points
from shared.errors import Conflict, FieldError, StoreUnavailable, TransientError, ValidationFailed
from shared.ports import IdempotentCreate, JobQuery, LogMutation, Mutation, Page, Rejection, TimelineEvent

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    created_at TEXT NOT NULL,
    status TEXT NOT NULL,
    backend TEXT NOT NULL,
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    doc TEXT NOT NULL,
    external_key TEXT
);
CREATE INDEX IF NOT EXISTS jobs_created ON jobs (created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS jobs_backend ON jobs (backend, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS jobs_name ON jobs (name, created_at DESC, id DESC);
CREATE TABLE IF NOT EXISTS idempotency (
    key TEXT PRIMARY KEY,
    job_id TEXT NOT NULL,
    request_hash TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS logs (
    job_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    ts TEXT NOT NULL,
    stream TEXT NOT NULL,
    message TEXT NOT NULL,
    PRIMARY KEY (job_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS metrics (
    job_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    doc TEXT NOT NULL,
    PRIMARY KEY (job_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS notifications (
    job_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    id TEXT NOT NULL,
    doc TEXT NOT NULL,
    published INTEGER NOT NULL,
    PRIMARY KEY (job_id, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS notifications_unpublished ON notifications (published, job_id, seq) WHERE published = 0;
CREATE TABLE IF NOT EXISTS channels (
    job_id TEXT NOT NULL,
    key TEXT NOT NULL,
    version INTEGER NOT NULL,
    next_at TEXT,
    doc TEXT NOT NULL,
    PRIMARY KEY (job_id, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS channels_due ON channels (next_at) WHERE next_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS deliveries (
    job_id TEXT NOT NULL,
    seq TEXT NOT NULL,
    doc TEXT NOT NULL,
    PRIMARY KEY (job_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rejections (
    key TEXT PRIMARY KEY,
    batch_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS rejections_batch ON rejections (batch_id, idx);
CREATE TABLE IF NOT EXISTS health_probe (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    job_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    at TEXT NOT NULL,
    kind TEXT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (job_id, seq)
) WITHOUT ROWID;
"""


def _ts_out(value: datetime) -> str:
    # Fixed width (microseconds always written), UTC: sorts lexicographically in time order.
    return value.astimezone(timezone.utc).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def _ts_in(value: str) -> datetime:
    return datetime.fromisoformat(value)  # 3.11 reads the trailing Z as UTC (strptime is ~20x slower)


# A write that loses a compare-and-set race re-reads and tries again, this many times in all.
CAS_ATTEMPTS = 100
# A WAL this long (pages of 4 KiB: ~80 MB) gets a blocking checkpoint that restarts it.
WAL_RESET_PAGES = 20_000


class _LostRace(Exception):
    pass


# SQLite result codes (the primary code: the extended code's low byte) that say the storage can't be used
# right now, not that the statement is wrong: SQLITE_BUSY, SQLITE_LOCKED, SQLITE_IOERR, SQLITE_FULL,
# SQLITE_CANTOPEN. The texts are SQLite's own messages for them, for errors raised without a code.
_UNAVAILABLE_CODES = frozenset({5, 6, 10, 13, 14})
_UNAVAILABLE_TEXTS = ("database or disk is full", "disk i/o error", "unable to open database file", "database is locked")


def _storage_failure(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int) and code & 0xFF in _UNAVAILABLE_CODES:
        return True
    text = str(exc).lower()
    return any(t in text for t in _UNAVAILABLE_TEXTS)


F = TypeVar("F", bound=Callable[..., Any])


def _store_errors(method: F) -> F:
    """Wrap SQLite's storage failures once, here, into `StoreUnavailable` (chained); other SQLite errors
    (a bug in a statement, a corrupt file) propagate as they are."""

    @functools.wraps(method)
    def wrapper(self: "SqliteJobStore", *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except sqlite3.Error as exc:
            if not _storage_failure(exc):
                raise
            self._end_transaction()
            raise StoreUnavailable(f"SQLite store unavailable: {exc}") from exc

    return wrapper  # type: ignore[return-value]


class SqliteJobStore:
    kind = "sqlite"

    def __init__(
        self,
        path: str | Path,
        *,
        background_checkpoints: bool = False,
        checkpoint_interval: float = 0.5,
        on_notifications: Callable[[], None] | None = None,
    ):
        """`background_checkpoints`: copy the WAL back into the database from a thread of its own, every
        `checkpoint_interval` seconds, instead of inside whichever commit crosses SQLite's 1,000-page mark
        (that commit would then also copy pages and fsync). The embedded server turns it on: its commits
        are on the request path. Durability is the same (WAL, synchronous=NORMAL)."""
        self.path = str(path)
        # Called after a commit that stored notifications (the embedded server wakes its outbox relay
        # with it instead of waiting for the next poll).
        self.on_notifications = on_notifications
        self._background_checkpoints = background_checkpoints and self.path != ":memory:"
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        # One writer at a time inside this process: threads queue on a lock instead of meeting
        # SQLITE_BUSY, whose retry sleeps (up to 100 ms each) would dominate latency under load.
        self._write_lock = threading.Lock()
        conn = self._conn()
        conn.executescript(_SCHEMA)
        self._migrate(conn)
        self._stop_checkpoints = threading.Event()
        self._checkpointer: threading.Thread | None = None
        if self._background_checkpoints:
            self._checkpointer = threading.Thread(
                target=self._checkpoint_loop, args=(checkpoint_interval,), name="sqlite-checkpoint", daemon=True
            )
            self._checkpointer.start()

    def _checkpoint_loop(self, interval: float) -> None:
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            while not self._stop_checkpoints.wait(interval):
                try:
                    _, wal_pages, _ = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    if wal_pages > WAL_RESET_PAGES:
                        # Writers that never pause keep a passive checkpoint from resetting the WAL: stop
                        # this process's writers for one blocking checkpoint that does.
                        with self._write_lock:
                            conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
                except sqlite3.Error as exc:
                    log.warning("background checkpoint of %s failed: %s", self.path, exc)
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        except sqlite3.Error as exc:  # pragma: no cover - the database went away under us
            log.warning("final checkpoint of %s failed: %s", self.path, exc)
        finally:
            conn.close()

    @staticmethod
    def _migrate(conn: sqlite3.Connection) -> None:
        """Databases written before `external_key` became a column (it was an expression index over the
        document, re-parsed on every write) get the column, filled from the documents."""
        columns = {row[1] for row in conn.execute("PRAGMA table_info(jobs)")}
        if "external_key" not in columns:
            conn.execute("BEGIN IMMEDIATE")
            try:
                # Again under the write lock: another process may have migrated it meanwhile.
                if "external_key" not in {row[1] for row in conn.execute("PRAGMA table_info(jobs)")}:
                    conn.execute("ALTER TABLE jobs ADD COLUMN external_key TEXT")
                    conn.execute("UPDATE jobs SET external_key = json_extract(doc, '$.externalKey')")
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        conn.execute("DROP INDEX IF EXISTS jobs_external_key")
        conn.execute("CREATE INDEX IF NOT EXISTS jobs_backend_external_key ON jobs (backend, external_key)")

    # ---- connections -----------------------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=30000")
            if self._background_checkpoints:
                conn.execute("PRAGMA wal_autocheckpoint=0")
            self._local.conn = conn
        return conn

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        conn = self._conn()
        with self._write_lock:
            conn.execute("BEGIN IMMEDIATE")
            self._local.announce = False
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                # A COMMIT that failed (a full disk, SQLITE_BUSY) may leave the transaction open, or SQLite
                # may have rolled it back itself: end it either way, or this thread's connection would be
                # "within a transaction" for good and refuse every later BEGIN.
                self._end_transaction()
                raise
        if self._local.announce and self.on_notifications is not None:
            self.on_notifications()

    def _end_transaction(self) -> None:
        """Roll back whatever this thread's connection left open; if even that fails, drop the connection
        (the next call opens a fresh one)."""
        conn = getattr(self._local, "conn", None)
        if conn is None or not conn.in_transaction:
            return
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error as exc:
            log.warning("rollback on %s failed (%s): reopening the connection", self.path, exc)
            self._local.conn = None
            try:
                conn.close()
            except sqlite3.Error:  # pragma: no cover - closing a broken connection
                pass

    def close(self) -> None:
        """Close this thread's connection; stop the background checkpoints (after a last one)."""
        if self._checkpointer is not None:
            self._stop_checkpoints.set()
            self._checkpointer.join(30)
            self._checkpointer = None
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # ---- jobs ------------------------------------------------------------------------------------
    INSERT = "INSERT INTO jobs (id, created_at, status, backend, name, version, doc, external_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"

    # Compare-and-set of one job's row: written only if its version is still the one read.
    CAS_UPDATE = "UPDATE jobs SET status = ?, name = ?, version = ?, doc = ?, external_key = ? WHERE id = ? AND version = ?"

    @staticmethod
    def _cas_params(row: tuple, job_id: str, expected_version: int) -> tuple:
        """CAS_UPDATE's parameters for a `_row` tuple (id, created_at, status, backend, name, version, doc,
        external_key) written over the row of `job_id`."""
        return (row[2], row[4], row[5], row[6], row[7], job_id, expected_version)

    @staticmethod
    def _row(job: Job) -> tuple:
        rec = to_record(job, _ts_out)
        doc = jsonutil.dumps(rec).decode()
        return (job.id, rec["createdAt"], job.status.value, job.backend.value, job.name, job.version, doc, rec["externalKey"])

    @_store_errors
    def create(self, job: Job, idempotency_key: str | None = None) -> IdempotentCreate:
        outcome = self.create_many([(job, idempotency_key)])[0]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    @_store_errors
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
                job_rows: list[tuple] = []
                created: list[Plan] = []
                key_rows: list[tuple] = []
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
                    planned = plan(None, Change(job, source="api"))
                    assert planned.job is not None
                    job = planned.job.replace(version=1)
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
        return None if row is None else from_record(jsonutil.loads(row[0]), _ts_in)

    @_store_errors
    def get(self, job_id: str) -> Job | None:
        return self._get(self._conn(), job_id)

    @_store_errors
    def list(self, query: JobQuery) -> Page:
        where, params = [], []
        for column, value in (("status", query.status), ("backend", query.backend), ("name", query.name)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if query.cursor:
            try:
                created, last_id = decode_cursor(query.cursor)
            except ValueError:
                raise ValidationFailed([FieldError("cursor", "is not a cursor this service returned")]) from None
            where.append("(created_at < ? OR (created_at = ? AND id < ?))")
            params += [_ts_out(created), _ts_out(created), last_id]
        if query.label is not None:
            where.append("json_extract(doc, '$.labels.' || ?) = ?")
            params += [json.dumps(query.label[0]), query.label[1]]
        sql = "SELECT doc FROM jobs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_at DESC, id DESC LIMIT ?"
        params.append(query.limit + 1)
        rows = self._conn().execute(sql, params).fetchall()
        jobs = [from_record(jsonutil.loads(r[0]), _ts_in) for r in rows[: query.limit]]
        next_cursor = encode_cursor(jobs[-1].created_at, jobs[-1].id) if len(rows) > query.limit else None
        return Page(jobs, next_cursor)

    @_store_errors
    def update(self, job_id: str, mutate: Mutation) -> Job | None:
        """Optimistic compare-and-set: read, mutate, then one `UPDATE ... WHERE version = ?` (with the
        timeline entry and outbox row of a status change in the same transaction); a write that lost the
        race re-reads and mutates again. The write lock is held for the write only, so no thread waits
        while another decodes, mutates and encodes a job."""
        return self.apply(job_id, mutate, -1)

    @_store_errors
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
                job = from_record(jsonutil.loads(doc), _ts_in)
                found[job.id] = job
        out: dict[str, Job | None] = {}
        writes: list[tuple[str, Job, Job, tuple]] = []
        for job_id in ids:
            current = found.get(job_id)
            if current is None:
                out[job_id] = None
                continue
            planned = plan(current, as_change(mutations[job_id](current)))
            if planned.job is None:
                out[job_id] = current
                continue
            planned = dataclasses.replace(planned, job=planned.job.replace(version=current.version + 1))
            writes.append((job_id, current, planned, self._row(planned.job)))
        # A `known` job left alone was judged on what the caller had: only right if it is still current.
        unchecked = [job_id for job_id in ids if known and job_id in known and out.get(job_id) is known[job_id]]
        if unchecked:
            rows = conn.execute(f"SELECT id, version FROM jobs WHERE id IN ({','.join('?' * len(unchecked))})", unchecked).fetchall()
            versions = dict(rows)
            for job_id in unchecked:
                if versions.get(job_id) != known[job_id].version:  # type: ignore[index]
                    out[job_id] = self.update(job_id, mutations[job_id])
        if writes:
            try:
                with self._tx() as db:
                    cur = db.executemany(self.CAS_UPDATE, [self._cas_params(row, job_id, current.version) for job_id, current, _, row in writes])
                    if cur.rowcount != len(writes):
                        raise _LostRace  # someone wrote one of them meanwhile: nothing of this batch is kept
                    self._insert_side_rows(db, [planned for _, _, planned, _ in writes])
                for job_id, _, planned, _ in writes:
                    out[job_id] = planned.job
            except _LostRace:
                for job_id, _, _, _ in writes:
                    out[job_id] = self.update(job_id, mutations[job_id])
        return {job_id: out[job_id] for job_id in ids}

    # ---- logs and events -------------------------------------------------------------------------
    @_store_errors
    def append_logs(self, job_id: str, lines: Iterable[LogLine], max_tail_chars: int) -> int:
        lines = list(lines)
        job = self.apply(job_id, lambda current: (current, lines), max_tail_chars)
        return job.log_count if job is not None else 0

    @_store_errors
    def apply(self, job_id: str, decide: LogMutation, max_tail_chars: int) -> Job | None:
        """The one write of a job: read it, decide, plan the change (`shared.domain.lifecycle.plan`:
        numbered lines and timeline entries, outbox rows), then write the job with `WHERE version = ?`
        and the rest in the same transaction; a lost race rolls back and decides again. A plain change
        of the job alone is one statement."""
        conn = self._conn()
        for _ in range(CAS_ATTEMPTS):
            current = self._get(conn, job_id)
            if current is None:
                return None
            planned = plan(current, as_change(decide(current)), max_tail_chars)
            if planned.job is None:
                return current
            new = planned.job.replace(version=current.version + 1)
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
        log_rows, metric_rows, event_rows, note_rows = [], [], [], []
        for p in planned:
            assert p.job is not None
            job_id = p.job.id
            log_rows += [(job_id, l.seq, _ts_out(l.timestamp), l.stream, l.message) for l in p.lines]
            metric_rows += [(job_id, m.seq, jsonutil.dumps(m.to_api()).decode()) for m in metric_points(p.lines)]
            event_rows += [(job_id, e.seq, _ts_out(e.at), e.kind, json.dumps(e.data, sort_keys=True)) for e in p.timeline]
            note_rows += [(job_id, n.seq, n.id, jsonutil.dumps(n.to_doc()).decode(), 0) for n in p.notifications]
        if log_rows:
            db.executemany("INSERT INTO logs VALUES (?, ?, ?, ?, ?)", log_rows)
        if metric_rows:
            db.executemany("INSERT INTO metrics VALUES (?, ?, ?)", metric_rows)
        if event_rows:
            db.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?)", event_rows)
        if note_rows:
            db.executemany("INSERT INTO notifications VALUES (?, ?, ?, ?, ?)", note_rows)
            self._local.announce = True

    @_store_errors
    def get_logs(self, job_id: str, after: int = 0, limit: int = 1000) -> list[LogLine]:
        rows = self._conn().execute(
            "SELECT seq, ts, stream, message FROM logs WHERE job_id = ? AND seq > ? ORDER BY seq LIMIT ?",
            (job_id, after, limit),
        ).fetchall()
        return [LogLine(seq=r[0], timestamp=_ts_in(r[1]), stream=r[2], message=r[3]) for r in rows]

    @_store_errors
    def get_metrics(self, job_id: str, after: int = 0, limit: int = 1000) -> list[MetricPoint]:
        rows = self._conn().execute(
            "SELECT doc FROM metrics WHERE job_id = ? AND seq > ? ORDER BY seq LIMIT ?", (job_id, after, limit)
        ).fetchall()
        return [MetricPoint.from_api(jsonutil.loads(r[0])) for r in rows]

    @_store_errors
    def append_event(self, job_id: str, event: TimelineEvent) -> None:
        self.apply(job_id, lambda current: (None, (), (event,)), max_tail_chars=-1)

    @_store_errors
    def list_events(self, job_id: str, after: int = 0, limit: int = 100) -> list[TimelineEvent]:
        rows = self._conn().execute(
            "SELECT seq, at, kind, data FROM events WHERE job_id = ? AND seq > ? ORDER BY seq LIMIT ?",
            (job_id, after, limit),
        ).fetchall()
        return [TimelineEvent(seq=r[0], at=_ts_in(r[1]), kind=r[2], data=json.loads(r[3])) for r in rows]

    # ---- outbox and deliveries -------------------------------------------------------------------
    @_store_errors
    def unpublished(self, limit: int = 500, job_id: str | None = None) -> list[Notification]:
        if job_id is None:
            sql, params = "SELECT doc FROM notifications WHERE published = 0 ORDER BY job_id, seq LIMIT ?", (limit,)
        else:
            sql, params = "SELECT doc FROM notifications WHERE published = 0 AND job_id = ? ORDER BY seq LIMIT ?", (job_id, limit)
        rows = self._conn().execute(sql, params).fetchall()
        return [Notification.from_doc(jsonutil.loads(r[0])) for r in rows]

    @_store_errors
    def mark_published(self, notifications: Sequence[Notification]) -> None:
        if notifications:
            with self._tx() as db:
                db.executemany("UPDATE notifications SET published = 1 WHERE job_id = ? AND seq = ?", [(n.job_id, n.seq) for n in notifications])

    @_store_errors
    def get_notifications(self, job_id: str, after: int = 0, limit: int = 100) -> list[Notification]:
        rows = self._conn().execute(
            "SELECT doc FROM notifications WHERE job_id = ? AND seq > ? ORDER BY seq LIMIT ?", (job_id, after, limit)
        ).fetchall()
        return [Notification.from_doc(jsonutil.loads(r[0])) for r in rows]

    @staticmethod
    def _channel_of(row: tuple) -> Channel:
        return Channel.from_doc(jsonutil.loads(row[0]), row[1])

    @_store_errors
    def get_channel(self, job_id: str, key: str) -> Channel | None:
        row = self._conn().execute("SELECT doc, version FROM channels WHERE job_id = ? AND key = ?", (job_id, key)).fetchone()
        return self._channel_of(row) if row else None

    @_store_errors
    def list_channels(self, job_id: str) -> list[Channel]:
        rows = self._conn().execute("SELECT doc, version FROM channels WHERE job_id = ? ORDER BY key", (job_id,)).fetchall()
        return [self._channel_of(r) for r in rows]

    @_store_errors
    def save_channel(self, channel: Channel) -> Channel | None:
        """Create (version 0) or compare-and-set (the version read) a channel; None if someone else won."""
        doc = jsonutil.dumps(channel.to_doc()).decode()
        next_at = _ts_out(channel.next_at) if channel.next_at else None
        conn = self._conn()
        with self._write_lock:
            if channel.version == 0:
                cur = conn.execute("INSERT OR IGNORE INTO channels VALUES (?, ?, 1, ?, ?)", (channel.job_id, channel.key, next_at, doc))
            else:
                cur = conn.execute(
                    "UPDATE channels SET version = version + 1, next_at = ?, doc = ? WHERE job_id = ? AND key = ? AND version = ?",
                    (next_at, doc, channel.job_id, channel.key, channel.version),
                )
        return dataclasses.replace(channel, version=channel.version + 1) if cur.rowcount == 1 else None

    @_store_errors
    def due_channels(self, now: datetime, limit: int = 100) -> list[Channel]:
        rows = self._conn().execute(
            "SELECT doc, version FROM channels WHERE next_at IS NOT NULL AND next_at <= ? ORDER BY next_at LIMIT ?", (_ts_out(now), limit)
        ).fetchall()
        return [self._channel_of(r) for r in rows]

    @_store_errors
    def record_attempt(self, attempt: Attempt) -> None:
        with self._write_lock:
            self._conn().execute(
                "INSERT OR REPLACE INTO deliveries VALUES (?, ?, ?)", (attempt.job_id, attempt.id, jsonutil.dumps(attempt.to_doc()).decode())
            )

    @_store_errors
    def list_attempts(self, job_id: str, after: str = "", limit: int = 100) -> list[dict[str, Any]]:
        rows = self._conn().execute(
            "SELECT doc FROM deliveries WHERE job_id = ? AND seq > ? ORDER BY seq LIMIT ?", (job_id, after, limit)
        ).fetchall()
        return [jsonutil.loads(r[0]) for r in rows]

    @_store_errors
    def find_by_external_key(self, backend: str, key: str) -> Job | None:
        row = self._conn().execute(
            "SELECT doc FROM jobs WHERE backend = ? AND external_key = ? LIMIT 1", (backend, key)
        ).fetchone()
        return None if row is None else from_record(jsonutil.loads(row[0]), _ts_in)

    @_store_errors
    def record_rejection(self, rejection: Rejection) -> bool:
        doc = {"error": rejection.error, "errors": rejection.errors, "at": _ts_out(rejection.at), "messageId": rejection.message_id}
        with self._tx() as db:
            cur = db.execute(
                "INSERT OR IGNORE INTO rejections VALUES (?, ?, ?, ?)",
                (rejection.key, rejection.batch_id, rejection.index, json.dumps(doc)),
            )
            return cur.rowcount == 1

    @_store_errors
    def list_rejections(self, batch_id: str, limit: int = 1000) -> list[Rejection]:
        rows = self._conn().execute(
            "SELECT key, batch_id, idx, doc FROM rejections WHERE batch_id = ? ORDER BY idx, key LIMIT ?", (batch_id, limit)
        ).fetchall()
        out = []
        for key, bid, idx, doc in rows:
            d = json.loads(doc)
            out.append(Rejection(key=key, batch_id=bid, index=idx, error=d["error"], errors=d["errors"], at=_ts_in(d["at"]), message_id=d.get("messageId", "")))
        return out

    @_store_errors
    def ping(self) -> None:
        """The health check: a real committed write of one tiny row, overwritten each time. A `SELECT 1`
        answers on a full disk, and a write rolled back never reaches the disk."""
        conn = self._conn()
        at = _ts_out(datetime.now(timezone.utc))
        with self._write_lock:
            conn.execute("INSERT INTO health_probe (id, at) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET at = excluded.at", (at,))
