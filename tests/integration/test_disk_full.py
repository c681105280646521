"""A full disk under the SQLite store (issue 12, item 3), for real: a 1 MiB tmpfs filled to the last byte.

Required: `POST /train` answers 503 JSON with `Retry-After` (never a 500, never a 202 for a job that was
not stored); `/health` is degraded with the store check failing (a real write probe); once the space is
back everything works again without a restart; and a launch that hit the full disk is retried until the
store takes it and ends launched, never `failed / LaunchFailed`, never left in `submitting`.

The tmpfs needs root (CI runs as root); where it can't be mounted those tests skip and say why. The same
SQLITE_FULL error ("database or disk is full") is also produced with SQLite's `max_page_count`, which
runs anywhere: that test never skips.
"""

from __future__ import annotations

import errno
import os
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from functions.dev.embedded import build_embedded
from functions.http.api import Api
from functions.http.asgi import AsgiApi
from functions.http.wire import Request
from functions.wiring import Container
from shared import jsonutil
from shared.adapters.sqlite_store import SqliteJobStore
from shared.domain.backends.kubernetes import KUBERNETES
from shared.domain.job import Job, LogLine
from shared.domain.status import JobStatus
from shared.errors import StoreUnavailable
from shared.ports import JobQuery
from tests.integration.conftest import SERVERS, RecordingBus, make_settings, wsgi

BODY = {"dataset_file": "gs://bucket/data.jsonl", "output_dir": "/tmp/out"}


class Disk:
    """A small filesystem of its own that a test can fill up and free again."""

    def __init__(self, root: Path):
        self.root = root
        self.filler = root / "filler"

    def fill(self, db: Path) -> None:
        # SQLite reuses a WAL in place after a checkpoint: with room left in it, a write could still
        # succeed on a full disk. Truncate it first, so the next write needs a block the disk hasn't got.
        conn = sqlite3.connect(db, timeout=30)
        try:
            busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        finally:
            conn.close()
        assert busy == 0, "the WAL could not be truncated"
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            for size in (65536, 4096, 1):
                try:
                    while True:
                        os.write(fd, b"\0" * size)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC
        finally:
            os.close(fd)
        assert shutil.disk_usage(self.root).free < 4096

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Disk]:
    root = tmp_path / "disk"
    root.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (CI runs as root); the max_page_count test covers SQLITE_FULL")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(root)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip()}); the max_page_count test covers SQLITE_FULL")
    d = Disk(root)
    try:
        yield d
    finally:
        d.free()
        subprocess.run(["umount", "-l", str(root)], check=False)  # lazy: a store's file may still be open


