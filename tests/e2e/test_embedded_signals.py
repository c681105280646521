"""Stopping the embedded server (`make run`) with Ctrl-C or SIGTERM: uvicorn stops gracefully, then the
server stops its local trainers (their whole process groups) and exits with 128 + the signal, without a
traceback. (uvicorn re-raises the signal after its graceful stop; SIGTERM's default handler would end the
process on the spot and leave the trainers running.)"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from functions.dev.local_stack import free_port, stop_group, wait_http

REPO = Path(__file__).resolve().parents[2]
FAKE_TRAINER = REPO / "tests" / "fakes" / "fake_trainer.py"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_stops_the_server_and_its_local_trainers(tmp_path: Path, sig: signal.Signals) -> None:
    port = free_port()
    pidfile = tmp_path / "grandchild.pid"
    log = tmp_path / "server.log"
    env = {
        **os.environ,
        "PORT": str(port),
        "SQLITE_PATH": str(tmp_path / "training.db"),
        "DEFAULT_TRAINING_BACKEND": "local",
        "TRAIN_SCRIPT_PATH": str(FAKE_TRAINER),
        "PYTHON_BIN": sys.executable,
        "FAKE_TRAINER_SLEEP": "120",
        "FAKE_TRAINER_CHILD_PIDFILE": str(pidfile),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "functions.dev.embedded"],
        cwd=REPO,
        env=env,
        start_new_session=True,
        stdout=open(log, "wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/health", 60, proc=proc)
        url = f"http://127.0.0.1:{port}"
        r = requests.post(f"{url}/train", json={"backend": "local", "dataset_file": str(tmp_path / "d.jsonl"), "output_dir": str(tmp_path / "out")})
        assert r.status_code == 202, r.text
        job_id = r.json()["job"]["id"]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if requests.get(f"{url}/jobs/{job_id}").json()["job"]["status"] == "running" and pidfile.exists() and pidfile.read_text().strip():
                break
            time.sleep(0.1)
        else:
            pytest.fail(f"the local job never ran: {log.read_text()[-2000:]}")
        grandchild = int(pidfile.read_text().strip())
        assert _alive(grandchild)

        proc.send_signal(sig)  # the server only, as a supervisor or Ctrl-C in its terminal would
        assert proc.wait(timeout=30) == 128 + sig
        deadline = time.monotonic() + 10
        while _alive(grandchild) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(grandchild), "the trainer's process group outlived the server"
        out = log.read_text()
        assert "Traceback" not in out, out[-3000:]
        assert "stopping: local trainers, bus, store" in out
    finally:
        stop_group(proc)
