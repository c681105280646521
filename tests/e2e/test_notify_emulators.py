"""The deployed topology on the emulators, end to end: api -> Firestore + train-requests -> launcher (local
backend) -> training-events -> status_sync -> outbox -> job-transitions (Pub/Sub) -> notify -> a
receiver verifying each signature. Each function is its own functions-framework process; the
subscriptions are the ones infra/ deploys (`local_stack.create_subscriptions`)."""

from __future__ import annotations

import base64
import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import requests

from functions.dev.local_stack import _wait_port, create_subscriptions, free_port, load_subscriptions, start_function, stop_group
from shared.settings import Settings
from tests.fakes.webhook_receiver import Receiver

pytestmark = [pytest.mark.slow, pytest.mark.emulator]

REPO = Path(__file__).resolve().parents[2]
SECRET = "whsec_" + base64.b64encode(b"emulator-signing-key-0123456").decode()
LIFECYCLE = ["queued", "submitting", "submitted", "running", "succeeded"]


def test_transitions_reach_the_receiver_through_pubsub_and_notify(pubsub_emulator, firestore_emulator, tmp_path: Path) -> None:
    from shared.adapters.pubsub_bus import PubSubBus

    project = pubsub_emulator.project
    suffix = uuid.uuid4().hex[:6]  # the emulators are shared by the session: topics and collections of our own
    topics = {
        f"TOPIC_{k.upper()}": f"{k.replace('_', '-')}-{suffix}"
        for k in ("train_requests", "training_events", "train_submissions", "train_submissions_rejected", "job_transitions")
    }
    receiver = Receiver(SECRET, answer=lambda msg_id, attempt: 503 if attempt == 1 and msg_id.endswith(".3") else 200)
    (tmp_path / "d.jsonl").write_text("{}\n")
    env = {
        **os.environ,
        **topics,
        "STORE_KIND": "firestore",
        "BUS_KIND": "pubsub",
        "GOOGLE_CLOUD_PROJECT": project,
        "PUBSUB_EMULATOR_HOST": pubsub_emulator.host,
        "FIRESTORE_EMULATOR_HOST": firestore_emulator.host,
        "COLLECTION_PREFIX": f"n{suffix}_",
        "SQLITE_PATH": str(tmp_path / "runs.db"),
        "DEFAULT_TRAINING_BACKEND": "local",
        "LOCAL_ALLOWED_ROOTS": f"{tmp_path}:/tmp",
        "TRAIN_SCRIPT_PATH": str(REPO / "tests/fakes/fake_trainer.py"),
        "WEBHOOK_SIGNING_SECRET": SECRET,
        "WEBHOOK_URLS": receiver.url,
        "WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
        "WEBHOOK_RETRY_SCHEDULE": "0,0.2,0.5,1,2,4",
    }
    procs: dict[str, subprocess.Popen] = {}
    ports: dict[str, int] = {}
    try:
        for target in ("api", "launcher", "status_sync", "notify"):
            ports[target] = free_port()
            procs[target] = start_function(target, ports[target], env, tmp_path)
        for port in ports.values():
            _wait_port(port, 60)
        spec = load_subscriptions()
        spec["retry_policy"] = {"minimum_backoff": "1s", "maximum_backoff": "2s"}
        settings = Settings(GOOGLE_CLOUD_PROJECT=project, **topics)
        create_subscriptions(PubSubBus(project), settings, {t: f"http://127.0.0.1:{p}" for t, p in ports.items() if t != "api"}, spec)

        url = f"http://127.0.0.1:{ports['api']}"
        r = requests.post(f"{url}/train", json={"backend": "local", "dataset_file": str(tmp_path / "d.jsonl"), "output_dir": str(tmp_path / "out")})
        assert r.status_code == 202, r.text
        job_id = r.json()["job"]["id"]
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(receiver.accepted(job_id)) < 5:
            time.sleep(0.2)
        logs = {t: (tmp_path / f"{t}.log").read_text()[-1500:] for t in procs}
        got = receiver.accepted(job_id)
        assert [g.status for g in got] == LIFECYCLE, logs
        assert all(g.valid for g in receiver.got)
        assert [g.attempt for g in got] == [1, 1, 2, 1, 1]  # job.submitted was refused once, then accepted under its id
        events = requests.get(f"{url}/jobs/{job_id}/events").json()["events"]
        assert [e["data"]["to"] for e in events if e["kind"] == "status"] == LIFECYCLE
        d = requests.get(f"{url}/jobs/{job_id}/deliveries").json()
        assert len(d["deliveries"]) == 6 and d["subscribers"][0]["deliveredThrough"] == max(e["seq"] for e in events)
    finally:
        for proc in procs.values():
            stop_group(proc)
        receiver.close()
