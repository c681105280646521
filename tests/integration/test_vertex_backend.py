"""The Vertex backend through `aiplatform_v1.JobServiceClient` (REST transport), over real HTTP, against
tests/fakes' Vertex fake: dry run, create, adopt (label filter), race convergence, cancel, errors."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from google.cloud import aiplatform_v1

from shared.adapters.sqlite_store import SqliteJobStore
from shared.adapters.vertex_backend import DRY_RUN_REASON, VertexBackend
from shared.domain import naming
from shared.domain.backends.vertex import VERTEX
from shared.domain.status import FailureClass, JobStatus
from shared.errors import TransientError
from shared.messages import Message
from shared.usecases.launching import Launcher
from shared.usecases.service import OP_CANCEL, OP_SUBMIT, launch_message
from tests.fakes import FakeVertexAPI
from tests.fakes.backends import VERTEX_HF_REF as HF_REF
from tests.fakes.backends import make_vertex_backend as make_backend
from tests.fakes.jobs import JOB_ID, README_VERTEX, job_from

PARENT = "projects/acme-ml/locations/us-central1"


@pytest.fixture
def fake():
    with FakeVertexAPI() as server:
        yield server


class Harness:
    def __init__(self, tmp_path: Path, backend: VertexBackend, body=README_VERTEX):
        self.store = SqliteJobStore(tmp_path / "jobs.db")
        self.db = tmp_path / "jobs.db"
        self.backend = backend
        self.launcher = Launcher(store=self.store, backends={VERTEX: backend})
        self.job, self.env = job_from(body)
        self.store.create(self.job)
        self.n = 0

    def deliver(self, op: str = OP_SUBMIT) -> None:
        if op == OP_CANCEL:
            self.store.update(self.job.id, lambda j: j.replace(status=JobStatus.CANCELLING, cancel_requested=True))
        self.n += 1
        self.launcher.handle(Message(id=f"m{self.n}", topic="train-requests", data=launch_message(self.job.id, op, self.env)))

    def current(self):
        return self.store.get(self.job.id)


def test_dry_run_sends_nothing(fake, tmp_path):
    h = Harness(tmp_path, make_backend(fake, submit=False))
    h.deliver()
    job = h.current()
    assert job.status is JobStatus.SUBMITTED and job.dry_run and job.status_reason == DRY_RUN_REASON
    assert "VERTEX_SUBMIT=0" in job.status_reason
    assert job.external_id == "aml-qlora-vertex-4e6f8a90" and job.manifest["displayName"] == job.external_id
    assert fake.requests == []


def test_ten_deliveries_create_one_custom_job(fake, tmp_path):
    h = Harness(tmp_path, make_backend(fake))
    for _ in range(10):
        h.deliver()
    job = h.current()
    assert job.status is JobStatus.SUBMITTED and not job.dry_run
    assert list(fake.jobs) == [job.external_id] and job.external_id.startswith(PARENT + "/customJobs/")
    created = fake.jobs[job.external_id]
    assert created["displayName"] == "aml-qlora-vertex-4e6f8a90"
    assert created["labels"] == {"job_id": JOB_ID, "managed-by": "training-platform"}
    pool = created["jobSpec"]["workerPoolSpecs"][0]
    assert pool["machineSpec"]["machineType"] == "a2-highgpu-1g" and pool["machineSpec"]["acceleratorCount"] == 1
    assert pool["machineSpec"]["acceleratorType"] == aiplatform_v1.AcceleratorType.NVIDIA_TESLA_A100.value  # ints on the wire
    assert str(pool["replicaCount"]) == "1" and pool["containerSpec"]["imageUri"] == "us-docker.pkg.dev/acme/trainer:1.0"
    assert pool["containerSpec"]["args"][:3] == ["--nproc_per_node=1", "--", "--model_id=nemotron-3-8b"]
    # Before creating it looked for an existing one by label.
    listed = fake.calls("GET", "/customJobs$")
    assert listed[0].param("filter") == f'labels.job_id="{JOB_ID}"'
    assert len(fake.calls("POST", "/customJobs$")) == 1


def test_crash_after_create_adopts(fake, tmp_path):
    h = Harness(tmp_path, make_backend(fake))
    first = h.backend.submit(h.job, h.env)  # created; the process died before recording it
    h.store.update(h.job.id, lambda j: j.replace(status=JobStatus.SUBMITTING))
    h.deliver()
    assert h.current().external_id == first.external_id and len(fake.jobs) == 1
    assert len(fake.calls("POST", "/customJobs$")) == 1


def test_timeout_after_create_then_adopt(fake, tmp_path):
    h = Harness(tmp_path, make_backend(fake, timeout=0.5))
    fake.inject("POST", "/customJobs$", delay=2.0, apply=True)
    with pytest.raises(TransientError):
        h.deliver()
    assert h.current().status is JobStatus.SUBMITTING and len(fake.jobs) == 1
    h.deliver()
    assert h.current().status is JobStatus.SUBMITTED and h.current().external_id == next(iter(fake.jobs))
    assert len(fake.calls("POST", "/customJobs$")) == 1


@pytest.mark.parametrize("status", [500, 503, 429])
def test_transient_errors_then_one_job(fake, tmp_path, status):
    h = Harness(tmp_path, make_backend(fake))
    fake.inject("POST", "/customJobs$", status=status, times=2)
    for _ in range(2):
        with pytest.raises(TransientError, match=f"HTTP {status}"):
            h.deliver()
    h.deliver()
    assert h.current().status is JobStatus.SUBMITTED and len(fake.jobs) == 1


def test_list_failure_is_transient(fake, tmp_path):
    h = Harness(tmp_path, make_backend(fake))
    fake.inject("GET", "/customJobs$", status=503)
    with pytest.raises(TransientError):
        h.deliver()
    assert fake.jobs == {}


def test_forbidden_project_fails_the_job(tmp_path):
    with FakeVertexAPI(forbidden=("acme-ml",)) as fake:
        h = Harness(tmp_path, make_backend(fake))
        h.deliver()
        job = h.current()
    assert job.status is JobStatus.FAILED and job.status_reason == "Forbidden" and job.failure_class is FailureClass.INFRA
    assert "HTTP 403" in job.error and "Permission" in job.error


def test_invalid_argument_is_permanent(fake, tmp_path):
    h = Harness(tmp_path, make_backend(fake))
    fake.inject("POST", "/customJobs$", status=400)
    h.deliver()
    assert h.current().status is JobStatus.FAILED and h.current().status_reason == "InvalidSpec"


def test_hf_token_goes_by_secret_manager_reference_never_by_value(fake, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    h = Harness(tmp_path, make_backend(fake), body={**README_VERTEX, "hf_token": "hf_supersecret_1"})
    h.deliver()
    job = h.current()
    env = fake.jobs[job.external_id]["jobSpec"]["workerPoolSpecs"][0]["containerSpec"]["env"]
    assert env == [{"name": "HF_TOKEN_SECRET", "value": HF_REF}]
    everything = b"".join(r.raw for r in fake.requests) + json.dumps(job.to_summary()).encode() + json.dumps(job.manifest).encode()
    everything += b"".join(p.read_bytes() for p in tmp_path.glob("jobs.db*")) + caplog.text.encode()
    assert b"hf_supersecret_1" not in everything


def test_secret_without_a_reference_fails_as_user_error(fake, tmp_path):
    h = Harness(tmp_path, make_backend(fake), body={**README_VERTEX, "env": {"WANDB_API_KEY": "wandb-secret-9"}})
    h.deliver()
    job = h.current()
    assert job.status is JobStatus.FAILED and job.status_reason == "SecretNotSupported" and job.failure_class is FailureClass.USER
    assert fake.requests == [] and "wandb-secret-9" not in job.error


def test_concurrent_creates_converge_on_the_oldest(fake, tmp_path):
    backend = make_backend(fake)
    job, env = job_from(README_VERTEX)
    # Another attempt created one first, but our first look-up didn't see it (the race).
    earlier = backend._get_client().create_custom_job(
        parent=PARENT,
        custom_job=aiplatform_v1.CustomJob.from_json(
            json.dumps(
                {
                    "displayName": "x",
                    "labels": {"job_id": JOB_ID},
                    "jobSpec": {"workerPoolSpecs": [{"machineSpec": {"machineType": "n1"}, "replicaCount": 1, "containerSpec": {"imageUri": "i"}}]},
                }
            )
        ),
    )
    original_find = backend._find
    calls = {"n": 0}

    def racing_find(j):
        calls["n"] += 1
        return [] if calls["n"] == 1 else original_find(j)

    backend._find = racing_find  # the first look-up lost the race
    sub = backend.submit(job, env)
    assert sub.external_id == earlier.name
    ours = [n for n in fake.jobs if n != earlier.name]
    assert len(ours) == 1 and fake.jobs[ours[0]]["state"] == "JOB_STATE_CANCELLING"


def test_cancel(fake, tmp_path):
    h = Harness(tmp_path, make_backend(fake))
    h.deliver()
    name = h.current().external_id
    h.deliver(OP_CANCEL)
    assert fake.calls("POST", ":cancel$")[0].path == f"/v1/{name}:cancel"
    assert fake.jobs[name]["state"] == "JOB_STATE_CANCELLING"
    assert h.current().status is JobStatus.CANCELLED
    # A finished job: nothing to cancel, its own end stands; a missing one: nothing runs.
    fake.set_state(name, "JOB_STATE_SUCCEEDED")
    assert h.backend.cancel(h.current()) is None
    gone = h.current().replace(external_id=f"{PARENT}/customJobs/42")
    assert h.backend.cancel(gone) is False
    fake.inject("POST", ":cancel$", status=503)
    with pytest.raises(TransientError):
        h.backend.cancel(h.current())


def test_cancel_without_external_id_finds_by_label(fake, tmp_path):
    backend = make_backend(fake)
    job, env = job_from(README_VERTEX)
    sub = backend.submit(job, env)
    assert backend.cancel(job.replace(external_id=None)) is True
    assert fake.jobs[sub.external_id]["state"] == "JOB_STATE_CANCELLING"
    other, _ = job_from(README_VERTEX, "0b7e1f3a-1111-4c2d-8e9f-000000000001")
    assert backend.cancel(other) is False


def test_fake_filters_and_paging(fake):
    backend = make_backend(fake)
    for i in range(3):
        job, env = job_from(README_VERTEX, f"0b7e1f3a-1111-4c2d-8e9f-00000000000{i}")
        backend.submit(job, env)
    client = backend._get_client()
    one = list(client.list_custom_jobs(request={"parent": PARENT, "filter": naming.vertex_label_filter("0b7e1f3a-1111-4c2d-8e9f-000000000001")}))
    assert len(one) == 1 and one[0].labels["job_id"] == "0b7e1f3a-1111-4c2d-8e9f-000000000001"
    assert len(list(client.list_custom_jobs(request={"parent": PARENT, "page_size": 2}))) == 3  # pager follows tokens
    assert len(list(client.list_custom_jobs(request={"parent": PARENT, "filter": 'labels.managed-by="training-platform" AND state=JOB_STATE_PENDING'}))) == 3
    with pytest.raises(Exception) as info:
        list(client.list_custom_jobs(request={"parent": PARENT, "filter": "nonsense ~ 1"}))
    assert getattr(info.value, "code", None) == 400
