"""The api over real HTTP: the studio's contract, errors, idempotency, auth, CORS, and the cloud path."""

from __future__ import annotations

import json
import time
import uuid

import pytest
import requests

from functions.wiring import Container
from tests.fakes.jobs import README_KUBERNETES
from tests.integration.conftest import make_settings, wsgi

SECRET = "hf_SECRET_token_value_123"
# The old README's Kubernetes example, with a secret value the tests can search for.
K8S_EXAMPLE = {**README_KUBERNETES, "env": {"HF_TOKEN": SECRET}}


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        assert SECRET not in text


def test_health_lists_backends(api) -> None:
    url, _, _ = api()
    r = requests.get(f"{url}/health")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok" and body["defaultBackend"] == "kubernetes"
    assert body["backends"]["kubernetes"]["configured"] is True
    assert body["backends"]["local"]["configured"] is True
    assert body["store"] == "sqlite" and body["bus"] == "recording"


def test_health_reports_bad_json_config(api) -> None:
    url, _, _ = api(K8S_TOLERATIONS="[{oops")
    body = requests.get(f"{url}/health").json()
    assert body["status"] == "degraded"
    assert any("K8S_TOLERATIONS is not valid JSON" in e for e in body["configErrors"])
    assert body["backends"]["kubernetes"]["configured"] is False
    r = requests.post(f"{url}/train", json={"dataset_file": "gs://b/d", "output_dir": "/o"})
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "backend"
    assert "K8S_TOLERATIONS" in r.json()["errors"][0]["message"]


def test_train_then_list_then_get(api) -> None:
    url, bus, _ = api()
    r = requests.post(f"{url}/train", json=K8S_EXAMPLE)
    assert r.status_code == 202, r.text
    job = r.json()["job"]
    assert job["status"] == "queued" and job["name"] == "aml-qlora-k8s" and job["backend"] == "kubernetes"
    assert job["modelId"] == "meta-llama/Llama-3.2-3B-Instruct"
    assert "--model_id=meta-llama/Llama-3.2-3B-Instruct" in job["args"]
    assert job["env"] == {"HF_TOKEN": "[redacted]"}
    assert r.headers["Location"] == f"/jobs/{job['id']}"
    # Published once, keyed by the job id; the secret travels only inside the launch message.
    assert len(bus.messages) == 1
    topic, data, attrs, key = bus.messages[0]
    assert topic == "train-requests" and key == job["id"] and data == {"job_id": job["id"], "op": "submit", "env": {"HF_TOKEN": SECRET}}
    listed = requests.get(f"{url}/jobs").json()
    assert [j["id"] for j in listed["jobs"]] == [job["id"]] and listed["nextCursor"] is None
    assert "logs" not in listed["jobs"][0]
    detail = requests.get(f"{url}/jobs/{job['id']}").json()["job"]
    assert detail["id"] == job["id"] and detail["logs"] == []
    assert_no_secret(r.text, json.dumps(listed), json.dumps(detail))


def test_paging_and_filters(api) -> None:
    url, _, _ = api()
    ids = []
    for i in range(7):
        r = requests.post(f"{url}/train", json={"dataset_file": "gs://b/d", "output_dir": "/o", "job_name": f"n{i % 2}"})
        ids.append(r.json()["job"]["id"])
    page1 = requests.get(f"{url}/jobs", params={"limit": 3}).json()
    page2 = requests.get(f"{url}/jobs", params={"limit": 3, "cursor": page1["nextCursor"]}).json()
    page3 = requests.get(f"{url}/jobs", params={"limit": 3, "cursor": page2["nextCursor"]}).json()
    got = [j["id"] for p in (page1, page2, page3) for j in p["jobs"]]
    assert got == list(reversed(ids)) and page3["nextCursor"] is None
    n1 = requests.get(f"{url}/jobs", params={"name": "n1"}).json()["jobs"]
    assert [j["id"] for j in n1] == [ids[5], ids[3], ids[1]]
    assert requests.get(f"{url}/jobs", params={"status": "queued"}).json()["jobs"][0]["id"] == ids[-1]


