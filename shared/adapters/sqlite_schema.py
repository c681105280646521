"""The SQLite store's tables, their migrations and its timestamp text (`sqlite_store.py` is the store).

Log lines, metric points, timeline entries and notifications live in their own tables keyed by (job,
seq), so a job with 100k lines costs nothing to list; `jobs.external_key` is a column (the backend's own
short id, `records.to_record`'s `externalKey`) so the events that name only it find their job.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

SCHEMA = """
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


def ts_out(value: datetime) -> str:
    # Fixed width (microseconds always written), UTC: sorts lexicographically in time order.
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def ts_in(value: str) -> datetime:
    return datetime.fromisoformat(value)  # 3.11 reads the trailing Z as UTC (strptime is ~20x slower)


def migrate(conn: sqlite3.Connection) -> None:
    """Create what is missing; databases written before `external_key` became a column (it was an
    expression index over the document, re-parsed on every write) get the column, filled from the
    documents."""
    conn.executescript(SCHEMA)
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
