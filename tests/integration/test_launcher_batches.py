"""Launcher.handle_batch / _submit_many (shared/usecases/launching.py) over a real SQLite store and a fake backend.

A batch of launch messages has one outcome per message: None (ack) or the exception to retry it with.
Submits share the store's compare-and-sets but each job is launched exactly once and fails or is retried
on its own; anything else (cancel ops, malformed messages) goes through `handle`.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from shared.adapters.inline_bus import InlineBus
from shared.adapters.sqlite_store import SqliteJobStore
from shared.domain.backends.kubernetes import KUBERNETES
from shared.domain.backends.vertex import VERTEX
from shared.domain.job import Job
from shared.domain.status import FailureClass, JobStatus
from shared.errors import PermanentError, TransientError
from shared.messages import Message
from shared.ports import Observation, Submission
from shared.usecases.launching import Launcher
from shared.usecases.service import OP_CANCEL, OP_SUBMIT, launch_message
from tests.fakes.jobs import make_job

TOPIC = "train-requests"


class FakeBackend:
    """Records submits and cancels; `fail[job_id]` is raised by that job's next submits."""

    name = "kubernetes"

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.submits: list[tuple[str, dict[str, str]]] = []
        self.cancels: list[str] = []
        self.fail: dict[str, BaseException] = {}
        self.during_submit: dict[str, Any] = {}  # job id -> callable run inside its submit

    def submit(self, job: Job, env: dict[str, str]) -> Submission:
        with self.lock:
            self.submits.append((job.id, dict(env)))
        hook = self.during_submit.get(job.id)
        if hook is not None:
            hook()
        exc = self.fail.get(job.id)
        if exc is not None:
            raise exc
        return Submission(external_id=f"ns/{job.id}", command="train.py", manifest={"kind": "Job"})

    def cancel(self, job: Job) -> bool | None:
        with self.lock:
            self.cancels.append(job.id)
        return True

    def observe(self, job: Job) -> Observation | None:
        return None

    def submitted(self, job_id: str) -> int:
        return sum(1 for j, _ in self.submits if j == job_id)


class Harness:
    def __init__(self, tmp_path: Path, n: int = 0):
        self.store = SqliteJobStore(tmp_path / "jobs.db")
        self.backend = FakeBackend()
        self.launcher = Launcher(store=self.store, backends={KUBERNETES: self.backend})
        self.ids = [self.add(i) for i in range(n)]
        self.seq = 0

    def add(self, i: int, **kw) -> str:
        return self.store.create(make_job(i, **kw)).job.id

    def message(self, job_id: Any, op: str = OP_SUBMIT, env: dict | None = None, data: Any = None) -> Message:
        self.seq += 1
        body = data if data is not None else launch_message(job_id, op, env if env is not None else {"HF_TOKEN": f"t-{job_id}"})
        return Message(id=f"m{self.seq}", topic=TOPIC, data=body, ordering_key=job_id if isinstance(job_id, str) else None)

    def status(self, job_id: str) -> JobStatus:
        return self.store.get(job_id).status


@pytest.fixture
def h(tmp_path: Path) -> Harness:
    harness = Harness(tmp_path, n=5)
    yield harness
    harness.store.close()


def test_a_batch_of_submits_is_launched(h: Harness) -> None:
    outcomes = h.launcher.handle_batch([h.message(j) for j in h.ids])
    assert outcomes == [None] * 5
    for job_id in h.ids:
        job = h.store.get(job_id)
        assert job.status is JobStatus.SUBMITTED
        assert job.external_id == f"ns/{job_id}" and job.manifest == {"kind": "Job"} and job.command == "train.py"
        assert job.version == 3  # queued -> submitting -> submitted: one write each
    assert sorted(h.backend.submits) == sorted((j, {"HF_TOKEN": f"t-{j}"}) for j in h.ids)  # each once, its own env


def test_a_transient_failure_is_that_message_s_outcome_only(h: Harness) -> None:
    blip = TransientError("api 503")
    h.backend.fail[h.ids[2]] = blip
    outcomes = h.launcher.handle_batch([h.message(j) for j in h.ids])
    assert outcomes[2] is blip
    assert [o for i, o in enumerate(outcomes) if i != 2] == [None] * 4
    assert h.status(h.ids[2]) is JobStatus.SUBMITTING  # claimed, left for the retry
    assert h.store.get(h.ids[2]).external_id is None
    assert [h.status(j) for i, j in enumerate(h.ids) if i != 2] == [JobStatus.SUBMITTED] * 4
    # The retry (a job left `submitting`) launches it; the others are not launched again.
    del h.backend.fail[h.ids[2]]
    assert h.launcher.handle_batch([h.message(j) for j in h.ids]) == [None] * 5
    assert h.status(h.ids[2]) is JobStatus.SUBMITTED
    assert [h.backend.submitted(j) for j in h.ids] == [1, 1, 2, 1, 1]