def wait_for(what: str, predicate: Callable[[], Any], timeout: float = 20.0) -> Any:
    """Poll background work (the bus's threads) with a bound."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def assert_store_unavailable(r: requests.Response) -> None:
    assert r.status_code == 503, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    assert int(r.headers["Retry-After"]) >= 1
    body = r.json()
    assert body["errors"] == [] and "store is unavailable" in body["error"]


def post(url: str, **headers: str) -> requests.Response:
    return requests.post(f"{url}/train", json=BODY, headers=headers, timeout=30)


# ---- the api ------------------------------------------------------------------------------------
@pytest.mark.parametrize("server", SERVERS)
def test_a_full_disk_is_503_and_recovers_without_restart(disk: Disk, serve, server: str) -> None:
    db = disk.root / "jobs.db"
    bus = RecordingBus()
    c = Container(settings=make_settings(), store=SqliteJobStore(db), bus=bus)
    url = (serve(AsgiApi(c.api), asgi=True) if server == "asgi" else serve(wsgi(c))).url
    first = post(url)
    assert first.status_code == 202
    assert requests.get(f"{url}/health").json()["checks"]["store"] == "ok"

    disk.fill(db)
    assert_store_unavailable(post(url))
    assert_store_unavailable(post(url, **{"Idempotency-Key": "key-1"}))
    with ThreadPoolExecutor(8) as pool:  # several at once: on ASGI one group commit of them all fails
        for r in pool.map(lambda _: post(url), range(8)):
            assert_store_unavailable(r)
    health = requests.get(f"{url}/health")
    assert health.status_code == 503
    assert health.json()["status"] == "degraded"
    assert health.json()["checks"]["store"].startswith("error: StoreUnavailable") and "full" in health.json()["checks"]["store"]
    # Reads still answer; nothing was stored or published for the refused requests.
    jobs = requests.get(f"{url}/jobs").json()["jobs"]
    assert [j["id"] for j in jobs] == [first.json()["job"]["id"]]
    assert len(bus.messages) == 1

    disk.free()
    health = requests.get(f"{url}/health")
    assert health.status_code == 200 and health.json()["status"] == "ok" and health.json()["checks"]["store"] == "ok"
    again = post(url, **{"Idempotency-Key": "key-1"})
    assert again.status_code == 202 and "Idempotent-Replayed" not in again.headers  # it was never stored before
    with ThreadPoolExecutor(8) as pool:
        later = list(pool.map(lambda _: post(url), range(8)))
    assert [r.status_code for r in later] == [202] * 8
    stored = {j.id for j in c.store.list(JobQuery(limit=100)).items}
    answered = {first.json()["job"]["id"], again.json()["job"]["id"], *(r.json()["job"]["id"] for r in later)}
    assert stored == answered  # every 202 is a stored job, and every stored job was answered 202
    assert {data["job_id"] for _, data, _, _ in bus.messages} == answered


# ---- the launcher --------------------------------------------------------------------------------
@pytest.fixture
def embedded(disk: Disk, serve):
    """The embedded default (SQLite on the small disk, inline bus, the launcher), served over ASGI; the
    bus is started by the test. Kubernetes dry run: a launch ends `submitted` without a cluster."""
    made: list[Container] = []

    def _make() -> tuple[Container, str]:
        settings = make_settings(
            SQLITE_PATH=str(disk.root / "embedded.db"), LAUNCH_MAX_ATTEMPTS=2, LAUNCH_RETRY_BASE_SECONDS=0.01, RECONCILE_INTERVAL_SECONDS=0
        )
        c = build_embedded(settings, start=False)
        made.append(c)
        return c, serve(AsgiApi(c.api), asgi=True).url

    yield _make
    for c in made:
        c.bus.stop()
        c.store.close()


def job_of(c: Container, job_id: str) -> Job:
    job = c.store.get(job_id)
    assert job is not None
    return job


def assert_launched(c: Container, job_id: str) -> None:
    job = wait_for(f"job {job_id} to be launched", lambda: (j := job_of(c, job_id)).status is JobStatus.SUBMITTED and j)
    assert job.failure_class is None and job.status_reason and job.status_reason.startswith("DryRun")
    assert job.manifest  # the launcher recorded its submission
    assert "failed" not in {e.data.get("to") for e in c.store.list_events(job_id)}


def test_a_launch_that_hits_the_full_disk_is_launched_once_space_is_back(embedded, disk: Disk) -> None:
    c, url = embedded()
    r = post(url)
    assert r.status_code == 202
    job_id = r.json()["job"]["id"]
    disk.fill(c.settings.sqlite_file)
    c.bus.start()  # the launch meets the full disk: its claim (queued -> submitting) can't be written
    published = c.bus.published
    # Two attempts each, then published again, several times over: never dead-lettered into failed.
    wait_for("the launch to be published again", lambda: c.bus.published >= published + 3)
    assert job_of(c, job_id).status is JobStatus.QUEUED
    assert_store_unavailable(post(url))

    disk.free()
    started = time.monotonic()
    assert_launched(c, job_id)
    print(f"launched {time.monotonic() - started:.3f}s after the space came back")
    r = post(url)
    assert r.status_code == 202
    assert_launched(c, r.json()["job"]["id"])


class FillsTheDiskOnSubmit:
    """The real (dry-run) Kubernetes backend; its first submit fills the disk just before it returns, so
    the launcher can't record the submission: the job is left `submitting`."""

    def __init__(self, inner: Any, fill: Callable[[], None]):
        self.inner = inner
        self.fill = fill
        self.submits = 0

    def submit(self, job: Job, env: dict[str, str]) -> Any:
        submission = self.inner.submit(job, env)
        self.submits += 1
        if self.submits == 1:
            self.fill()
        return submission

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_a_launch_whose_submission_could_not_be_recorded_is_not_left_submitting(embedded, disk: Disk) -> None:
    c, url = embedded()
    backend = FillsTheDiskOnSubmit(c.launcher.backends[KUBERNETES], lambda: disk.fill(c.settings.sqlite_file))
    c.launcher.backends[KUBERNETES] = backend
    c.bus.start()
    r = post(url)
    assert r.status_code == 202
    job_id = r.json()["job"]["id"]
    wait_for("the backend to be called", lambda: backend.submits >= 1)
    published = c.bus.published
    wait_for("the launch to be published again", lambda: c.bus.published >= published + 3)
    assert job_of(c, job_id).status is JobStatus.SUBMITTING  # claimed, submitted, but not recorded

    disk.free()
    assert_launched(c, job_id)
    assert backend.submits >= 2  # submitted again: the backend adopts what the first attempt created