@pytest.mark.parametrize(
    "params,field",
    [
        ({"limit": 0}, "limit"),
        ({"limit": 501}, "limit"),
        ({"limit": "x"}, "limit"),
        ({"status": "done"}, "status"),
        ({"backend": "slurm"}, "backend"),
        ({"cursor": "zzz"}, "cursor"),
    ],
)
def test_list_bad_params(api, params: dict, field: str) -> None:
    url, _, _ = api()
    r = requests.get(f"{url}/jobs", params=params)
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == field


@pytest.mark.parametrize(
    "data,status,field",
    [
        (b"{not json", 400, "body"),
        (b"[1,2]", 400, "body"),
        (b'"text"', 400, "body"),
        (b"", 400, "body"),
        (b'{"dataset_file": "gs://b/d", "output_dir": "/o", "learning_rate": NaN}', 400, "body"),
        (json.dumps({"output_dir": "/o"}).encode(), 400, "dataset_file"),
        (json.dumps({"dataset_file": "/local/d", "output_dir": "/o"}).encode(), 400, "dataset_file"),
        (json.dumps({"dataset_file": "gs://b/d", "output_dir": "/o", "backend": "ray"}).encode(), 400, "backend"),
        (json.dumps({"dataset_file": "gs://b/d", "output_dir": "/o", "lr": 1}).encode(), 400, "lr"),
        (json.dumps({"dataset_file": "gs://b/d", "output_dir": "/o", "lora_rank": "8"}).encode(), 400, "lora_rank"),
        (b"[" * 5000 + b"]" * 5000, 400, "body"),
    ],
    ids=["malformed", "array", "string", "empty", "nan", "missing", "k8s-local-path", "backend", "unknown-flag", "wrong-type", "deep"],
)
def test_bad_bodies_are_400_json_naming_the_field(api, data: bytes, status: int, field: str) -> None:
    url, bus, container = api()
    r = requests.post(f"{url}/train", data=data, headers={"Content-Type": "application/json"})
    assert r.status_code == status, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    body = r.json()
    assert body["error"] and field in {e["field"] for e in body["errors"]}
    assert bus.messages == []
    from shared.ports import JobQuery

    assert container.store.list(JobQuery()).items == []  # nothing stored for a rejected request