def test_an_unknown_exception_from_submit_is_retried_too(h: Harness) -> None:
    boom = RuntimeError("unexpected")
    h.backend.fail[h.ids[0]] = boom
    outcomes = h.launcher.handle_batch([h.message(j) for j in h.ids[:2]])
    assert outcomes == [boom, None]
    assert h.status(h.ids[0]) is JobStatus.SUBMITTING


@pytest.mark.parametrize("failure_class, expected", [(FailureClass.QUOTA.value, FailureClass.QUOTA), (None, FailureClass.USER)], ids=["quota", "default-user"])
def test_a_permanent_failure_fails_that_job_and_acks(h: Harness, failure_class, expected) -> None:
    h.backend.fail[h.ids[1]] = PermanentError("image not found", reason="ImagePullFailed", failure_class=failure_class)
    outcomes = h.launcher.handle_batch([h.message(j) for j in h.ids])
    assert outcomes == [None] * 5
    failed = h.store.get(h.ids[1])
    assert failed.status is JobStatus.FAILED
    assert failed.status_reason == "ImagePullFailed" and failed.failure_class is expected
    assert "image not found" in failed.error and failed.finished_at is not None
    assert [h.status(j) for i, j in enumerate(h.ids) if i != 1] == [JobStatus.SUBMITTED] * 4
    # Redelivered: nothing to launch any more.
    assert h.launcher.handle_batch([h.message(h.ids[1])]) == [None]
    assert h.backend.submitted(h.ids[1]) == 1


def test_a_job_whose_backend_is_not_deployed_fails_as_infra(h: Harness) -> None:
    vertex = h.add(50, backend=VERTEX)
    outcomes = h.launcher.handle_batch([h.message(vertex), h.message(h.ids[0])])
    assert outcomes == [None, None]
    job = h.store.get(vertex)
    assert job.status is JobStatus.FAILED and job.status_reason == "BackendUnavailable" and job.failure_class is FailureClass.INFRA
    assert h.status(h.ids[0]) is JobStatus.SUBMITTED


def test_an_unknown_job_is_acked(h: Harness) -> None:
    outcomes = h.launcher.handle_batch([h.message("no-such-job"), h.message(h.ids[0]), h.message("another-ghost")])
    assert outcomes == [None, None, None]
    assert h.status(h.ids[0]) is JobStatus.SUBMITTED
    assert [j for j, _ in h.backend.submits] == [h.ids[0]]
    assert h.store.get("no-such-job") is None


def test_a_mixed_batch(h: Harness) -> None:
    # ids[0]: submitted earlier, then a cancel was requested (what the api does before publishing it).
    h.launcher.submit(h.ids[0], {})
    h.store.update(h.ids[0], lambda j: j.replace(status=JobStatus.CANCELLING, cancel_requested=True))
    # ids[1]: cancelled by the api while queued (final at once): a cancel op for it leaves it alone.
    h.store.update(h.ids[1], lambda j: j.replace(status=JobStatus.CANCELLED, cancel_requested=True))
    messages = [
        h.message(h.ids[2]),
        h.message(h.ids[0], op=OP_CANCEL),
        h.message(None, data={"op": "submit"}),  # no job_id
        h.message(h.ids[3]),
        h.message(None, data=["not", "an", "object"]),
        h.message(h.ids[4], op="reboot"),  # unknown op
        h.message(h.ids[1], op=OP_CANCEL),
    ]
    outcomes = h.launcher.handle_batch(messages)
    assert outcomes[0] is None and outcomes[1] is None and outcomes[3] is None and outcomes[6] is None
    for i in (2, 4, 5):
        assert isinstance(outcomes[i], PermanentError) and outcomes[i].reason == "MalformedMessage"
    assert "job_id" in str(outcomes[2]) and "reboot" in str(outcomes[5])
    assert h.status(h.ids[2]) is JobStatus.SUBMITTED and h.status(h.ids[3]) is JobStatus.SUBMITTED
    assert h.status(h.ids[0]) is JobStatus.CANCELLED and h.backend.cancels == [h.ids[0]]
    assert h.status(h.ids[1]) is JobStatus.CANCELLED
    assert h.status(h.ids[4]) is JobStatus.QUEUED  # an unknown op launches nothing


def test_duplicates_of_one_job_in_a_batch_launch_it_once(h: Harness) -> None:
    job_id = h.ids[0]
    outcomes = h.launcher.handle_batch([h.message(job_id), h.message(h.ids[1]), h.message(job_id), h.message(job_id)])
    assert outcomes == [None] * 4
    assert h.backend.submitted(job_id) == 1 and h.backend.submitted(h.ids[1]) == 1
    assert h.status(job_id) is JobStatus.SUBMITTED


