"""`make run-emulators` (functions/dev/local_stack.py) is the deployed topology on one machine: its Pub/Sub
subscriptions are the ones infra/ deploys (same file), so a poison message on `train-submissions` is
dead-lettered and the next valid request still becomes a job; and stopping it (SIGTERM to its process
group, twice, as `timeout` on `make` does) stops every emulator JVM and function it started.

On the real Pub/Sub emulator, with the `submit` function served by functions-framework."""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from functions.dev.local_stack import _wait_port, create_subscriptions, free_port, load_subscriptions, start_function, stop_group
from shared.adapters.sqlite_store import SqliteJobStore
from shared.ports import JobQuery
from shared.settings import Settings

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.emulator, pytest.mark.slow]


def _pull(subscriber, path: str, timeout: float) -> list:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = subscriber.pull(request={"subscription": path, "max_messages": 10}, timeout=5)
        if response.received_messages:
            return list(response.received_messages)
    return []


def test_poison_message_is_dead_lettered_and_the_next_request_becomes_a_job(pubsub_emulator, tmp_path: Path) -> None:
    from google.cloud import pubsub_v1

    from shared.adapters.pubsub_bus import PubSubBus

    project = pubsub_emulator.project
    suffix = uuid.uuid4().hex[:6]  # the emulator is shared by the session: topics of our own
    topics = {
        "TOPIC_TRAIN_REQUESTS": f"train-requests-{suffix}",
        "TOPIC_TRAINING_EVENTS": f"training-events-{suffix}",
        "TOPIC_TRAIN_SUBMISSIONS": f"train-submissions-{suffix}",
        "TOPIC_TRAIN_SUBMISSIONS_REJECTED": f"train-submissions-rejected-{suffix}",
    }
    settings = Settings(GOOGLE_CLOUD_PROJECT=project, **topics)
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
    subscriber = pubsub_v1.SubscriberClient()
    try:
        _wait_port(port, 60)
        # The settings infra/ deploys, as local_stack creates them; only the redelivery backoff is
        # shortened (10s-600s would take minutes to reach the fifth delivery).
        spec = copy.deepcopy(load_subscriptions())
        spec["retry_policy"] = {"minimum_backoff": "1s", "maximum_backoff": "2s"}
        bus = PubSubBus(project)
        created = create_subscriptions(bus, settings, {"submit": f"http://127.0.0.1:{port}"}, spec)
        submit_sub = f"{topics['TOPIC_TRAIN_SUBMISSIONS']}-submit"
        dead_letter = f"{topics['TOPIC_TRAIN_SUBMISSIONS']}-dead-letter"
        assert created[submit_sub] == topics["TOPIC_TRAIN_SUBMISSIONS"] and dead_letter in created

        got = subscriber.get_subscription(request={"subscription": subscriber.subscription_path(project, submit_sub)})
        assert got.enable_message_ordering is False  # as infra/ has it; ordered + dead-letter stalls the emulator
        assert got.dead_letter_policy.max_delivery_attempts == spec["max_delivery_attempts"]
        assert got.dead_letter_policy.dead_letter_topic.endswith(f"/topics/{dead_letter}")
        assert got.ack_deadline_seconds == spec["push"]["train_submissions"]["ack_deadline_seconds"]

        bus.publisher.publish(bus.topic_path(topics["TOPIC_TRAIN_SUBMISSIONS"]), b"this is not JSON {", batch_id="poison").result(30)
        dead = _pull(subscriber, subscriber.subscription_path(project, dead_letter), timeout=90)
        assert [m.message.data for m in dead] == [b"this is not JSON {"]
        assert dead[0].message.attributes["batch_id"] == "poison"

        # Pushing goes on after the dead-lettering: a valid request becomes a job.
        body = b'{"job_name": "after-poison", "dataset_file": "gs://b/d.jsonl", "output_dir": "/tmp/o"}'
        bus.publisher.publish(bus.topic_path(topics["TOPIC_TRAIN_SUBMISSIONS"]), body, batch_id="after").result(30)
        deadline = time.monotonic() + 60
        jobs: list = []
        while time.monotonic() < deadline and not jobs:
            if db.exists():
                jobs = SqliteJobStore(db).list(JobQuery(limit=10)).items
            time.sleep(0.2)
        assert [j.name for j in jobs] == ["after-poison"], (tmp_path / "submit.log").read_text()[-2000:]
    finally:
        subscriber.close()
        stop_group(proc)


def _live_pids_matching(needles: list[str]) -> dict[int, str]:
    """Running (not zombie) processes whose command line or environment mentions any needle."""
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            state = (entry / "stat").read_text().rsplit(")", 1)[-1].split()[0]
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            environ = (entry / "environ").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if state not in ("Z", "X") and any(n in cmdline or n in environ for n in needles):
            found[int(entry.name)] = cmdline[:200]
    return found


def test_sigterm_twice_to_the_stack_stops_everything_and_logs_go_to_the_setting(tmp_path: Path) -> None:
    log_dir = tmp_path / "stack-logs"
    api_port = free_port()
    env = {**os.environ, "STACK_LOG_DIR": str(log_dir), "K8S_TRAINING_IMAGE": "trainer:test"}
    env.pop("PUBSUB_EMULATOR_HOST", None)
    env.pop("FIRESTORE_EMULATOR_HOST", None)
    out = open(tmp_path / "stack.out", "w+b")
    stack = subprocess.Popen(
        [sys.executable, "-m", "functions.dev.local_stack", f"--port={api_port}", "--project=local-project"],
        cwd=REPO,
        env=env,
        start_new_session=True,
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 240
        text = ""
        while time.monotonic() < deadline and "api on" not in text:
            assert stack.poll() is None, text
            time.sleep(0.5)
            text = (tmp_path / "stack.out").read_text(errors="replace")
        assert "api on" in text, text
        hosts = [line.rsplit(" ", 1)[-1] for line in text.splitlines() if " emulator on " in line]
        assert len(hosts) == 2, text
        # The gcloud wrappers name `--host-port=H`, the JVMs `--port=P` (each argument ends in a space
        # here); the functions carry PUBSUB_EMULATOR_HOST.
        needles = [f"PUBSUB_EMULATOR_HOST={hosts[0]}"] + [f"--host-port={h} " for h in hosts] + [f"--port={h.rsplit(':', 1)[1]} " for h in hosts]
        started = _live_pids_matching(needles)
        started.pop(stack.pid, None)
        jvms = [cmd for cmd in started.values() if cmd.startswith("java ")]
        assert len(jvms) == 2 and len(started) >= 8, started  # 2 wrappers, 2 JVMs, 4 functions at least

        os.killpg(stack.pid, signal.SIGTERM)
        time.sleep(0.3)  # the second arrives while it is stopping the functions
        os.killpg(stack.pid, signal.SIGTERM)
        stack.wait(timeout=120)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and set(_live_pids_matching(needles)) & set(started):
            time.sleep(0.2)
        left = {pid: cmd for pid, cmd in _live_pids_matching(needles).items() if pid in started}
        assert left == {}, left
        assert "stopped" in (tmp_path / "stack.out").read_text(errors="replace")
        assert {"pubsub.log", "firestore.log", "api.log", "submit.log"} <= {p.name for p in log_dir.iterdir()}
    finally:
        stop_group(stack)
        for pid in _live_pids_matching(locals().get("needles", ["\0none"])):
            try:
                os.killpg(os.getpgid(pid), signal.SIGKILL)  # never leave a JVM behind, even when failing
            except (ProcessLookupError, PermissionError):
                pass
