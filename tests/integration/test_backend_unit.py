"""Issue 13's proof that a backend is a unit: "toy" (tests/fakes/toy_backend.py) is registered here and
nowhere else, and on the embedded platform (SQLite, inline bus, the real api over HTTP) it shows in
`/health`, validates requests by its own rules, launches, reports events, cancels and is reconciled,
without any module of shared/, functions/ or trainer/ knowing it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import requests

from functions.dev.embedded import build_embedded
from shared.adapters.registry import REGISTRY, registered
from shared.settings import REPO_ROOT, Settings
from tests.fakes.polling import eventually
from tests.fakes.toy_backend import TOY, ToyUnit
from tests.integration.conftest import wsgi

BODY = {"backend": "toy", "model_id": "tiny/model", "dataset_file": "toy://datasets/chat.jsonl", "output_dir": "/out"}


@pytest.fixture
def toy():
    unit = ToyUnit()
    with registered(unit):
        yield unit
    assert TOY not in REGISTRY.kinds


def start(tmp_path: Path, serve, **env: str):
    settings = Settings(
        SQLITE_PATH=str(tmp_path / "jobs.db"),
        DEFAULT_TRAINING_BACKEND="toy",
        RECONCILE_INTERVAL_SECONDS="0",
        RECONCILE_MIN_AGE_SECONDS="0",
        LAUNCH_RETRY_BASE_SECONDS="0.05",
        **env,
    )
    container = build_embedded(settings)
    return serve(wsgi(container)).url, container


@pytest.fixture
def platform(tmp_path: Path, serve, toy):
    url, container = start(tmp_path, serve, TOY_REGION="moon")
    yield url, container, toy.clouds[-1]
    container.shutdown()
    container.bus.stop()


def job_of(url: str, job_id: str) -> dict:
    return requests.get(f"{url}/jobs/{job_id}", timeout=10).json()["job"]


def final(url: str, job_id: str) -> dict:
    return eventually(lambda: (j := job_of(url, job_id))["status"] in ("succeeded", "failed", "cancelled") and j, what=f"job {job_id} to end")


def test_it_shows_in_health_with_what_its_unit_adds(platform) -> None:
    url, _, _ = platform
    body = requests.get(f"{url}/health", timeout=10).json()
    assert body["defaultBackend"] == "toy"
    assert body["backends"]["toy"] == {"configured": True, "problem": None, "region": "moon", "gpuTypes": {"T1": [1, 2]}}
    assert list(body["backends"]) == ["kubernetes", "vertex", "local", "toy"]  # the registry's order


def test_unconfigured_it_is_unavailable_and_says_which_variable(tmp_path: Path, serve, toy) -> None:
    url, container = start(tmp_path, serve)  # no TOY_REGION
    try:
        assert requests.get(f"{url}/health", timeout=10).json()["backends"]["toy"]["problem"] == "TOY_REGION is not set"
        r = requests.post(f"{url}/train", json=BODY, timeout=10)
        assert r.status_code == 400 and r.json()["errors"] == [{"field": "backend", "message": "toy is not available here: TOY_REGION is not set"}]
        assert TOY not in container.backends  # never built
    finally:
        container.shutdown()
        container.bus.stop()


@pytest.mark.parametrize(
    "change, field, message",
    [
        ({"dataset_file": "gs://bucket/chat.jsonl"}, "dataset_file", "must be a toy:// URI for the toy backend"),
        ({"dataset_file": ["toy://a.jsonl", "s3://b/c.jsonl"]}, "dataset_file[1]", "must be a toy:// URI for the toy backend"),
        ({"resources": {"gpus": 4}}, "resources.gpus", "only as 1, 2 GPUs per node"),
        ({"resources": {"gpu_type": "H100", "gpus": 1}}, "resources.gpu_type", "has no H100 GPUs; it has T1"),
        ({"resources": {"nodes": 2}}, "resources.nodes", ""),
        ({"backend": "nope"}, "backend", "must be one of kubernetes, vertex, local, toy"),
    ],
)
def test_requests_are_checked_by_its_own_rules(platform, change: dict, field: str, message: str) -> None:
    url, _, cloud = platform
    r = requests.post(f"{url}/train", json={**BODY, **change}, timeout=10)
    assert r.status_code == 400, r.text
    errors = {e["field"]: e["message"] for e in r.json()["errors"]}
    assert field in errors and message in errors[field], errors
    assert cloud.runs == {}  # nothing launched


def test_a_job_launches_reports_its_events_and_succeeds(platform) -> None:
    url, container, cloud = platform
    r = requests.post(f"{url}/train", json={**BODY, "resources": {"gpus": 2, "gpu_type": "t1"}}, timeout=10)
    assert r.status_code == 202, r.text
    job_id = r.json()["job"]["id"]
    done = final(url, job_id)
    assert done["status"] == "succeeded" and done["statusReason"] == "Completed", done
    assert done["backend"] == "toy" and done["externalId"] == f"moon/{job_id}"
    assert done["progress"]["step"] == 3 and done["resources"]["gpu_type"] == "T1"
    statuses = [
        (e["data"]["to"], e["data"]["source"]) for e in requests.get(f"{url}/jobs/{job_id}/events", timeout=10).json()["events"] if e["kind"] == "status"
    ]
    # Its own events move it on (its "queued" may overtake the launcher's own `submitted` write).
    assert [to for to, _ in statuses] == ["queued", "submitting", "submitted", "running", "succeeded"], statuses
    assert statuses[-2:] == [("running", "toy"), ("succeeded", "toy")], statuses
    manifest = requests.get(f"{url}/jobs/{job_id}/manifest", timeout=10).json()
    assert manifest["backend"] == "toy" and manifest["objects"][0]["kind"] == "ToyRun"
    listed = requests.get(f"{url}/jobs", params={"backend": "toy"}, timeout=10).json()["jobs"]
    assert [j["id"] for j in listed] == [job_id]
    assert requests.get(f"{url}/jobs", params={"backend": "nope"}, timeout=10).status_code == 400


def test_its_failure_words_are_its_own(platform) -> None:
    url, _, _ = platform
    job_id = requests.post(f"{url}/train", json={**BODY, "max_steps": 13}, timeout=10).json()["job"]["id"]
    done = final(url, job_id)
    assert (done["status"], done["statusReason"], done["failureClass"], done["error"]) == ("failed", "ToyBroke", "user", "the toy broke at step 13")


def test_cancel_stops_it_there(platform) -> None:
    url, _, cloud = platform
    cloud.step_seconds = 30  # it works until stopped
    job_id = requests.post(f"{url}/train", json=BODY, timeout=10).json()["job"]["id"]
    eventually(lambda: job_of(url, job_id)["status"] == "submitted" and job_id in cloud.runs, what="the toy run")
    assert requests.post(f"{url}/jobs/{job_id}/cancel", timeout=10).status_code == 202
    done = final(url, job_id)
    assert done["status"] == "cancelled" and cloud.runs[job_id].stop.is_set()


def test_reconcile_asks_it_when_its_events_are_lost(platform) -> None:
    url, container, cloud = platform
    cloud.lose_events = True
    job_id = requests.post(f"{url}/train", json=BODY, timeout=10).json()["job"]["id"]
    eventually(lambda: job_id in cloud.runs and cloud.runs[job_id].state == "done", what="the toy run to finish")
    assert job_of(url, job_id)["status"] == "submitted"  # nothing told the platform
    report = container.reconciler.run_once()
    assert job_id in report.updated
    done = job_of(url, job_id)
    assert done["status"] == "succeeded" and done["statusReason"] == "Completed"


def test_no_module_outside_the_tests_knows_it() -> None:
    """Adding it edited nothing else: no source file of the platform names it."""
    mentions = [
        str(path.relative_to(REPO_ROOT))
        for folder in ("shared", "functions", "trainer", "infra")
        for path in (REPO_ROOT / folder).rglob("*.py")
        if re.search(r"\btoy\b|ToyUnit|TOY_", path.read_text(), re.IGNORECASE)
    ]
    assert mentions == []
