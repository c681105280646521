"""Event translation: golden sequences per source, and order-independence of the final job."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from shared.domain.backend import BackendKind as Backend
from shared.domain.backends.kubernetes import KUBERNETES
from shared.domain.backends.local import LOCAL
from shared.domain.backends.vertex import VERTEX
from shared.domain.events import EventLog, TrainingEvent, from_message
from shared.domain.job import Job
from shared.domain.status import FailureClass, JobStatus
from shared.domain.translate import job_after_event, parse_progress
from tests.fakes.policy import BUILT_IN_RULES

T0 = datetime(2026, 11, 29, 12, tzinfo=UTC)
NOW = T0 + timedelta(hours=1)
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "events"


def job(backend: Backend = LOCAL, status: JobStatus = JobStatus.SUBMITTED, **kw) -> Job:
    return Job(id="j1", name="j", backend=backend, status=status, created_at=T0, updated_at=T0, dataset_file="gs://b/d", output_dir="/o", **kw)


def ev(source: str, state: str | None, t: int, **kw) -> TrainingEvent:
    return TrainingEvent(job_id="j1", source=source, observed_at=T0 + timedelta(seconds=t), state=state, **kw)


def run(j: Job, events: list[TrainingEvent]) -> tuple[Job, list[str]]:
    lines: list[str] = []
    for e in events:
        d = job_after_event(j, e, NOW, BUILT_IN_RULES)
        if d.job is not None:
            j = d.job
        lines += [l.message for l in d.lines]
    return j, lines


# (name, backend, events, final status, reason, failure class, exit code)
GOLDEN = [
    ("local success", LOCAL, [ev("local", "started", 1), ev("local", "exited", 9, exit_code=0)], JobStatus.SUCCEEDED, "Completed", None, 0),
    ("local bad input", LOCAL, [ev("local", "started", 1), ev("local", "exited", 2, exit_code=2)], JobStatus.FAILED, "BadInput", FailureClass.USER, 2),
    (
        "local runtime failure",
        LOCAL,
        [ev("local", "started", 1), ev("local", "exited", 2, exit_code=1)],
        JobStatus.FAILED,
        "TrainerError",
        FailureClass.USER,
        1,
    ),
    (
        "local SIGTERM is preemption",
        LOCAL,
        [ev("local", "started", 1), ev("local", "exited", 5, exit_code=143)],
        JobStatus.FAILED,
        "Preempted",
        FailureClass.PREEMPTED,
        143,
    ),
    (
        "local killed by signal",
        LOCAL,
        [ev("local", "started", 1), ev("local", "exited", 5, exit_code=-11)],
        JobStatus.FAILED,
        "Signal11",
        FailureClass.INFRA,
        -11,
    ),
    (
        "k8s complete",
        KUBERNETES,
        [ev("kubernetes", "Pending", 1), ev("kubernetes", "Running", 2), ev("kubernetes", "Complete", 9)],
        JobStatus.SUCCEEDED,
        "Completed",
        None,
        None,
    ),
    (
        "k8s unschedulable stays submitted",
        KUBERNETES,
        [ev("kubernetes", "Pending", 1, reason="Unschedulable")],
        JobStatus.SUBMITTED,
        "Unschedulable",
        None,
        None,
    ),
    (
        "k8s image pull backoff waits",
        KUBERNETES,
        [ev("kubernetes", "Waiting", 1, reason="ImagePullBackOff")],
        JobStatus.SUBMITTED,
        "ImagePullBackOff",
        None,
        None,
    ),
    (
        "k8s image pull gives up",
        KUBERNETES,
        [ev("kubernetes", "Waiting", 1, reason="ErrImagePull"), ev("kubernetes", "Failed", 300, reason="ImagePullBackOff")],
        JobStatus.FAILED,
        "ImagePullBackOff",
        FailureClass.USER,
        None,
    ),
    (
        "k8s OOMKilled",
        KUBERNETES,
        [ev("kubernetes", "Running", 1), ev("kubernetes", "Failed", 5, reason="OOMKilled", exit_code=137)],
        JobStatus.FAILED,
        "OOMKilled",
        FailureClass.USER,
        137,
    ),
    (
        "k8s backoff limit",
        KUBERNETES,
        [ev("kubernetes", "Running", 1), ev("kubernetes", "Failed", 5, reason="BackoffLimitExceeded", exit_code=1)],
        JobStatus.FAILED,
        "BackoffLimitExceeded",
        FailureClass.USER,
        1,
    ),
    (
        "k8s deadline",
        KUBERNETES,
        [ev("kubernetes", "Running", 1), ev("kubernetes", "Failed", 5, reason="DeadlineExceeded")],
        JobStatus.FAILED,
        "DeadlineExceeded",
        FailureClass.USER,
        None,
    ),
    (
        "k8s eviction is preemption",
        KUBERNETES,
        [ev("kubernetes", "Running", 1), ev("kubernetes", "Failed", 5, reason="Evicted")],
        JobStatus.FAILED,
        "Evicted",
        FailureClass.PREEMPTED,
        None,
    ),
    (
        "vertex success",
        VERTEX,
        [
            ev("vertex", "JOB_STATE_QUEUED", 1),
            ev("vertex", "JOB_STATE_PENDING", 2),
            ev("vertex", "JOB_STATE_RUNNING", 3),
            ev("vertex", "JOB_STATE_SUCCEEDED", 9),
        ],
        JobStatus.SUCCEEDED,
        "Completed",
        None,
        None,
    ),
    (
        "vertex failure with error",
        VERTEX,
        [ev("vertex", "JOB_STATE_RUNNING", 3), ev("vertex", "JOB_STATE_FAILED", 9, message="The replica workerpool0-0 exited with a non-zero status of 1.")],
        JobStatus.FAILED,
        "Failed",
        FailureClass.USER,
        None,
    ),
    (
        "vertex quota",
        VERTEX,
        [ev("vertex", "JOB_STATE_FAILED", 9, message="Quota exceeded for aiplatform.googleapis.com/custom_model_training_nvidia_a100_gpus")],
        JobStatus.FAILED,
        "QuotaExceeded",
        FailureClass.QUOTA,
        None,
    ),
    (
        "vertex expired",
        VERTEX,
        [ev("vertex", "JOB_STATE_PENDING", 1), ev("vertex", "JOB_STATE_EXPIRED", 9)],
        JobStatus.FAILED,
        "Expired",
        FailureClass.CAPACITY,
        None,
    ),
    (
        "vertex cancelled",
        VERTEX,
        [ev("vertex", "JOB_STATE_RUNNING", 1), ev("vertex", "JOB_STATE_CANCELLING", 2), ev("vertex", "JOB_STATE_CANCELLED", 3)],
        JobStatus.CANCELLED,
        "Cancelled",
        None,
        None,
    ),
    ("reconcile speaks the backend's states", VERTEX, [ev("reconcile", "JOB_STATE_SUCCEEDED", 9)], JobStatus.SUCCEEDED, "Completed", None, None),
    (
        "reconcile flags a stale job",
        KUBERNETES,
        [ev("reconcile", "Stale", 9, message="no sign of life for 3600s")],
        JobStatus.SUBMITTED,
        "Stale",
        None,
        None,
    ),
]


@pytest.mark.parametrize("name,backend,events,status,reason,fc,code", GOLDEN, ids=[g[0] for g in GOLDEN])
def test_golden(name, backend, events, status, reason, fc, code) -> None:
    final, _ = run(job(backend), events)
    assert (final.status, final.status_reason, final.failure_class, final.exit_code) == (status, reason, fc, code)
    if status.is_terminal():
        assert final.finished_at == events[-1].observed_at


@pytest.mark.parametrize("name,backend,events,status,reason,fc,code", [g for g in GOLDEN if len(g[2]) > 1], ids=[g[0] for g in GOLDEN if len(g[2]) > 1])
def test_every_order_ends_the_same(name, backend, events, status, reason, fc, code) -> None:
    """Late, duplicated and reordered events: every permutation (each event twice) ends in one final job."""
    finals = set()
    for perm in itertools.permutations(events):
        final, _ = run(job(backend), list(perm) + list(perm))
        finals.add((final.status, final.status_reason, final.failure_class, final.exit_code, final.started_at, final.finished_at))
    assert len(finals) == 1, finals
    assert next(iter(finals))[0] == status


def test_cancel_requested_turns_sigterm_into_cancelled() -> None:
    final, _ = run(job(cancel_requested=True, status=JobStatus.CANCELLING), [ev("local", "exited", 3, exit_code=143)])
    assert final.status is JobStatus.CANCELLED and final.failure_class is None


def test_terminal_never_moves_but_late_logs_land() -> None:
    done, _ = run(job(), [ev("local", "started", 1), ev("local", "exited", 2, exit_code=0)])
    late = ev("local", "running", 1, logs=(EventLog(1, T0, "stdout", "last words"),))
    d = job_after_event(done, late, NOW, BUILT_IN_RULES)
    assert d.job.status is JobStatus.SUCCEEDED and [l.message for l in d.lines] == ["last words"]


def test_duplicate_log_batches_are_dropped_and_progress_lifted() -> None:
    batch1 = ev(
        "local", "running", 1, logs=(EventLog(1, T0, "stdout", "hello"), EventLog(2, T0, "stdout", 'PROGRESS {"event": "step", "step": 5, "loss": 1.5}'))
    )
    batch2 = ev("local", "running", 2, logs=(EventLog(3, T0, "stderr", "warn"),))
    final, lines = run(job(), [batch1, batch1, batch2, batch1, batch2])
    assert lines == ["hello", 'PROGRESS {"event": "step", "step": 5, "loss": 1.5}', "warn"]
    assert final.progress == {"event": "step", "step": 5, "loss": 1.5}
    assert final.log_cursors == {"local": 3}


def test_older_progress_never_overwrites_newer() -> None:
    newer = ev("local", "running", 10, progress={"step": 10})
    older = ev("local", "running", 5, progress={"step": 5})
    final, _ = run(job(), [newer, older])
    assert final.progress == {"step": 10}


@pytest.mark.parametrize(
    "line,expected",
    [('PROGRESS {"step": 1}', {"step": 1}), ("PROGRESS not json", None), ("progress {}", None), ("PROGRESS [1]", None), ("plain", None)],
)
def test_parse_progress(line, expected) -> None:
    assert parse_progress(line) == expected


def test_envelope_roundtrip() -> None:
    e = ev("kubernetes", "Failed", 3, reason="OOMKilled", exit_code=137, logs=(EventLog(4, T0, "stderr", "Killed"),), progress={"step": 2}, event_id="e1")
    back = from_message(json.loads(json.dumps(e.to_message())), NOW)
    assert back == e


@pytest.mark.parametrize("path", sorted(FIXTURES.glob("*.json")), ids=lambda p: p.stem)
def test_recorded_sequences(path: Path) -> None:
    """Golden fixtures: recorded event sequences and the final job each must produce."""
    spec = json.loads(path.read_text())
    j = job(Backend(spec["backend"]), JobStatus(spec.get("initial", "submitted")), cancel_requested=spec.get("cancel_requested", False))
    events = [from_message(m, NOW) for m in spec["events"]]
    final, lines = run(j, events)
    want = spec["final"]
    assert final.status.value == want["status"]
    assert final.status_reason == want.get("statusReason")
    assert (final.failure_class.value if final.failure_class else None) == want.get("failureClass")
    assert final.exit_code == want.get("exitCode")
    assert len(lines) == want.get("logLines", len(lines))
    if "progress" in want:
        assert final.progress == want["progress"]


def test_event_id_makes_a_redelivery_a_no_op() -> None:
    line = ev("vertex", None, 1, event_id="insert-1", logs=(EventLog(0, T0, "stdout", "epoch 1"),))
    final, lines = run(job(VERTEX), [line, line, line])
    assert lines == ["epoch 1"] and final.recent_event_ids == ("insert-1",)


def test_each_pod_has_its_own_log_cursor() -> None:
    first_pod = ev("kubernetes", None, 1, logs=(EventLog(1, T0, "stdout", "pod a 1"), EventLog(2, T0, "stdout", "pod a 2")), extra={"log_stream": "job-a-1"})
    retried = ev("kubernetes", None, 2, logs=(EventLog(1, T0, "stdout", "pod b 1"),), extra={"log_stream": "job-a-2"})
    final, lines = run(job(KUBERNETES), [first_pod, retried, first_pod, retried])
    assert lines == ["pod a 1", "pod a 2", "pod b 1"]
    assert final.log_cursors == {"kubernetes/job-a-1": 2, "kubernetes/job-a-2": 1}
