"""Crash safety of the embedded default: `kill -9` during a burst of submissions; after a restart every job
that got a 202 exists and is launched exactly once (one Kubernetes Job on the fake API server)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from functions.local_stack import free_port, stop_group, wait_http
from tests.fakes import FakeKubernetesAPI, write_kubeconfig

REPO = Path(__file__).resolve().parents[2]
JOB_ID_LABEL = "training-platform/job-id"

pytestmark = pytest.mark.slow


def start(tmp: Path, port: int, kube: Path) -> subprocess.Popen:
    env = {
        **os.environ, "PORT": str(port), "SQLITE_PATH": str(tmp / "jobs.db"), "K8S_TRAINING_IMAGE": "trainer:crash",
        "K8S_APPLY": "1", "K8S_KUBECONFIG": str(kube), "K8S_NAMESPACE": "training", "RECONCILE_INTERVAL_SECONDS": "0",
    }
    proc = subprocess.Popen([sys.executable, "-m", "functions.embedded"], cwd=REPO, env=env, start_new_session=True,
                            stdout=open(tmp / f"server-{time.time()}.log", "wb"), stderr=subprocess.STDOUT)
    wait_http(f"http://127.0.0.1:{port}/health", 60, proc=proc)
    return proc


def test_kill_9_during_a_burst(tmp_path: Path) -> None:
    with FakeKubernetesAPI(namespaces=("training",), validate=False) as k8s:
        kube = write_kubeconfig(k8s.url, tmp_path / "kubeconfig")
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        proc = start(tmp_path, port, kube)
        accepted: list[str] = []
        lock = threading.Lock()
        stop = threading.Event()

        def client(n: int) -> None:
            session = requests.Session()
            i = 0
            while not stop.is_set():
                i += 1
                try:
                    r = session.post(f"{url}/train", json={"job_name": f"burst-{n}-{i}", "dataset_file": "gs://b/d.jsonl", "output_dir": "/tmp/o"}, timeout=5)
                except requests.RequestException:
                    continue  # the server died under us: this one got no 202
                if r.status_code == 202:
                    with lock:
                        accepted.append(r.json()["job"]["id"])

        threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(4)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with lock:
                if len(accepted) >= 60:
                    break
            time.sleep(0.05)
        os.killpg(os.getpgid(proc.pid), signal.SIGKILL)  # no goodbye: the bus queue and its threads are gone
        proc.wait(10)
        stop.set()
        for t in threads:
            t.join(10)
        assert len(accepted) >= 60
        proc = start(tmp_path, port, kube)
        try:
            pending = set(accepted)
            deadline = time.monotonic() + 120
            while pending and time.monotonic() < deadline:
                for job_id in list(pending):
                    job = requests.get(f"{url}/jobs/{job_id}", params={"logs_limit": 1}).json()["job"]
                    if job["status"] == "submitted":
                        pending.discard(job_id)
                time.sleep(0.5)
            assert not pending, f"{len(pending)} accepted job(s) never launched"
            time.sleep(1)
            per_job: dict[str, int] = {}
            for obj in k8s.objects("jobs", "training"):
                job_id = obj["metadata"]["labels"][JOB_ID_LABEL]
                per_job[job_id] = per_job.get(job_id, 0) + 1
            assert all(per_job.get(j) == 1 for j in accepted), {j: per_job.get(j) for j in accepted if per_job.get(j) != 1}
            # Nothing unaccepted was half-launched twice either.
            assert all(n == 1 for n in per_job.values())
        finally:
            stop_group(proc)