def test_oversized_body_is_413_json(api) -> None:
    url, bus, _ = api()
    big = {"dataset_file": "gs://b/d", "output_dir": "/o", "job_name": "x" * (1024 * 1024 + 10)}
    r = requests.post(f"{url}/train", json=big)
    assert r.status_code == 413 and "larger than" in r.json()["error"]
    # Chunked upload without Content-Length is bounded too.
    r = requests.post(f"{url}/train", data=iter([b"{" + b" " * (1024 * 1024 + 10) + b"}"]), headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    assert bus.messages == []


def test_unknown_routes_and_methods_are_json(api) -> None:
    url, _, _ = api()
    r = requests.get(f"{url}/jobs/does-not-exist")
    assert r.status_code == 404 and r.json()["error"].startswith("Job does-not-exist")
    r = requests.get(f"{url}/nope")
    assert r.status_code == 404 and "error" in r.json()
    r = requests.delete(f"{url}/train")
    assert r.status_code == 405 and r.headers["Allow"] == "POST"


def test_idempotency_key(api) -> None:
    url, bus, _ = api()
    h = {"Idempotency-Key": "abc-123"}
    first = requests.post(f"{url}/train", json=K8S_EXAMPLE, headers=h)
    again = requests.post(f"{url}/train", json=K8S_EXAMPLE, headers=h)
    assert first.status_code == again.status_code == 202
    assert first.json()["job"]["id"] == again.json()["job"]["id"]
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert len(bus.messages) == 1  # nothing republished
    other = requests.post(f"{url}/train", json={**K8S_EXAMPLE, "job_name": "other"}, headers=h)
    assert other.status_code == 409 and "Idempotency-Key" in other.json()["error"]
    assert len(requests.get(f"{url}/jobs").json()["jobs"]) == 1


def test_publish_failure_is_503_and_job_failed(api) -> None:
    url, bus, _ = api()
    bus.fail = True
    r = requests.post(f"{url}/train", json=K8S_EXAMPLE)
    assert r.status_code == 503
    job = r.json()["job"]
    assert job["status"] == "failed" and job["statusReason"] == "PublishFailed" and job["failureClass"] == "infra"
    stored = requests.get(f"{url}/jobs/{job['id']}").json()["job"]
    assert stored["status"] == "failed"
    assert_no_secret(r.text)


def test_tokens_guard_every_route_but_health(api) -> None:
    url, _, _ = api(API_TOKENS="tok-one-0123456789,tok-two-0123456789")
    assert requests.get(f"{url}/health").status_code == 200
    for method, path in [("get", "/jobs"), ("post", "/train"), ("get", "/jobs/x"), ("get", "/openapi.json")]:
        r = getattr(requests, method)(f"{url}{path}")
        assert r.status_code == 401 and r.headers["WWW-Authenticate"] == "Bearer"
        r = getattr(requests, method)(f"{url}{path}", headers={"Authorization": "Bearer wrong"})
        assert r.status_code == 401
    assert requests.get(f"{url}/jobs", headers={"Authorization": "Bearer tok-two-0123456789"}).status_code == 200
    r = requests.post(f"{url}/train", json=K8S_EXAMPLE, headers={"Authorization": "Bearer tok-one-0123456789"})
    assert r.status_code == 202


def test_cors_only_for_configured_origins(api) -> None:
    url, _, _ = api(CORS_ORIGINS="https://studio.example.com")
    ok = requests.options(f"{url}/train", headers={"Origin": "https://studio.example.com", "Access-Control-Request-Method": "POST"})
    assert ok.status_code == 204 and ok.headers["Access-Control-Allow-Origin"] == "https://studio.example.com"
    other = requests.get(f"{url}/jobs", headers={"Origin": "https://evil.example.com"})
    assert "Access-Control-Allow-Origin" not in other.headers


def test_openapi_is_generated_from_the_models(api) -> None:
    url, _, _ = api()
    doc = requests.get(f"{url}/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    props = doc["components"]["schemas"]["TrainRequestBody"]["properties"]
    assert {"dataset_file", "output_dir", "backend", "trainer_args", "env"} <= set(props)
    assert {"/health", "/train", "/jobs", "/jobs/{id}"} <= set(doc["paths"])


@pytest.mark.emulator
def test_cloud_path_firestore_and_pubsub(firestore_emulator, pubsub_emulator, serve, unique_prefix) -> None:
    """api over HTTP -> Firestore emulator + Pub/Sub emulator: the message arrives with its ordering key."""
    from google.cloud import pubsub_v1

    from functions.wiring import build_bus, build_store

    topic = f"train-requests-{uuid.uuid4().hex[:6]}"
    settings = make_settings(
        STORE_KIND="firestore",
        BUS_KIND="pubsub",
        GOOGLE_CLOUD_PROJECT=pubsub_emulator.project,
        COLLECTION_PREFIX=unique_prefix,
        TOPIC_TRAIN_REQUESTS=topic,
    )
    store, bus = build_store(settings), build_bus(settings)
    bus.ensure_topics([topic])
    sub = pubsub_v1.SubscriberClient()
    sub_path = sub.subscription_path(pubsub_emulator.project, f"s-{topic}")
    sub.create_subscription(request={"name": sub_path, "topic": bus.topic_path(topic), "enable_message_ordering": True})
    container = Container(settings=settings, store=store, bus=bus)
    url = serve(wsgi(container)).url
    r = requests.post(f"{url}/train", json=K8S_EXAMPLE, headers={"Idempotency-Key": "cloud-1"})
    assert r.status_code == 202, r.text
    job_id = r.json()["job"]["id"]
    assert requests.post(f"{url}/train", json=K8S_EXAMPLE, headers={"Idempotency-Key": "cloud-1"}).json()["job"]["id"] == job_id
    assert requests.get(f"{url}/jobs/{job_id}").json()["job"]["status"] == "queued"
    assert [j["id"] for j in requests.get(f"{url}/jobs").json()["jobs"]] == [job_id]
    received = []
    deadline = time.monotonic() + 20
    while not received and time.monotonic() < deadline:
        resp = sub.pull(request={"subscription": sub_path, "max_messages": 10}, timeout=5)
        received += [m.message for m in resp.received_messages]
    assert len(received) == 1
    assert json.loads(received[0].data)["job_id"] == job_id and received[0].ordering_key == job_id
    # The store keeps names only: no secret value in the stored document.
    doc = container.store.jobs.document(job_id).get().to_dict()
    assert SECRET not in json.dumps(doc, default=str)
    sub.close()
