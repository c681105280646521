"""Batch submissions (`train-submissions`): one code path with the api, idempotent, rejections visible.
Unit-level over SQLite, then end to end on the real Pub/Sub emulator with push delivery and `gcloud`."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import requests

from functions.dev.local_stack import _wait_port, free_port, start_function, stop_group
from functions.wiring import Container
from shared.adapters.sqlite_store import SqliteJobStore
from shared.messages import Message, to_push
from shared.ports import JobQuery
from shared.usecases.batch import PoisonMessage
from tests.integration.conftest import RecordingBus, make_settings, wsgi

REPO = Path(__file__).resolve().parents[2]
INVALID = {7: {"output_dir": "/o"}, 21: {"dataset_file": "gs://b/d", "output_dir": "/o", "lora_rnk": 8}, 40: {"dataset_file": "/local", "output_dir": "/o"}}


def batch_of_50() -> list[dict]:
    items = [{"job_name": f"nightly-{i}", "dataset_file": f"gs://b/{i}.jsonl", "output_dir": "/o", "env": {"HF_TOKEN": "hf_batch_secret"}} for i in range(50)]
    for i, bad in INVALID.items():
        items[i] = bad
    return items


@pytest.fixture
def container(tmp_path: Path):
    return Container(settings=make_settings(), store=SqliteJobStore(tmp_path / "jobs.db"), bus=RecordingBus())


def message(data: bytes, **attrs: str) -> Message:
    return Message(id=attrs.pop("message_id", "m-1"), topic="train-submissions", data=None, attributes=attrs, raw=data)


def all_jobs(store) -> list:
    return store.list(JobQuery(limit=500)).items


def test_batch_of_50_with_3_invalid(container) -> None:
    msg = message(json.dumps(batch_of_50()).encode(), batch_id="nightly-2026-11-29")
    result = container.batch.handle(msg)
    assert len(result.accepted) == 47 and result.rejected == [7, 21, 40]
    jobs = all_jobs(container.store)
    assert len(jobs) == 47 and all(j.labels["batch_id"] == "nightly-2026-11-29" for j in jobs)
    rejections = container.store.list_rejections("nightly-2026-11-29")
    assert [r.index for r in rejections] == [7, 21, 40]
    assert rejections[0].errors == [{"field": "dataset_file", "message": "is required"}]
    assert "did you mean 'lora_rank'" in rejections[1].errors[0]["message"]
    # The same checks as POST /train: the kubernetes backend wants a bucket URI.
    assert rejections[2].errors[0]["field"] == "dataset_file"
    rejected_msgs = [m for m in container.bus.messages if m[0] == "train-submissions-rejected"]
    assert [m[1]["index"] for m in rejected_msgs] == [7, 21, 40]
    launches = [m for m in container.bus.messages if m[0] == "train-requests"]
    assert len(launches) == 47

    # Delivered again (at least once): nothing new.
    again = container.batch.handle(msg)
    assert sorted(again.accepted) == sorted(result.accepted)
    assert len(all_jobs(container.store)) == 47 and len(container.store.list_rejections("nightly-2026-11-29")) == 3
    assert len([m for m in container.bus.messages if m[0] == "train-requests"]) == 47
    assert len([m for m in container.bus.messages if m[0] == "train-submissions-rejected"]) == 3


def test_single_object_and_jsonl(container) -> None:
    one = container.batch.handle(message(json.dumps({"dataset_file": "gs://b/x", "output_dir": "/o"}).encode(), message_id="m-one"))
    assert len(one.accepted) == 1 and one.batch_id == "m-one"
    lines = b'{"dataset_file": "gs://b/1", "output_dir": "/o"}\n\n{not json}\n{"dataset_file": "gs://b/2", "output_dir": "/o"}\n'
    res = container.batch.handle(message(lines, message_id="m-jsonl", batch_id="b-jsonl"))
    assert len(res.accepted) == 2 and res.rejected == [1]
    assert "line 3 is not valid JSON" in container.store.list_rejections("b-jsonl")[0].errors[0]["message"]


def test_not_json_is_recorded_then_dead_lettered(container) -> None:
    msg = message(b"\x00\x01 definitely not json", message_id="m-poison", batch_id="b-poison")
    for _ in range(3):  # every redelivery raises; the rejection is recorded once
        with pytest.raises(PoisonMessage):
            container.batch.handle(msg)
    rej = container.store.list_rejections("b-poison")
    assert len(rej) == 1 and rej[0].index == -1 and rej[0].errors[0]["field"] == "message"
    assert all_jobs(container.store) == []


def test_idempotency_key_attribute_spans_messages(container) -> None:
    body = json.dumps([{"dataset_file": "gs://b/x", "output_dir": "/o"}]).encode()
    a = container.batch.handle(message(body, message_id="m-a", idempotency_key="pipeline-run-9"))
    b = container.batch.handle(message(body, message_id="m-b", idempotency_key="pipeline-run-9"))
    assert a.accepted == b.accepted and len(all_jobs(container.store)) == 1


def test_a_studio_body_in_a_batch_is_keyed_by_its_job_id(container) -> None:
    """The studio's body carries its own idempotency key (its job_id): the same run in two messages (or
    a message and `POST /train`) is one job, not one per message."""
    run = {
        "job_id": "0b8f7c1e-9d2a-4c55-8a61-3f0e2d9b7a10",
        "base_model": {"provider": "huggingface", "model_name": "org/m"},
        "customization": {"method": "lora", "rank": 8},
        "datasets": [{"source": "gs://b/d.jsonl", "format": "jsonl"}],
        "artifacts": {"output_uri": "gs://b/out"},
    }
    a = container.batch.handle(message(json.dumps([run]).encode(), message_id="m-a"))
    b = container.batch.handle(message(json.dumps(run).encode(), message_id="m-b"))
    assert a.rejected == [] and a.accepted == b.accepted and len(a.accepted) == 1
    jobs = all_jobs(container.store)
    assert len(jobs) == 1 and jobs[0].idempotency_key == f"studio:{run['job_id']}" and jobs[0].labels["studio_job_id"] == run["job_id"]


def test_submission_route(container, serve) -> None:
    container.batch.handle(message(json.dumps(batch_of_50()).encode(), batch_id="b-route"))
    url = serve(wsgi(container)).url
    body = requests.get(f"{url}/submissions/b-route").json()
    assert len(body["accepted"]) == 47 and [r["index"] for r in body["rejections"]] == [7, 21, 40]
    assert body["rejections"][0]["errors"] == [{"field": "dataset_file", "message": "is required"}]
    assert requests.get(f"{url}/submissions/none-such").status_code == 404
    listed = requests.get(f"{url}/jobs", params={"label": "batch_id=b-route", "limit": 500}).json()["jobs"]
    assert len(listed) == 47
    assert "hf_batch_secret" not in json.dumps(body) + json.dumps(listed)


@pytest.mark.emulator
@pytest.mark.slow
def test_push_delivery_redelivery_and_gcloud_publish(pubsub_emulator, tmp_path: Path) -> None:
    """The deployed path: Pub/Sub emulator pushes to the `submit` function (functions-framework)."""
    from shared.adapters.pubsub_bus import PubSubBus

    project = pubsub_emulator.project
    suffix = uuid.uuid4().hex[:6]
    topics = {
        "TOPIC_TRAIN_SUBMISSIONS": f"train-submissions-{suffix}",
        "TOPIC_TRAIN_REQUESTS": f"train-requests-{suffix}",
        "TOPIC_TRAIN_SUBMISSIONS_REJECTED": f"rejected-{suffix}",
    }
    bus = PubSubBus(project)
    bus.ensure_topics(list(topics.values()))
    db = tmp_path / "jobs.db"
    port = free_port()
    env = {
        **os.environ,
        **topics,
        "STORE_KIND": "sqlite",
        "SQLITE_PATH": str(db),
        "BUS_KIND": "pubsub",
        "GOOGLE_CLOUD_PROJECT": project,
        "PUBSUB_EMULATOR_HOST": pubsub_emulator.host,
        "K8S_TRAINING_IMAGE": "trainer:test",
    }
    proc = start_function("submit", port, env, tmp_path)  # its log: tmp_path / "submit.log"
    try:
        _wait_port(port, 60)
        push = f"http://127.0.0.1:{port}/projects/{project}/topics/{topics['TOPIC_TRAIN_SUBMISSIONS']}"
        bus.ensure_push_subscription(topics["TOPIC_TRAIN_SUBMISSIONS"], f"submit-push-{suffix}", push)
        store = SqliteJobStore(db)

        # 1. A batch of 50 with 3 invalid, published by the Python client.
        bus.publish(topics["TOPIC_TRAIN_SUBMISSIONS"], batch_of_50(), attributes={"batch_id": "emu-batch"})  # type: ignore[arg-type]
        _until(lambda: len(store.list(JobQuery(limit=500, label=("batch_id", "emu-batch"))).items) == 47 and len(store.list_rejections("emu-batch")) == 3)

        # 2. The same message delivered twice (a push redelivery, same message id): still 47.
        envelope = to_push(Message(id="dup-1", topic=topics["TOPIC_TRAIN_SUBMISSIONS"], data=batch_of_50(), attributes={"batch_id": "emu-dup"}))
        headers = {"Content-Type": "application/json"}
        for _ in range(2):
            r = requests.post(push, data=json.dumps(envelope), headers=headers)
            assert r.status_code == 200, r.text
        assert len(store.list(JobQuery(limit=500, label=("batch_id", "emu-dup"))).items) == 47

        # 3. Published with the Google Cloud CLI against the emulator.
        cli_env = {
            **os.environ,
            "CLOUDSDK_API_ENDPOINT_OVERRIDES_PUBSUB": f"http://{pubsub_emulator.host}/",
            "CLOUDSDK_AUTH_DISABLE_CREDENTIALS": "true",
            "CLOUDSDK_CORE_PROJECT": project,
        }
        out = subprocess.run(
            [
                "gcloud",
                "pubsub",
                "topics",
                "publish",
                topics["TOPIC_TRAIN_SUBMISSIONS"],
                '--message={"job_name": "from-gcloud", "dataset_file": "gs://b/g.jsonl", "output_dir": "/o"}',
                "--attribute=batch_id=gcloud-batch",
            ],
            env=cli_env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 0, out.stderr
        _until(lambda: [j.name for j in store.list(JobQuery(label=("batch_id", "gcloud-batch"))).items] == ["from-gcloud"])
    finally:
        stop_group(proc)


def _until(check, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError("condition not reached in time")