# ---- SQLITE_FULL without a mount: max_page_count -------------------------------------------------
class CappedStore(SqliteJobStore):
    """SQLite's own page limit: a write that needs a page beyond it fails with SQLITE_FULL, "database or
    disk is full", the very error a full disk gives."""

    cap: int | None = None

    def _conn(self) -> sqlite3.Connection:
        conn = super()._conn()
        conn.execute(f"PRAGMA max_page_count = {self.cap or 1_073_741_823}")
        return conn

    def full(self) -> None:
        self.cap = self._conn().execute("PRAGMA page_count").fetchone()[0]


def big_job(i: int) -> Job:
    # Overflow pages: the row can't fit in the pages the database already has.
    now = datetime(2026, 1, 1, tzinfo=UTC)
    return Job(
        id=f"job-{i}",
        name=f"job-{i}",
        backend=KUBERNETES,
        status=JobStatus.QUEUED,
        created_at=now,
        updated_at=now,
        dataset_file="gs://b/d.jsonl",
        output_dir="/o",
        labels={"pad": "x" * 20_000},
        request_hash=f"h{i}",
    )


def test_sqlite_full_is_store_unavailable_and_passes(tmp_path: Path) -> None:
    store = CappedStore(tmp_path / "capped.db")
    store.create(big_job(0))
    store.full()
    line = LogLine(timestamp=datetime(2026, 1, 1, tzinfo=UTC), stream="stdout", message="y" * 20_000)
    attempts: dict[str, Callable[[], Any]] = {
        "create": lambda: store.create(big_job(1)),
        "create with a key": lambda: store.create(big_job(2), "key-2"),
        "create_many": lambda: store.create_many([(big_job(3), None), (big_job(4), "key-4")]),
        "append_logs": lambda: store.append_logs("job-0", [line], 1000),
    }  # (not `ping`: its one row is overwritten in place and needs no new page; the tmpfs tests cover it)
    for name, attempt in attempts.items():
        with pytest.raises(StoreUnavailable) as caught:
            attempt()
        cause = caught.value.__cause__
        assert isinstance(cause, sqlite3.OperationalError) and cause.sqlite_errorname == "SQLITE_FULL", name
    assert [j.id for j in store.list(JobQuery(limit=10)).items] == ["job-0"]

    # Through the api: normal jobs fit in the pages left for a while; each 202 is stored, then a 503 JSON
    # with Retry-After (not a 500) once no page is left.
    c = Container(settings=make_settings(), store=store, bus=RecordingBus())
    api: Api = c.api
    body = b'{"dataset_file": "gs://b/d.jsonl", "output_dir": "/o"}'
    answered: list[str] = []
    for _ in range(500):
        answer = api.handle(Request("POST", "/train", {}, {}, None, lambda n: body[:n]))
        if answer.status != 202:
            break
        answered.append(jsonutil.loads(answer.body)["job"]["id"])
    assert answer.status == 503 and answer.headers["Retry-After"] and jsonutil.loads(answer.body)["errors"] == []
    assert {j.id for j in store.list(JobQuery(limit=500)).items} == {"job-0", *answered}

    store.cap = None  # space is back: the same store, the same connection
    for attempt in attempts.values():
        attempt()
    assert api.handle(Request("POST", "/train", {}, {}, None, lambda n: body[:n])).status == 202
    assert len(store.list(JobQuery(limit=500)).items) == 5 + len(answered) + 1
