"""The pure reading of Kubernetes Jobs and pods (`shared/domain/k8s_observe.py`): one row per case."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.domain import k8s_observe as ko
from shared.domain.backends.kubernetes import KUBERNETES, interpret_kubernetes
from shared.domain.events import TrainingEvent
from shared.domain.job import Job
from shared.domain.status import FailureClass, JobStatus

NOW = datetime(2026, 11, 29, 12, tzinfo=UTC)
JOB_UID = "0b7d6d1e-1111-4c1e-9d7a-5e0f0a0a0a0a"


def pod(
    phase: str = "Pending",
    *,
    name: str = "p-1",
    created: str = "2026-11-29T11:00:00Z",
    conditions: list | None = None,
    state: dict | None = None,
    last: dict | None = None,
    reason: str | None = None,
    message: str | None = None,
) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": phase}
    if conditions:
        status["conditions"] = conditions
    if state is not None or last is not None:
        cs: dict[str, Any] = {"name": "trainer", "state": state or {}}
        if last is not None:
            cs["lastState"] = last
        status["containerStatuses"] = [cs]
    if reason:
        status["reason"] = reason
    if message:
        status["message"] = message
    return {
        "metadata": {
            "name": name,
            "uid": f"uid-{name}",
            "creationTimestamp": created,
            "annotations": {"training-platform/job-id": "job-1"},
            "ownerReferences": [{"kind": "Job", "uid": JOB_UID, "name": "j"}],
        },
        "spec": {"containers": [{"name": "sidecar"}, {"name": "trainer"}]},
        "status": status,
    }


def job(*conditions: dict, backoff: int | None = 0, failed: int = 0) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    if backoff is not None:
        spec["backoffLimit"] = backoff
    status: dict[str, Any] = {"conditions": list(conditions)} if conditions else {}
    if failed:
        status["failed"] = failed
    return {"metadata": {"name": "j", "uid": JOB_UID, "annotations": {"training-platform/job-id": "job-1"}}, "spec": spec, "status": status}


def cond(kind: str, reason: str | None = None, status: str = "True", message: str | None = None, at: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": kind, "status": status}
    if reason:
        out["reason"] = reason
    if message:
        out["message"] = message
    if at:
        out["lastTransitionTime"] = at
    return out


UNSCHEDULABLE = cond("PodScheduled", "Unschedulable", "False", "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.")
OOM = {"terminated": {"reason": "OOMKilled", "exitCode": 137}}
OOM_NO_CODE = {"terminated": {"reason": "OOMKilled"}}
ERROR_2 = {"terminated": {"reason": "Error", "exitCode": 2, "message": "bad flag"}}
DONE = {"terminated": {"reason": "Completed", "exitCode": 0}}
RUNNING = {"running": {"startedAt": "2026-11-29T11:01:00Z"}}


def waiting(reason: str, message: str = "") -> dict[str, Any]:
    return {"waiting": {"reason": reason, "message": message or reason}}


S = ko.ObservedState

# (name, pod, first_seen offset in seconds before NOW (None: never seen), expected)
POD_ROWS = [
    ("pending, nothing known", pod(), None, S("Pending")),
    ("unschedulable", pod(conditions=[UNSCHEDULABLE]), None, S("Pending", "Unschedulable", UNSCHEDULABLE["message"])),
    (
        "container creating",
        pod(conditions=[cond("PodScheduled")], state=waiting("ContainerCreating", "")),
        None,
        S("Pending", "ContainerCreating", "ContainerCreating"),
    ),
    ("image pull, just seen", pod(state=waiting("ImagePullBackOff", "Back-off pulling image")), 0, S("Waiting", "ImagePullBackOff", "Back-off pulling image")),
    ("image pull, never seen counts as now", pod(state=waiting("ErrImagePull", "not found")), None, S("Waiting", "ErrImagePull", "not found")),
    ("image pull within the grace", pod(state=waiting("ImagePullBackOff", "x")), 299, S("Waiting", "ImagePullBackOff", "x")),
    ("image pull past the grace", pod(state=waiting("ImagePullBackOff", "x")), 300, S("Failed", "ImagePullBackOff", "x (still failing after 300s)")),
    (
        "invalid image name past the grace",
        pod(state=waiting("InvalidImageName", "bad")),
        900,
        S("Failed", "InvalidImageName", "bad (still failing after 900s)"),
    ),
    (
        "missing secret past the grace",
        pod(state=waiting("CreateContainerConfigError", "secret not found")),
        301,
        S("Failed", "CreateContainerConfigError", "secret not found (still failing after 301s)"),
    ),
    ("running", pod("Running", state=RUNNING), None, S("Running")),
    ("succeeded", pod("Succeeded", state=DONE), None, S("Complete", "Completed", None, 0)),
    ("oom killed", pod("Failed", state=OOM), None, S("Failed", "OOMKilled", "the trainer ran out of memory", 137)),
    ("oom killed without a code", pod("Failed", state=OOM_NO_CODE), None, S("Failed", "OOMKilled", "the trainer ran out of memory", 137)),
    ("oom in lastState", pod("Failed", state={}, last=OOM), None, S("Failed", "OOMKilled", "the trainer ran out of memory", 137)),
    ("error exit 2", pod("Failed", state=ERROR_2), None, S("Failed", "Error", "bad flag", 2)),
    (
        "evicted",
        pod("Failed", reason="Evicted", message="The node was low on resource: memory."),
        None,
        S("Failed", "Evicted", "The node was low on resource: memory."),
    ),
    (
        "preempted",
        pod(
            "Failed",
            conditions=[cond("DisruptionTarget", "PreemptionByScheduler", message="preempted by a higher priority pod")],
            state={"terminated": {"reason": "Error", "exitCode": 143}},
        ),
        None,
        S("Failed", "Preempted", "preempted by a higher priority pod", 143),
    ),
    (
        "evicted through the eviction API",
        pod("Failed", conditions=[cond("DisruptionTarget", "EvictionByEvictionAPI")]),
        None,
        S("Failed", "Evicted", "EvictionByEvictionAPI"),
    ),
    (
        "disruption condition not true",
        pod("Failed", conditions=[cond("DisruptionTarget", "PreemptionByScheduler", "False")], state=OOM),
        None,
        S("Failed", "OOMKilled", "the trainer ran out of memory", 137),
    ),
    ("failed without details", pod("Failed"), None, S("Failed", "Failed")),
    ("unknown phase: no opinion", pod("Unknown"), None, S(None)),
]


@pytest.mark.parametrize("name,obj,seen,want", POD_ROWS, ids=[r[0] for r in POD_ROWS])
def test_pod_state(name: str, obj: dict, seen: int | None, want: ko.ObservedState) -> None:
    first_seen = NOW - timedelta(seconds=seen) if seen is not None else None
    assert ko.pod_state(obj, NOW, first_seen, 300) == want


OOM_POD = pod("Failed", state=OOM)
# (name, job, pods, expected)
JOB_ROWS = [
    ("job, no pods yet", job(), [], S("Pending")),
    ("no job, no pods: no opinion", None, [], S(None)),
    ("pod before its Job: running is trusted", None, [pod("Running", state=RUNNING)], S("Running")),
    ("pod before its Job: a failure waits for the Job", None, [OOM_POD], S(None)),
    ("pod before its Job: success waits for the Job", None, [pod("Succeeded", state=DONE)], S(None)),
    ("complete", job(cond("Complete")), [pod("Succeeded", state=DONE)], S("Complete", "Completed", None, 0)),
    ("complete, pods gone", job(cond("Complete")), [], S("Complete", "Completed", None, 0)),
    (
        "complete condition not true yet, pod succeeded",
        job(cond("Complete", status="False")),
        [pod("Succeeded", state=DONE)],
        S("Complete", "Completed", None, 0),
    ),
    (
        "failed: the pod's OOMKilled wins over BackoffLimitExceeded",
        job(cond("Failed", "BackoffLimitExceeded", message="Job has reached the specified backoff limit"), failed=1),
        [OOM_POD],
        S("Failed", "OOMKilled", "the trainer ran out of memory", 137),
    ),
    (
        "failed: generic pod error keeps the Job's reason, adds the exit code",
        job(cond("Failed", "BackoffLimitExceeded", message="limit")),
        [pod("Failed", state=ERROR_2)],
        S("Failed", "BackoffLimitExceeded", "limit", 2),
    ),
    ("failed: no pods left", job(cond("Failed", "BackoffLimitExceeded", message="limit")), [], S("Failed", "BackoffLimitExceeded", "limit")),
    (
        "failed: deadline exceeded ignores the SIGTERM exit",
        job(cond("Failed", "DeadlineExceeded", message="Job was active longer than specified deadline")),
        [pod("Failed", state={"terminated": {"reason": "Error", "exitCode": 143}})],
        S("Failed", "DeadlineExceeded", "Job was active longer than specified deadline"),
    ),
    (
        "failure target counts as failed",
        job(cond("FailureTarget", "BackoffLimitExceeded", message="limit")),
        [OOM_POD],
        S("Failed", "OOMKilled", "the trainer ran out of memory", 137),
    ),
    (
        "failed: the newest failed pod speaks",
        job(cond("Failed", "BackoffLimitExceeded"), backoff=1),
        [pod("Failed", name="p-1", state=ERROR_2), pod("Failed", name="p-2", created="2026-11-29T11:30:00Z", state=OOM)],
        S("Failed", "OOMKilled", "the trainer ran out of memory", 137),
    ),
    (
        "evicted pod, backoff 0: failed before the Job says so",
        job(),
        [pod("Failed", reason="Evicted", message="low memory")],
        S("Failed", "Evicted", "low memory"),
    ),
    (
        "oom with retries left: back-off",
        job(backoff=2),
        [OOM_POD],
        S("Pending", "BackOff", "pod p-1 failed (OOMKilled, exit 137); the Job retries (1 of 3 attempts used)"),
    ),
    (
        "default backoff limit is 6",
        job(backoff=None),
        [OOM_POD],
        S("Pending", "BackOff", "pod p-1 failed (OOMKilled, exit 137); the Job retries (1 of 7 attempts used)"),
    ),
    (
        "retry pod running after a failure",
        job(backoff=2, failed=1),
        [OOM_POD, pod("Running", name="p-2", created="2026-11-29T11:30:00Z", state=RUNNING)],
        S("Running"),
    ),
    ("suspended", job(cond("Suspended", "JobSuspended", message="suspended")), [], S("Pending", "Suspended", "suspended")),
    (
        "newest pod speaks while pending",
        job(backoff=3, failed=1),
        [OOM_POD, pod(name="p-2", created="2026-11-29T11:30:00Z", conditions=[UNSCHEDULABLE])],
        S("Pending", "Unschedulable", UNSCHEDULABLE["message"]),
    ),
]


@pytest.mark.parametrize("name,job_obj,pods,want", JOB_ROWS, ids=[r[0] for r in JOB_ROWS])
def test_job_state(name: str, job_obj: dict | None, pods: list, want: ko.ObservedState) -> None:
    assert ko.job_state(job_obj, pods, now=NOW) == want


def test_job_state_image_pull_grace_uses_first_seen_per_pod() -> None:
    pulling = pod(state=waiting("ImagePullBackOff", "x"))
    assert ko.job_state(job(), [pulling], now=NOW, first_seen={"uid-p-1": NOW - timedelta(seconds=10)}, image_pull_grace_seconds=30).state == "Waiting"
    failed = ko.job_state(job(), [pulling], now=NOW, first_seen={"uid-p-1": NOW - timedelta(seconds=30)}, image_pull_grace_seconds=30)
    assert (failed.state, failed.reason) == ("Failed", "ImagePullBackOff")
    # Not remembered at all: the wait starts now.
    assert ko.job_state(job(), [pulling], now=NOW, first_seen={}, image_pull_grace_seconds=30).state == "Waiting"


DELETED_ROWS = [
    ("deleted while running", job(), [pod("Running", state=RUNNING)], S("Deleted", None, "the Kubernetes Job j was deleted")),
    ("deleted after completing (TTL)", job(cond("Complete")), [], S("Complete", "Completed", None, 0)),
    ("deleted after failing", job(cond("Failed", "BackoffLimitExceeded")), [OOM_POD], S("Failed", "OOMKilled", "the trainer ran out of memory", 137)),
]


@pytest.mark.parametrize("name,job_obj,pods,want", DELETED_ROWS, ids=[r[0] for r in DELETED_ROWS])
def test_deleted_state(name: str, job_obj: dict, pods: list, want: ko.ObservedState) -> None:
    assert ko.deleted_state(job_obj, pods, now=NOW) == want


READER_ROWS = [
    ("annotation wins", {"metadata": {"annotations": {"training-platform/job-id": "Job_1"}, "labels": {"training-platform/job-id": "h-abc"}}}, "Job_1"),
    ("plain label", {"metadata": {"labels": {"training-platform/job-id": "job-2"}}}, "job-2"),
    ("hashed label is not an id", {"metadata": {"labels": {"training-platform/job-id": "h-0123"}}}, None),
    ("nothing", {"metadata": {}}, None),
]


@pytest.mark.parametrize("name,obj,want", READER_ROWS, ids=[r[0] for r in READER_ROWS])
def test_job_id_of(name: str, obj: dict, want: str | None) -> None:
    assert ko.job_id_of(obj) == want


def test_readers() -> None:
    p = pod("Running", state=RUNNING)
    assert ko.owner_job_uid(p) == JOB_UID
    assert ko.owner_job_uid({"metadata": {"labels": {"batch.kubernetes.io/controller-uid": "u2"}}}) == "u2"
    assert ko.container_name(p) == "trainer"
    assert ko.container_name({"spec": {"containers": [{"name": "main"}]}}) == "main"
    assert ko.has_started(p) and ko.has_started(pod("Failed", state=OOM)) and not ko.has_started(pod(state=waiting("ImagePullBackOff")))
    assert ko.has_started(pod("Running", state={"running": {}}))  # an empty `running` still means started
    scheduled = pod(conditions=[cond("PodScheduled", at="2026-11-29T11:50:00Z")])
    assert ko.scheduled_at(scheduled) == datetime(2026, 11, 29, 11, 50, tzinfo=UTC)
    assert ko.scheduled_at(pod()) == datetime(2026, 11, 29, 11, tzinfo=UTC)  # falls back to creation
    assert ko.current_pod([]) is None


# Every state word the watcher produces means what we want once status_sync translates it.
TRANSLATE_ROWS = [
    (S("Pending", "Unschedulable"), JobStatus.SUBMITTED, "Unschedulable", None),
    (S("Waiting", "ImagePullBackOff"), JobStatus.SUBMITTED, "ImagePullBackOff", None),
    (S("Pending", "BackOff"), JobStatus.SUBMITTED, "BackOff", None),
    (S("Running"), JobStatus.RUNNING, None, None),
    (S("Complete", "Completed", None, 0), JobStatus.SUCCEEDED, "Completed", None),
    (S("Failed", "OOMKilled", None, 137), JobStatus.FAILED, "OOMKilled", FailureClass.USER),
    (S("Failed", "ImagePullBackOff"), JobStatus.FAILED, "ImagePullBackOff", FailureClass.USER),
    (S("Failed", "Evicted"), JobStatus.FAILED, "Evicted", FailureClass.PREEMPTED),
    (S("Failed", "Preempted", None, 143), JobStatus.FAILED, "Preempted", FailureClass.PREEMPTED),
    (S("Failed", "DeadlineExceeded"), JobStatus.FAILED, "DeadlineExceeded", FailureClass.USER),
    (S("Deleted"), JobStatus.FAILED, "JobDeleted", FailureClass.INFRA),
]


@pytest.mark.parametrize("observed,status,reason,failure_class", TRANSLATE_ROWS, ids=[f"{r[0].state}-{r[0].reason}" for r in TRANSLATE_ROWS])
def test_states_translate(observed: ko.ObservedState, status: JobStatus, reason: str | None, failure_class: FailureClass | None) -> None:
    current = Job(
        id="job-1", name="j", backend=KUBERNETES, status=JobStatus.SUBMITTED, created_at=NOW, updated_at=NOW, dataset_file="gs://b/d", output_dir="/o"
    )
    ev = TrainingEvent(job_id="job-1", source="kubernetes", observed_at=NOW, state=observed.state, reason=observed.reason, exit_code=observed.exit_code)
    outcome = interpret_kubernetes(current, ev)
    assert (outcome.status, outcome.reason, outcome.failure_class) == (status, reason, failure_class)
