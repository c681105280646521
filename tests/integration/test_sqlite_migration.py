"""Opening a SQLite database written before `external_key` became a column of `jobs`.

The old format (built here by hand with sqlite3): `jobs` had the columns (id, created_at, status, backend,
name, version, doc), and jobs were found by their backend's key through an expression index over the
document, `jobs_external_key ON jobs (backend, json_extract(doc, '$.externalKey'))`. `SqliteJobStore`
must add the column, fill it from the documents, swap the index, and leave everything else working;
opened again, it must change nothing.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest

from shared.adapters.records import to_record
from shared.adapters.sqlite_schema import ts_out as _ts_out
from shared.adapters.sqlite_store import SqliteJobStore
from shared.domain.backends.kubernetes import KUBERNETES
from shared.domain.backends.vertex import VERTEX
from shared.domain.job import Job, LogLine
from shared.domain.status import JobStatus
from shared.ports import JobQuery
from tests.fakes.jobs import T0, make_job

OLD_SCHEMA = """
CREATE TABLE jobs (
    id TEXT PRIMARY KEY,
    created_at TEXT NOT NULL,
    status TEXT NOT NULL,
    backend TEXT NOT NULL,
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX jobs_created ON jobs (created_at DESC, id DESC);
CREATE INDEX jobs_status ON jobs (status, created_at DESC, id DESC);
CREATE INDEX jobs_backend ON jobs (backend, created_at DESC, id DESC);
CREATE INDEX jobs_name ON jobs (name, created_at DESC, id DESC);
CREATE INDEX jobs_external_key ON jobs (backend, json_extract(doc, '$.externalKey'));
CREATE TABLE idempotency (
    key TEXT PRIMARY KEY,
    job_id TEXT NOT NULL,
    request_hash TEXT NOT NULL
);
CREATE TABLE logs (
    job_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    ts TEXT NOT NULL,
    stream TEXT NOT NULL,
    message TEXT NOT NULL,
    PRIMARY KEY (job_id, seq)
) WITHOUT ROWID;
"""

VERTEX_ID = "projects/p/locations/us-central1/customJobs/4242"
K8S_ID = "training/aml-qlora-abc12"


def old_jobs() -> list[Job]:
    log_lines = (LogLine(timestamp=T0, stream="stdout", message="a", seq=1), LogLine(timestamp=T0, stream="stderr", message="b", seq=2))
    return [
        make_job(1, backend=VERTEX, status=JobStatus.RUNNING, external_id=VERTEX_ID, started_at=T0, version=4),
        make_job(
            2,
            backend=KUBERNETES,
            status=JobStatus.SUCCEEDED,
            external_id=K8S_ID,
            finished_at=T0 + timedelta(hours=1),
            log_count=len(log_lines),
            log_tail="a\nb\n",
            version=7,
            progress={"step": 10, "loss": 0.25},
        ),
        make_job(3, backend=VERTEX, status=JobStatus.QUEUED, version=1),  # not launched: no external id
    ]


def write_old_database(path: Path, jobs: list[Job]) -> None:
    conn = sqlite3.connect(path)
    try:
        conn.executescript(OLD_SCHEMA)
        for job in jobs:
            rec = to_record(job, _ts_out)
            if job.external_id is None:
                del rec["externalKey"]  # a document may predate the field itself: json_extract gives NULL
            conn.execute(
                "INSERT INTO jobs VALUES (?, ?, ?, ?, ?, ?, ?)",
                (job.id, rec["createdAt"], job.status.value, job.backend.value, job.name, job.version, json.dumps(rec)),
            )
        conn.executemany(
            "INSERT INTO logs VALUES (?, ?, ?, ?, ?)",
            [("job-00002", 1, _ts_out(T0), "stdout", "a"), ("job-00002", 2, _ts_out(T0), "stderr", "b")],
        )
        conn.execute("INSERT INTO idempotency VALUES ('key-1', 'job-00001', 'h1')")
        conn.commit()
    finally:
        conn.close()


def schema(path: Path) -> list[tuple]:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name").fetchall()


def rows(path: Path) -> list[tuple]:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT * FROM jobs ORDER BY id").fetchall()


@pytest.fixture
def old_db(tmp_path: Path) -> Path:
    path = tmp_path / "old.db"
    write_old_database(path, old_jobs())
    # The premise: the old format, as described.
    with sqlite3.connect(path) as conn:
        assert [r[1] for r in conn.execute("PRAGMA table_info(jobs)")] == ["id", "created_at", "status", "backend", "name", "version", "doc"]
        assert "jobs_external_key" in {r[1] for r in conn.execute("PRAGMA index_list(jobs)")}
    return path


def test_migration_swaps_the_expression_index_for_a_column(old_db: Path) -> None:
    store = SqliteJobStore(old_db)
    try:
        with sqlite3.connect(old_db) as conn:
            columns = [r[1] for r in conn.execute("PRAGMA table_info(jobs)")]
            assert columns == ["id", "created_at", "status", "backend", "name", "version", "doc", "external_key"]
            indexes = {r[1] for r in conn.execute("PRAGMA index_list(jobs)")}
            assert "jobs_external_key" not in indexes and "jobs_backend_external_key" in indexes
            assert [r[2] for r in conn.execute("PRAGMA index_info(jobs_backend_external_key)")] == ["backend", "external_key"]
            # The column is filled from the documents (the backend's own short id; NULL when there is none).
            assert conn.execute("SELECT id, external_key FROM jobs ORDER BY id").fetchall() == [
                ("job-00001", "4242"),
                ("job-00002", "aml-qlora-abc12"),
                ("job-00003", None),
            ]
            plan = " ".join(
                r[3] for r in conn.execute("EXPLAIN QUERY PLAN SELECT doc FROM jobs WHERE backend = ? AND external_key = ? LIMIT 1", ("vertex", "4242"))
            )
            assert "jobs_backend_external_key" in plan, plan
            # Tables the old file lacked are there now.
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            assert {"jobs", "idempotency", "logs", "events", "rejections"} <= tables
    finally:
        store.close()


def test_migrated_store_reads_and_writes_as_before(old_db: Path) -> None:
    jobs = {j.id: j for j in old_jobs()}
    store = SqliteJobStore(old_db)
    try:
        # find_by_external_key: by the backend's short id, and only within that backend.
        assert store.find_by_external_key("vertex", "4242") == jobs["job-00001"]
        assert store.find_by_external_key("kubernetes", "aml-qlora-abc12") == jobs["job-00002"]
        assert store.find_by_external_key("kubernetes", "4242") is None
        assert store.find_by_external_key("vertex", "nope") is None

        # get / list, with their filters, over the old rows.
        for job_id, job in jobs.items():
            assert store.get(job_id) == job
        assert [j.id for j in store.list(JobQuery()).items] == ["job-00003", "job-00002", "job-00001"]
        assert [j.id for j in store.list(JobQuery(backend="vertex")).items] == ["job-00003", "job-00001"]
        assert [j.id for j in store.list(JobQuery(status="succeeded")).items] == ["job-00002"]
        assert [j.id for j in store.list(JobQuery(label=("team", "a"))).items] == ["job-00003", "job-00002", "job-00001"]
        page = store.list(JobQuery(limit=2))
        assert [j.id for j in store.list(JobQuery(limit=2, cursor=page.next_cursor)).items] == ["job-00001"]

        # The old log lines, then new ones after them.
        assert [(l.seq, l.message) for l in store.get_logs("job-00002")] == [(1, "a"), (2, "b")]
        assert store.append_logs("job-00002", [LogLine(timestamp=T0, stream="stdout", message="c")], 10_000) == 3
        assert [l.seq for l in store.get_logs("job-00002")] == [1, 2, 3]

        # update: the launch of the queued job records its external id, and the column follows the document.
        launched = store.update("job-00003", lambda j: j.replace(status=JobStatus.SUBMITTED, external_id="projects/p/locations/l/customJobs/777"))
        assert launched is not None and launched.version == 2 and launched.status == JobStatus.SUBMITTED
        assert store.find_by_external_key("vertex", "777") == launched == store.get("job-00003")
        # An old row rewritten: its key moves with it (the old key no longer finds it).
        store.update("job-00001", lambda j: j.replace(external_id="projects/p/locations/l/customJobs/5000"))
        assert store.find_by_external_key("vertex", "4242") is None
        assert store.find_by_external_key("vertex", "5000").id == "job-00001"
        assert store.get("job-00001").version == 5

        # The old idempotency record still replays.
        replay = store.create(make_job(9, request_hash="h1"), idempotency_key="key-1")
        assert not replay.created and replay.job.id == "job-00001"
        # And new jobs are written in the new format.
        new = store.create(make_job(10, backend=KUBERNETES, external_id="ns/new-job")).job
        assert store.find_by_external_key("kubernetes", "new-job") == new
    finally:
        store.close()


def test_opening_a_migrated_database_again_changes_nothing(old_db: Path) -> None:
    SqliteJobStore(old_db).close()
    # Set a key by hand that the documents would not give: a second migration would overwrite it.
    with sqlite3.connect(old_db) as conn:
        conn.execute("UPDATE jobs SET external_key = 'set-by-hand' WHERE id = 'job-00003'")
    before_schema, before_rows = schema(old_db), rows(old_db)

    store = SqliteJobStore(old_db)
    try:
        assert schema(old_db) == before_schema
        assert rows(old_db) == before_rows
        assert store.find_by_external_key("vertex", "set-by-hand").id == "job-00003"
        assert store.find_by_external_key("vertex", "4242").id == "job-00001"
    finally:
        store.close()


def test_a_new_database_is_created_in_the_new_format(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    SqliteJobStore(path).close()
    first = schema(path)
    names = {r[1] for r in first}
    assert "jobs_backend_external_key" in names and "jobs_external_key" not in names
    SqliteJobStore(path).close()
    assert schema(path) == first
