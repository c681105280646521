"""reconcile: relaunch lost launches, apply what backends say, flag silence as Stale, never guess."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from shared.adapters.sqlite_store import SqliteJobStore
from shared.domain.backend import BackendKind as Backend
from shared.domain.backends.kubernetes import KUBERNETES
from shared.domain.backends.local import LOCAL
from shared.domain.job import Job
from shared.domain.status import FailureClass, JobStatus
from shared.errors import TransientError
from shared.ports import Observation
from shared.usecases.reconcile import Reconciler
from shared.usecases.status_sync import StatusSync
from tests.fakes.policy import BUILT_IN_RULES
from tests.integration.conftest import RecordingBus

T0 = datetime(2026, 11, 29, 12, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime):
        self.t = now

    def now(self) -> datetime:
        return self.t


class FakeBackend:
    """Our own seam: answers `observe` from a table; raises where told."""

    name = "fake"

    def __init__(self, answers: dict[str, Observation | Exception | None]):
        self.answers = answers
        self.asked: list[str] = []

    def submit(self, job, env):  # pragma: no cover - not used here
        raise NotImplementedError

    def cancel(self, job):  # pragma: no cover
        return None

    def observe(self, job: Job):
        self.asked.append(job.id)
        answer = self.answers.get(job.id)
        if isinstance(answer, Exception):
            raise answer
        return answer


@pytest.fixture
def world(tmp_path: Path):
    store = SqliteJobStore(tmp_path / "jobs.db")
    clock = Clock(T0 + timedelta(hours=3))
    bus = RecordingBus()
    sync = StatusSync(store=store, max_log_chars=1000, rules=BUILT_IN_RULES, clock=clock)

    def make(backend_answers: dict, backend_kind: Backend = KUBERNETES) -> tuple[Reconciler, FakeBackend]:
        fake = FakeBackend(backend_answers)
        rec = Reconciler(
            store=store,
            backends={backend_kind: fake},
            status_sync=sync,
            bus=bus,
            requests_topic="train-requests",
            clock=clock,
            min_age=timedelta(minutes=2),
            stale_after=timedelta(hours=1),
        )
        return rec, fake

    return store, bus, clock, make


def seed(store, job_id: str, status: JobStatus, *, updated: datetime, backend: Backend = KUBERNETES, **kw) -> None:
    store.create(Job(id=job_id, name=job_id, backend=backend, status=status, created_at=T0, updated_at=updated, dataset_file="gs://b/d", output_dir="/o", **kw))


def test_relaunches_lost_launches(world) -> None:
    store, bus, clock, make = world
    seed(store, "q-old", JobStatus.QUEUED, updated=T0)
    seed(store, "s-old", JobStatus.SUBMITTING, updated=T0)
    seed(store, "q-new", JobStatus.QUEUED, updated=clock.now() - timedelta(seconds=30))
    rec, _ = make({})
    report = rec.run_once()
    assert sorted(report.relaunched) == ["q-old", "s-old"]
    assert sorted(m[1]["job_id"] for m in bus.messages) == ["q-old", "s-old"]
    assert all(m[1]["op"] == "submit" and m[3] == m[1]["job_id"] for m in bus.messages)


def test_applies_the_backends_truth(world) -> None:
    store, _, _, make = world
    seed(store, "done", JobStatus.RUNNING, updated=T0, external_id="training/done-abc")
    seed(store, "oom", JobStatus.RUNNING, updated=T0, external_id="training/oom-abc")
    seed(store, "gone", JobStatus.CANCELLING, updated=T0, external_id="training/gone-abc", cancel_requested=True)
    rec, fake = make(
        {
            "done": Observation("Complete"),
            "oom": Observation("Failed", reason="OOMKilled", exit_code=137),
            "gone": Observation("Deleted"),
        }
    )
    report = rec.run_once()
    assert sorted(report.updated) == ["done", "gone", "oom"]
    assert store.get("done").status is JobStatus.SUCCEEDED
    oom = store.get("oom")
    assert (oom.status, oom.status_reason, oom.failure_class, oom.exit_code) == (JobStatus.FAILED, "OOMKilled", FailureClass.USER, 137)
    assert store.get("gone").status is JobStatus.CANCELLED
    assert store.list_events("done")[-1].data["source"] == "reconcile"


def test_silence_is_flagged_stale_never_guessed(world) -> None:
    store, _, clock, make = world
    seed(store, "quiet", JobStatus.RUNNING, updated=T0, external_id="training/quiet")
    seed(store, "recent", JobStatus.RUNNING, updated=clock.now() - timedelta(minutes=30), external_id="training/recent")
    rec, _ = make({"quiet": None, "recent": Observation("Running")})
    report = rec.run_once()
    assert report.stale == ["quiet"]
    quiet = store.get("quiet")
    assert quiet.status is JobStatus.RUNNING and quiet.status_reason == "Stale"  # still running: no evidence otherwise
    assert store.get("recent").status_reason is None
    clock.t += timedelta(minutes=5)
    assert rec.run_once().stale == []  # flagged once


def test_transient_backend_errors_are_reported_not_fatal(world) -> None:
    store, _, _, make = world
    seed(store, "a", JobStatus.RUNNING, updated=T0, external_id="training/a")
    seed(store, "b", JobStatus.RUNNING, updated=T0, external_id="training/b")
    rec, _ = make({"a": TransientError("API server 503"), "b": Observation("Complete")})
    report = rec.run_once()
    assert "a" in report.errors and report.updated == ["b"]


def test_dry_runs_and_terminal_jobs_are_skipped(world) -> None:
    store, bus, _, make = world
    seed(store, "dry", JobStatus.SUBMITTED, updated=T0, dry_run=True, external_id="training/dry")
    seed(store, "ok", JobStatus.SUCCEEDED, updated=T0, external_id="training/ok")
    rec, fake = make({})
    assert rec.run_once().checked == 0 and fake.asked == [] and bus.messages == []


def test_local_process_lost(world) -> None:
    store, _, _, make = world
    seed(store, "l1", JobStatus.RUNNING, updated=T0, backend=LOCAL, external_id="local:4242")
    rec, _ = make({"l1": Observation("lost")}, LOCAL)
    rec.run_once()
    job = store.get("l1")
    assert (job.status, job.status_reason, job.failure_class) == (JobStatus.FAILED, "ProcessLost", FailureClass.INFRA)
