"""The README's webhook walk-through, as a newcomer runs it: its receiver snippet (taken from the README
itself) verifies every signature, the embedded server (`python -m functions.dev.embedded`) announces the
tiny local job's transitions `job.queued` ... `job.succeeded` in order, and the deliveries are readable.
Then `kill -9` of the server while deliveries are pending (the receiver is down): after the restart
they are delivered, in order, and any duplicate has the same webhook-id."""

from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from functions.dev.local_stack import free_port, stop_group, wait_http
from tests.fakes.polling import eventually

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
LIFECYCLE = ["job.queued", "job.submitting", "job.submitted", "job.running", "job.succeeded"]


def readme_receiver() -> str:
    text = (REPO / "README.md").read_text()
    section = text[text.index("### Webhooks: every transition, signed") :]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


class Receiver:
    """The README's snippet as its own process; what it printed, line by line."""

    def __init__(self, tmp: Path, env: dict[str, str]):
        self.port = int(env["HOOK_PORT"])
        self.script = tmp / "receiver.py"
        self.script.write_text(readme_receiver())
        self.out = tmp / f"receiver-{time.monotonic_ns()}.out"
        self.proc = subprocess.Popen([sys.executable, str(self.script)], env=env, stdout=open(self.out, "wb"), stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                requests.get(f"http://127.0.0.1:{self.port}/", timeout=1)  # any answer (501): it listens
                return
            except requests.ConnectionError:
                time.sleep(0.1)
        raise AssertionError(self.out.read_text())

    def lines(self) -> list[tuple[bool, str]]:
        return [(a == "True", b) for a, b in (line.split() for line in self.out.read_text().splitlines() if line.count(" ") == 1)]

    def stop(self) -> None:
        stop_group(self.proc)


def start_server(tmp: Path, env: dict[str, str]) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-m", "functions.dev.embedded"],
        cwd=REPO,
        env=env,
        start_new_session=True,
        stdout=open(tmp / "server.log", "ab"),
        stderr=subprocess.STDOUT,
    )
    wait_http(f"http://127.0.0.1:{env['PORT']}/health", 60, proc=proc)
    return proc


def setup(tmp: Path) -> tuple[dict[str, str], dict]:
    hook_port = free_port()
    env = {
        **os.environ,
        "PORT": str(free_port()),
        "SQLITE_PATH": str(tmp / "jobs.db"),
        "DEFAULT_TRAINING_BACKEND": "local",
        "LOCAL_ALLOWED_ROOTS": f"{tmp}:/tmp",
        "RECONCILE_INTERVAL_SECONDS": "0",
        "HOOK_PORT": str(hook_port),
        "WEBHOOK_SIGNING_SECRET": "whsec_" + base64.b64encode(os.urandom(24)).decode(),
        "WEBHOOK_URLS": f"http://127.0.0.1:{hook_port}/hook",
        "WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
        "WEBHOOK_RETRY_SCHEDULE": "0" + ",0.5" * 120,  # a minute of quick retries
        "TRAIN_SCRIPT_PATH": str(REPO / "tests/fakes/fake_trainer.py"),
    }
    (tmp / "d.jsonl").write_text("{}\n")
    job = {"backend": "local", "dataset_file": str(tmp / "d.jsonl"), "output_dir": str(tmp / "out")}
    return env, job


def test_the_readme_receiver_sees_the_tiny_jobs_five_transitions(tmp_path: Path) -> None:
    env, job = setup(tmp_path)
    receiver = Receiver(tmp_path, env)
    server = start_server(tmp_path, env)
    url = f"http://127.0.0.1:{env['PORT']}"
    try:
        job_id = requests.post(f"{url}/train", json=job).json()["job"]["id"]
        got = eventually(lambda: len(receiver.lines()) >= 5 and receiver.lines(), 60, "five webhooks", step=0.1)
        assert got == [(True, t) for t in LIFECYCLE]
        d = requests.get(f"{url}/jobs/{job_id}/deliveries").json()
        assert [(a["statusCode"], a["verdict"]) for a in d["deliveries"]] == [(200, "delivered")] * 5
        events = requests.get(f"{url}/jobs/{job_id}/events").json()["events"]
        assert ["job." + e["data"]["to"] for e in events if e["kind"] == "status"] == LIFECYCLE
    finally:
        stop_group(server)
        receiver.stop()


def test_kill_9_between_commit_and_delivery_then_delivered_after_the_restart(tmp_path: Path) -> None:
    env, job = setup(tmp_path)
    server = start_server(tmp_path, env)  # no receiver yet: every delivery fails and waits for a retry
    url = f"http://127.0.0.1:{env['PORT']}"
    try:
        job_id = requests.post(f"{url}/train", json=job).json()["job"]["id"]
        eventually(lambda: requests.get(f"{url}/jobs/{job_id}").json()["job"]["status"] == "succeeded", 60, "the job to end", step=0.1)
        attempts = requests.get(f"{url}/jobs/{job_id}/deliveries").json()["deliveries"]
        assert attempts and all(a["statusCode"] is None for a in attempts)  # committed, not delivered
        server.kill()  # SIGKILL: no clean stop
        server.wait(10)
        receiver = Receiver(tmp_path, env)
        server = start_server(tmp_path, env)
        got = eventually(lambda: len({t for _, t in receiver.lines()}) >= 5 and receiver.lines(), 60, "the deliveries after the restart", step=0.1)
        assert all(ok for ok, _ in got)
        firsts = list(dict.fromkeys(t for _, t in got))
        assert firsts == LIFECYCLE  # in order; a repeat (if any) is of a message already seen, by its id
        d = requests.get(f"{url}/jobs/{job_id}/deliveries").json()
        assert d["subscribers"][0]["deliveredThrough"] == max(e["seq"] for e in requests.get(f"{url}/jobs/{job_id}/events").json()["events"])
        delivered = [a["notificationId"] for a in d["deliveries"] if a["verdict"] == "delivered"]
        assert len(delivered) == len(set(delivered)) == 5
        receiver.stop()
    finally:
        stop_group(server)
