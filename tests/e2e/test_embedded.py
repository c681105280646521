"""The README's first command, as a newcomer runs it: the embedded server on SQLite, over real HTTP,
and a restart keeps the jobs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from functions.dev.local_stack import free_port, stop_group, wait_http

REPO = Path(__file__).resolve().parents[2]


def start(tmp_path: Path, port: int, **env: str) -> subprocess.Popen:
    full = {
        **os.environ,
        "PORT": str(port),
        "SQLITE_PATH": str(tmp_path / "training.db"),
        "K8S_TRAINING_IMAGE": "trainer:dev",
        **env,
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "functions.dev.embedded"],
        cwd=REPO,
        env=full,
        start_new_session=True,
        stdout=open(tmp_path / f"server-{port}.log", "ab"),
        stderr=subprocess.STDOUT,
    )
    wait_http(f"http://127.0.0.1:{port}/health", 60, proc=proc)
    return proc


@pytest.mark.slow
def test_embedded_serves_and_restart_keeps_jobs(tmp_path: Path) -> None:
    port = free_port()
    proc = start(tmp_path, port)
    url = f"http://127.0.0.1:{port}"
    try:
        health = requests.get(f"{url}/health").json()
        assert health["store"] == "sqlite" and health["bus"] == "inline"
        body = {
            "job_name": "readme-example",
            "model": "meta-llama/Llama-3.2-3B-Instruct",
            "dataset_file": "gs://my-bucket/data.jsonl",
            "output_dir": "/tmp/model",
            "trainer_args": {"num_train_epochs": 2},
            "env": {"HF_TOKEN": "hf_embedded_secret"},
        }
        r = requests.post(f"{url}/train", json=body)
        assert r.status_code == 202
        job_id = r.json()["job"]["id"]
        assert [j["id"] for j in requests.get(f"{url}/jobs").json()["jobs"]] == [job_id]
    finally:
        stop_group(proc)
    proc = start(tmp_path, port)
    try:
        jobs = requests.get(f"{url}/jobs").json()["jobs"]
        assert [j["id"] for j in jobs] == [job_id]
        assert jobs[0]["name"] == "readme-example"
        assert "hf_embedded_secret" not in (tmp_path / "training.db").read_bytes().decode(errors="replace")
    finally:
        stop_group(proc)