def test_redelivery_of_a_submitted_job_is_a_no_op(h: Harness) -> None:
    assert h.launcher.handle_batch([h.message(j) for j in h.ids]) == [None] * 5
    before = {j: h.store.get(j) for j in h.ids}
    assert h.launcher.handle_batch([h.message(j) for j in h.ids]) == [None] * 5
    assert len(h.backend.submits) == 5
    assert {j: h.store.get(j) for j in h.ids} == before  # not even a version bump


def test_jobs_that_are_not_queued_are_not_launched(h: Harness) -> None:
    h.store.update(h.ids[0], lambda j: j.replace(status=JobStatus.CANCELLED, cancel_requested=True))
    h.store.update(h.ids[1], lambda j: j.replace(status=JobStatus.FAILED))
    h.store.update(h.ids[2], lambda j: j.replace(cancel_requested=True))  # queued, but a cancel is pending
    assert h.launcher.handle_batch([h.message(j) for j in h.ids]) == [None] * 5
    assert sorted(j for j, _ in h.backend.submits) == sorted(h.ids[3:])
    assert h.status(h.ids[2]) is JobStatus.QUEUED


def test_a_job_left_submitting_by_a_crash_is_launched_again(h: Harness) -> None:
    h.store.update(h.ids[0], lambda j: j.replace(status=JobStatus.SUBMITTING))
    assert h.launcher.handle_batch([h.message(h.ids[0]), h.message(h.ids[1])]) == [None, None]
    assert h.status(h.ids[0]) is JobStatus.SUBMITTED and h.backend.submitted(h.ids[0]) == 1


def test_a_cancel_during_the_submission_is_honoured(h: Harness) -> None:
    """The api marks the job `cancelling` while its backend submit is in flight: the launcher's record
    of the submission loses its compare-and-set, reads the job again, keeps `cancelling`, records the
    external id and stops what it just created."""
    target = h.ids[1]
    h.backend.during_submit[target] = lambda: h.store.update(
        target, lambda j: j.replace(status=JobStatus.CANCELLING, cancel_requested=True, status_reason="CancelRequested")
    )
    outcomes = h.launcher.handle_batch([h.message(j) for j in h.ids])
    assert outcomes == [None] * 5
    job = h.store.get(target)
    assert job.status is JobStatus.CANCELLING and job.cancel_requested and job.external_id == f"ns/{target}"
    assert h.backend.cancels == [target]
    assert [h.status(j) for j in h.ids if j != target] == [JobStatus.SUBMITTED] * 4


def test_submit_alone_matches_the_batch(h: Harness) -> None:
    assert h.launcher.submit("ghost", {}) is None
    job = h.launcher.submit(h.ids[0], {"A": "b"})
    assert job.status is JobStatus.SUBMITTED and h.backend.submits == [(h.ids[0], {"A": "b"})]
    h.backend.fail[h.ids[1]] = TransientError("later")
    with pytest.raises(TransientError, match="later"):
        h.launcher.submit(h.ids[1], {})


def test_through_the_inline_bus(tmp_path: Path) -> None:
    """The embedded wiring: handle + handle_batch on a batch subscription. A blip is retried, a job that
    keeps failing is dead-lettered (failed, LaunchFailed), every other job is launched once."""
    h = Harness(tmp_path, n=40)
    calls: list[int] = []

    def batch(messages):
        calls.append(len(messages))
        return h.launcher.handle_batch(messages)

    class Flaky:
        def __init__(self) -> None:
            self.left = 1

    flaky = Flaky()

    def blip_once() -> None:
        if flaky.left:
            flaky.left -= 1
            raise TransientError("blip")

    h.backend.during_submit[h.ids[3]] = blip_once
    h.backend.fail[h.ids[7]] = TransientError("always down")
    bus = InlineBus(max_attempts=3, retry_base_seconds=0.01)
    bus.subscribe(TOPIC, h.launcher.handle, dead_letter=h.launcher.dead_letter, batch_handler=batch, max_batch=16, linger_seconds=0.01)
    bus.start(workers=2)
    try:
        for job_id in h.ids:
            bus.publish(TOPIC, launch_message(job_id, OP_SUBMIT, {"HF_TOKEN": "x"}), ordering_key=job_id)
        assert bus.drain(10)
    finally:
        bus.stop()
    assert max(calls) > 1  # batched
    for i, job_id in enumerate(h.ids):
        job = h.store.get(job_id)
        if i == 7:
            assert job.status is JobStatus.FAILED and job.status_reason == "LaunchFailed" and job.failure_class is FailureClass.INFRA
            assert h.backend.submitted(job_id) == 3
        else:
            assert job.status is JobStatus.SUBMITTED, (i, job.status)
            assert h.backend.submitted(job_id) == (2 if i == 3 else 1)
