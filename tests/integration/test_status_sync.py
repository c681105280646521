"""status_sync on both stores: recorded sequences, redeliveries, log bursts, the CloudEvent path."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cloudevents.http import CloudEvent

from functions.pubsub_handler import handle_cloud_event
from shared.adapters.sqlite_store import SqliteJobStore
from shared.domain.backend import BackendKind as Backend
from shared.domain.backends.local import LOCAL
from shared.domain.backends.vertex import VERTEX
from shared.domain.job import Job
from shared.domain.status import JobStatus
from shared.messages import Message, to_push
from shared.usecases.status_sync import StatusSync
from tests.fakes.policy import BUILT_IN_RULES

T0 = datetime(2026, 11, 29, 12, tzinfo=UTC)
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "events"


class FixedClock:
    def now(self) -> datetime:
        return T0 + timedelta(hours=1)


@pytest.fixture(params=["sqlite", "firestore"])
def store(request: pytest.FixtureRequest, tmp_path: Path):
    if request.param == "sqlite":
        yield SqliteJobStore(tmp_path / "jobs.db")
    else:
        from shared.adapters.firestore_store import FirestoreJobStore

        yield FirestoreJobStore(request.getfixturevalue("firestore_client"), request.getfixturevalue("unique_prefix"))


def seed(store, backend: Backend, status: JobStatus = JobStatus.SUBMITTED) -> None:
    store.create(Job(id="j1", name="j", backend=backend, status=status, created_at=T0, updated_at=T0, dataset_file="gs://b/d", output_dir="/o"))


def msg(data: dict, n: int = 0) -> Message:
    return Message(id=f"m{n}", topic="training-events", data=data)


@pytest.mark.parametrize("fixture", sorted(p.name for p in FIXTURES.glob("*.json")))
def test_recorded_sequence_twice_over(store, fixture: str) -> None:
    spec = json.loads((FIXTURES / fixture).read_text())
    seed(store, Backend(spec["backend"]))
    sync = StatusSync(store=store, max_log_chars=10_000, rules=BUILT_IN_RULES, clock=FixedClock())
    # Every event delivered twice, the second round in reverse: at-least-once and out of order.
    for i, data in enumerate(spec["events"] + list(reversed(spec["events"]))):
        sync.handle(msg(data, i))
    job = store.get("j1")
    want = spec["final"]
    assert job.status.value == want["status"] and job.status_reason == want.get("statusReason")
    assert job.exit_code == want.get("exitCode")
    if "logLines" in want:
        assert job.log_count == want["logLines"]
        assert len(store.get_logs("j1")) == want["logLines"]
    if "progress" in want:
        assert job.progress == want["progress"]
    timeline = store.list_events("j1")
    assert timeline and timeline[-1].data["to"] == want["status"]


def test_burst_of_10k_lines_is_a_few_writes(store) -> None:
    seed(store, LOCAL, JobStatus.RUNNING)
    sync = StatusSync(store=store, max_log_chars=1000, rules=BUILT_IN_RULES, clock=FixedClock())
    lines = [{"seq": i + 1, "timestamp": "2026-11-29T12:00:00Z", "stream": "stdout", "message": f"line {i}"} for i in range(10_000)]
    before = store.get("j1").version
    sync.handle(msg({"job_id": "j1", "source": "local", "observed_at": "2026-11-29T12:00:01Z", "logs": lines}))
    job = store.get("j1")
    assert job.log_count == 10_000 and job.version == before + 1  # one transaction
    assert job.log_tail.endswith("line 9999\n") and len(job.log_tail) == 1000
    got = store.get_logs("j1", after=9_990)
    assert [l.message for l in got] == [f"line {i}" for i in range(9_990, 10_000)]
    if store.kind == "firestore":
        chunks = list(store.jobs.document("j1").collection("logs").stream())
        assert len(chunks) <= 11


def test_cloud_event_path(store) -> None:
    seed(store, VERTEX)
    sync = StatusSync(store=store, max_log_chars=1000, rules=BUILT_IN_RULES, clock=FixedClock())
    data = {"v": 1, "job_id": "j1", "source": "vertex", "observed_at": "2026-11-29T12:00:05Z", "state": "JOB_STATE_RUNNING"}
    envelope = to_push(Message(id="123", topic="training-events", data=data))
    event = CloudEvent(
        {"type": "google.cloud.pubsub.topic.v1.messagePublished", "source": "//pubsub.googleapis.com/projects/p/topics/training-events"}, envelope
    )
    handle_cloud_event(event, sync.handle)
    job = store.get("j1")
    assert job.status is JobStatus.RUNNING and job.started_at == datetime(2026, 11, 29, 12, 0, 5, tzinfo=UTC)


def test_unknown_job_and_garbage_are_acked(store) -> None:
    sync = StatusSync(store=store, max_log_chars=1000, rules=BUILT_IN_RULES, clock=FixedClock())
    assert sync.handle(msg({"job_id": "nope", "source": "local", "state": "started"})) is None
    assert sync.handle(msg({"no": "job"})) is None
    event = CloudEvent({"type": "t", "source": "//pubsub.googleapis.com/projects/p/topics/training-events"}, {"message": {"data": "bm90IGpzb24="}})
    handle_cloud_event(event, sync.handle)  # not JSON: logged and acked, never raised


def test_vertex_log_sink_entries_find_their_job(store) -> None:
    store.create(
        Job(
            id="j1",
            name="j",
            backend=VERTEX,
            status=JobStatus.SUBMITTED,
            created_at=T0,
            updated_at=T0,
            dataset_file="gs://b/d",
            output_dir="/o",
            external_id="projects/123/locations/us-central1/customJobs/4470142151234567890",
        )
    )
    sync = StatusSync(store=store, max_log_chars=1000, rules=BUILT_IN_RULES, clock=FixedClock())
    vertex_dir = FIXTURES.parent / "vertex_logs"
    entries = [json.loads((vertex_dir / f"{n}.json").read_text())["entry"] for n in ("service_running", "replica_stdout", "replica_stderr", "service_failed")]
    for entry in entries + entries:  # each delivered twice
        sync.handle(msg(entry))
    job = store.get("j1")
    assert job.status is JobStatus.FAILED and job.failure_class.value == "user"
    assert [l.message for l in store.get_logs("j1")] == [
        'PROGRESS {"event": "step", "step": 20, "total_steps": 200, "loss": 1.83}',
        "Traceback (most recent call last):",
    ]
    assert job.progress == {"event": "step", "step": 20, "total_steps": 200, "loss": 1.83}
    other = dict(entries[1], resource={"type": "ml_job", "labels": {"job_id": "999"}})
    assert sync.handle(msg(other)) is None  # not one of ours: acked
