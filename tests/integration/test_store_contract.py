"""One contract, two stores: SQLite (embedded default) and Firestore (the real emulator)."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

import pytest

from shared.adapters.sqlite_store import SqliteJobStore
from shared.domain.backends.kubernetes import KUBERNETES
from shared.domain.backends.local import LOCAL
from shared.domain.job import Job, LogLine
from shared.domain.status import JobStatus
from shared.errors import Conflict, ValidationFailed
from shared.ports import JobQuery, TimelineEvent
from tests.fakes.jobs import T0, make_job


def test_create_get_roundtrip(store) -> None:
    job = make_job(1, progress={"step": 1, "loss": 0.5}, manifest={"kind": "Job", "spec": {"x": [1, 2]}}, started_at=T0)
    result = store.create(job)
    assert result.created and result.job.version == 1
    got = store.get(job.id)
    assert got == job.replace(version=1, event_count=1)  # its first timeline entry: -> queued
    assert store.get("missing") is None


def test_create_twice_is_a_conflict(store) -> None:
    store.create(make_job(1))
    with pytest.raises(Conflict):
        store.create(make_job(1))


def test_idempotency_key(store) -> None:
    first = store.create(make_job(1), idempotency_key="k1")
    again = store.create(make_job(2, request_hash="h1"), idempotency_key="k1")
    assert again.created is False and again.job.id == first.job.id
    with pytest.raises(Conflict):
        store.create(make_job(3, request_hash="other"), idempotency_key="k1")
    assert store.get("job-00002") is None and store.get("job-00003") is None


def test_list_newest_first_with_cursor_and_filters(store) -> None:
    for i in range(12):
        store.create(make_job(i, status=JobStatus.RUNNING if i % 2 else JobStatus.QUEUED, backend=LOCAL if i % 3 == 0 else KUBERNETES))
    seen: list[str] = []
    cursor = None
    while True:
        page = store.list(JobQuery(limit=5, cursor=cursor))
        seen += [j.id for j in page.items]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == [f"job-{i:05d}" for i in reversed(range(12))]
    running = store.list(JobQuery(limit=50, status="running")).items
    assert [j.id for j in running] == [f"job-{i:05d}" for i in reversed(range(12)) if i % 2]
    local = store.list(JobQuery(limit=50, backend="local")).items
    assert [j.id for j in local] == [f"job-{i:05d}" for i in (9, 6, 3, 0)]
    named = store.list(JobQuery(limit=2, name="name-1"))
    assert [j.id for j in named.items] == ["job-00010", "job-00007"] and named.next_cursor
    rest = store.list(JobQuery(limit=50, name="name-1", cursor=named.next_cursor)).items
    assert [j.id for j in rest] == ["job-00004", "job-00001"]
    assert [j.id for j in store.list(JobQuery(limit=3, label=("team", "a"))).items] == ["job-00011", "job-00010", "job-00009"]
    assert store.list(JobQuery(limit=3, label=("team", "b"))).items == []


def test_bad_cursor_is_a_validation_error(store) -> None:
    with pytest.raises(ValidationFailed):
        store.list(JobQuery(cursor="not-a-cursor"))


def test_update_is_compare_and_set(store) -> None:
    store.create(make_job(1))

    def to(status):
        def mutate(job: Job):
            if not job.status.can_become(status):
                return None
            return job.replace(status=status)

        return mutate

    assert store.update("job-00001", to(JobStatus.SUBMITTING)).status is JobStatus.SUBMITTING
    assert store.update("job-00001", to(JobStatus.SUCCEEDED)).status is JobStatus.SUCCEEDED
    # A terminal job never moves: the mutation declines and the stored job is returned unchanged.
    after = store.update("job-00001", to(JobStatus.RUNNING))
    assert after.status is JobStatus.SUCCEEDED
    assert store.get("job-00001").version == 3
    assert store.update("missing", to(JobStatus.RUNNING)) is None


def test_concurrent_updates_lose_nothing(store) -> None:
    store.create(make_job(1, progress={"n": 0}))
    workers, per_worker = 2, 3  # the emulator waits 2 s per conflict: keep contention small

    def bump() -> None:
        for _ in range(per_worker):
            store.update("job-00001", lambda j: j.replace(progress={"n": j.progress["n"] + 1}))

    threads = [threading.Thread(target=bump) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    job = store.get("job-00001")
    assert job.progress == {"n": workers * per_worker}
    assert job.version == 1 + workers * per_worker


def test_logs_in_order_with_rolling_tail(store) -> None:
    store.create(make_job(1))
    lines = [LogLine(timestamp=T0 + timedelta(milliseconds=i), stream="stdout" if i % 2 else "stderr", message=f"line {i}") for i in range(2500)]
    assert store.append_logs("job-00001", lines[:1200], max_tail_chars=50) == 1200
    assert store.append_logs("job-00001", lines[1200:], max_tail_chars=50) == 2500
    job = store.get("job-00001")
    assert job.log_count == 2500
    assert len(job.log_tail) == 50 and job.log_tail.endswith("line 2499\n")
    got = store.get_logs("job-00001", after=0, limit=5000)
    assert [l.seq for l in got] == list(range(1, 2501))
    assert [l.message for l in got[:3]] == ["line 0", "line 1", "line 2"]
    assert got[1].stream == "stdout" and got[0].stream == "stderr"
    page = store.get_logs("job-00001", after=1998, limit=3)
    assert [l.seq for l in page] == [1999, 2000, 2001]
    assert store.get_logs("job-00001", after=2500) == []
    # The job list never carries logs: listing stays cheap.
    assert "line 1" not in str(store.list(JobQuery(limit=1)).items[0].args)


def test_events_timeline(store) -> None:
    store.create(make_job(1))
    for i in range(5):
        store.append_event("job-00001", TimelineEvent(at=T0 + timedelta(seconds=i), kind="state", data={"i": i}))
    events = store.list_events("job-00001")
    # The first entry is the job's own: created queued (shared/domain/lifecycle.py).
    assert events[0].seq == 1 and events[0].kind == "status" and events[0].data["from"] is None and events[0].data["to"] == "queued"
    assert [e.seq for e in events[1:]] == [2, 3, 4, 5, 6]
    assert [e.data["i"] for e in store.list_events("job-00001", after=4)] == [3, 4]


def test_sqlite_survives_restart(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    s1 = SqliteJobStore(path)
    s1.create(make_job(1))
    s1.append_logs("job-00001", [LogLine(timestamp=T0, stream="stdout", message="hello")], 100)
    s1.close()
    s2 = SqliteJobStore(path)
    assert s2.get("job-00001").log_tail == "hello\n"
    assert [l.message for l in s2.get_logs("job-00001")] == ["hello"]
