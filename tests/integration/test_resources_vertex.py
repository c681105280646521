"""Per-job resources on Vertex (issue 15, items 1, 4, 7): `POST /train` on the embedded server's Vertex
dry run shows the CustomJob it would create (machine type and accelerator from the table, two worker
pools for two nodes, the deadline as `scheduling.timeout`); a dry run with a secret renders and shows
its spec instead of failing; with `VERTEX_SUBMIT=1` and no Secret Manager reference it is a 400 naming
the field and the setting; and a real submission through the client (REST) against the Vertex fake
sends the two pools."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from google.auth.credentials import AnonymousCredentials
from google.cloud import aiplatform_v1

from functions.dev.embedded import build_embedded
from functions.http.asgi import AsgiApi
from shared.adapters.sqlite_store import SqliteJobStore
from shared.adapters.vertex_backend import VertexBackend
from shared.adapters.vertex_settings import VertexSettings
from shared.domain.backends.vertex import VERTEX
from shared.domain.status import JobStatus
from shared.messages import Message
from shared.settings import Settings
from shared.usecases.launching import Launcher
from shared.usecases.service import OP_SUBMIT, launch_message
from tests.fakes import FakeVertexAPI
from tests.fakes.jobs import README_KUBERNETES, README_VERTEX, job_from
from tests.fakes.polling import eventually

WAIT = 10.0


@pytest.fixture
def embedded(tmp_path: Path, serve) -> Iterator[Callable[..., str]]:
    made: list[Any] = []

    def make(**env: str) -> str:
        settings = Settings(
            VERTEX_PROJECT="acme-ml",
            VERTEX_IMAGE_URI="us-docker.pkg.dev/acme/trainer:1.0",
            SQLITE_PATH=str(tmp_path / f"embedded-{len(made)}.db"),
            RECONCILE_INTERVAL_SECONDS=0,
            **env,
        )
        c = build_embedded(settings)
        made.append(c)
        return serve(AsgiApi(c.api), asgi=True).url

    yield make
    for c in made:
        c.bus.stop()
        c.store.close()


def dry_run(url: str, body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    r = requests.post(f"{url}/train", json=body, timeout=10)
    assert r.status_code == 202, r.text
    job_id = r.json()["job"]["id"]
    job = eventually(
        lambda: (j := requests.get(f"{url}/jobs/{job_id}", timeout=5).json()["job"])["status"] in ("submitted", "failed") and j, WAIT, "the dry run"
    )
    assert job["status"] == "submitted" and job["dryRun"] is True, job
    return job, requests.get(f"{url}/jobs/{job_id}/manifest", timeout=5).json()


def test_post_train_h100s_on_two_nodes_shows_the_machine_type_and_two_pools(embedded) -> None:
    url = embedded()
    body = {**README_VERTEX, "resources": {"gpu_type": "h100", "gpus": 8, "nodes": 2, "max_duration_minutes": 600}}
    job, view = dry_run(url, body)
    assert job["resources"] == {"gpu_type": "H100", "gpus": 8, "nodes": 2, "max_duration_minutes": 600}
    assert view["backend"] == "vertex" and view["dryRun"] is True
    [custom_job] = view["objects"]
    assert custom_job["kind"] == "CustomJob"
    chief, workers = custom_job["jobSpec"]["workerPoolSpecs"]
    machine = {"machineType": "a3-highgpu-8g", "acceleratorType": "NVIDIA_H100_80GB", "acceleratorCount": 8}
    assert chief["machineSpec"] == workers["machineSpec"] == machine
    assert (chief["replicaCount"], workers["replicaCount"]) == (1, 1)
    assert chief["containerSpec"] == workers["containerSpec"]
    assert chief["containerSpec"]["command"] == ["python", "-m", "trainer.launch"]
    assert chief["containerSpec"]["args"] == ["--nproc_per_node=8", "--", *job["args"]]
    assert custom_job["jobSpec"]["scheduling"] == {"timeout": "36000s"}


def test_post_train_a_vertex_dry_run_with_a_secret_renders_and_shows_its_spec(embedded) -> None:
    url = embedded()
    body = {**README_KUBERNETES, "backend": "vertex", "dataset_file": "gs://b/data.jsonl", "resources": {"gpu_type": "L4", "gpus": 1}}
    job, view = dry_run(url, body)
    assert job["env"] == {"HF_TOKEN": "[redacted]"}
    [custom_job] = view["objects"]
    pool = custom_job["jobSpec"]["workerPoolSpecs"][0]
    assert pool["machineSpec"] == {"machineType": "g2-standard-8", "acceleratorType": "NVIDIA_L4", "acceleratorCount": 1}
    # Per-job secrets (the default): the job's own Secret Manager secret, created at submit.
    assert pool["containerSpec"]["env"] == [
        {"name": "TRAINING_PLATFORM_SECRET_REF", "value": "[the job's own Secret Manager secret version, created at submit, holding HF_TOKEN]"}
    ]
    assert "hf_xxx" not in str(view) and "hf_xxx" not in str(job)


def test_post_train_submitting_a_secret_without_a_reference_is_a_400_naming_the_setting(embedded) -> None:
    url = embedded(VERTEX_SUBMIT="1", VERTEX_JOB_SECRETS="0")  # per-job secrets off: only configured references pass
    r = requests.post(f"{url}/train", json={**README_KUBERNETES, "backend": "vertex", "dataset_file": "gs://b/data.jsonl"}, timeout=10)
    assert r.status_code == 400
    [error] = r.json()["errors"]
    assert error["field"] == "env.HF_TOKEN" and "VERTEX_HF_TOKEN_SECRET" in error["message"] and "hf_xxx" not in r.text
    assert requests.get(f"{url}/jobs", timeout=5).json()["jobs"] == []  # nothing was accepted
    r = requests.post(f"{url}/train", json={**README_VERTEX, "resources": {"gpu_type": "H200", "gpus": 4}}, timeout=10)
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "resources.gpus"
    assert "H200 only as 8 GPUs per node" in r.json()["errors"][0]["message"]


def test_a_submission_sends_both_pools_and_the_timeout_through_the_client(tmp_path) -> None:
    with FakeVertexAPI() as fake:
        client = aiplatform_v1.JobServiceClient(transport="rest", client_options={"api_endpoint": fake.url}, credentials=AnonymousCredentials())
        backend = VertexBackend(VertexSettings(project="acme-ml", image_uri="us-docker.pkg.dev/acme/trainer:1.0", submit=True), client=client, timeout=10.0)
        store = SqliteJobStore(tmp_path / "jobs.db")
        job, env = job_from({**README_VERTEX, "resources": {"gpu_type": "A100-80GB", "gpus": 4, "nodes": 3, "max_duration_minutes": 90}})
        store.create(job)
        Launcher(store=store, backends={VERTEX: backend}).handle(Message(id="m1", topic="train-requests", data=launch_message(job.id, OP_SUBMIT, env)))
        stored = store.get(job.id)
        assert stored.status is JobStatus.SUBMITTED and not stored.dry_run
        created = fake.jobs[stored.external_id]
        chief, workers = created["jobSpec"]["workerPoolSpecs"]
        assert chief["machineSpec"]["machineType"] == "a2-ultragpu-4g" and int(chief["machineSpec"]["acceleratorCount"]) == 4
        assert chief["machineSpec"]["acceleratorType"] == aiplatform_v1.AcceleratorType.NVIDIA_A100_80GB.value  # ints on the wire
        assert str(chief["replicaCount"]) == "1" and str(workers["replicaCount"]) == "2"
        assert created["jobSpec"]["scheduling"]["timeout"] == "5400s"


def test_health_lists_what_each_backend_can_place(embedded) -> None:
    url = embedded(K8S_TRAINING_IMAGE="trainer:1", K8S_GPU_NODE_SELECTORS='{"L4": {"pool": "l4"}, "h100": {"pool": "h100"}}')
    backends = requests.get(f"{url}/health", timeout=5).json()["backends"]
    assert backends["kubernetes"]["gpuTypes"] == ["L4", "H100"]
    assert backends["vertex"]["gpuTypes"]["H200"] == [8] and backends["vertex"]["gpuTypes"]["A100"] == [1, 2, 4, 8, 16]
