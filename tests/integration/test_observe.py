"""`Backend.observe` (what reconcile asks): Vertex over its REST fake, the local supervisor's table."""

from __future__ import annotations

import pytest

from tests.fakes import FakeVertexAPI
from tests.fakes.backends import Events, local_job
from tests.fakes.backends import make_k8s_backend as make_k8s
from tests.fakes.backends import make_local_backend as make_local
from tests.fakes.backends import make_vertex_backend as make_vertex
from tests.fakes.jobs import README_VERTEX, job_from


@pytest.fixture
def vertex():
    with FakeVertexAPI() as server:
        yield server


def test_vertex_observe_reports_the_custom_jobs_state(vertex) -> None:
    backend = make_vertex(vertex)
    job, env = job_from(README_VERTEX)
    sub = backend.submit(job, env)
    job = job.replace(external_id=sub.external_id)
    assert backend.observe(job).state == "JOB_STATE_PENDING"
    vertex.set_state(sub.external_id, "JOB_STATE_RUNNING")
    assert backend.observe(job).state == "JOB_STATE_RUNNING"
    vertex.set_state(sub.external_id, "JOB_STATE_FAILED", error={"code": 3, "message": "The replica workerpool0-0 exited with a non-zero status of 1."})
    seen = backend.observe(job)
    assert seen.state == "JOB_STATE_FAILED" and "non-zero status" in seen.message
    # Found by its label when the external id was never recorded (a crash after create).
    assert backend.observe(job.replace(external_id=None)).state == "JOB_STATE_FAILED"


def test_vertex_observe_unknown_job_is_none(vertex) -> None:
    backend = make_vertex(vertex)
    job, _ = job_from(README_VERTEX)
    assert backend.observe(job.replace(external_id="projects/acme-ml/locations/us-central1/customJobs/424242")) is None
    assert backend.observe(job) is None


def test_local_observe_running_exited_lost() -> None:
    events = Events()
    backend = make_local(events, FAKE_TRAINER_LINES="2", FAKE_TRAINER_SLEEP="1.0", FAKE_TRAINER_EXIT="3")
    job, env = local_job()
    assert backend.observe(job).state == "lost"
    backend.submit(job, env)
    assert backend.observe(job).state == "running"
    assert backend.wait(job.id, 15) == 3
    seen = backend.observe(job)
    assert (seen.state, seen.exit_code) == ("exited", 3)


def test_kubernetes_observe_follows_the_job() -> None:
    from tests.fakes import FakeKubernetesAPI
    from tests.fakes.jobs import README_KUBERNETES

    with FakeKubernetesAPI(namespaces=("default",)) as fake:
        backend = make_k8s(fake)
        job, env = job_from(README_KUBERNETES)
        sub = backend.submit(job, env)
        job = job.replace(external_id=sub.external_id)
        namespace, name = sub.external_id.split("/")
        fake.set_status("jobs", namespace, name, {"conditions": [{"type": "Complete", "status": "True"}], "succeeded": 1})
        assert backend.observe(job).state == "Complete"
        fake.delete_object("jobs", namespace, name)
        assert backend.observe(job).state == "Deleted"
