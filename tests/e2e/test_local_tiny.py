"""The embedded default end to end with the real trainer and the tiny model: `POST /train` with the local
backend -> running with progress -> succeeded with complete logs; cancel of a running job -> cancelled and
its process group gone. In-process embedded container (SQLite, inline bus, local supervisor), real HTTP."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import requests

from shared.domain.backends.local import LOCAL
from tests.fakes.tiny_job import CHAT, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.trainer]


def test_local_tiny_job_runs_to_succeeded_with_progress_and_logs(platform, tiny: Path) -> None:
    url, container, tmp = platform
    data = tmp / "chat.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in CHAT))
    body = {
        "backend": "local",
        "job_name": "tiny-e2e",
        "model_id": str(tiny),
        "dataset_file": str(data),
        "output_dir": str(tmp / "out"),
        "method": "lora",
        "max_steps": 6,
        "logging_steps": 1,
        "per_device_train_batch_size": 4,
        "gradient_accumulation_steps": 1,
        "learning_rate": 0.005,
        "val_split_size": 0,
        "env": {"HF_TOKEN": "hf_local_e2e_secret"},
    }
    r = requests.post(f"{url}/train", json=body)
    assert r.status_code == 202, r.text
    job_id = r.json()["job"]["id"]
    running = wait_for(url, job_id, lambda j: j["status"] in ("running", "succeeded", "failed"))
    assert running["status"] != "failed", running
    done = wait_for(url, job_id, lambda j: j["status"] in ("succeeded", "failed", "cancelled"))
    assert done["status"] == "succeeded", done
    assert done["exitCode"] == 0 and done["startedAt"] and done["finishedAt"] and done["externalId"]
    assert done["progress"]["event"] == "done" and done["progress"]["step"] == 6
    # Complete logs, in order, each once; every PROGRESS line parses.
    logs = requests.get(f"{url}/jobs/{job_id}/logs", params={"limit": 5000}).json()["logs"]
    assert [l["seq"] for l in logs] == list(range(1, len(logs) + 1)) and len(logs) == done["logCount"]
    progress = [json.loads(l["message"][len("PROGRESS ") :]) for l in logs if l["message"].startswith("PROGRESS ")]
    assert [p["event"] for p in progress][:2] == ["dataset", "started"] and progress[-1]["event"] == "done"
    assert sum(1 for p in progress if p["event"] == "step") >= 6
    assert (tmp / "out" / "run_summary.json").exists() and (tmp / "out" / "adapter_config.json").exists()
    timeline = [e["data"]["to"] for e in requests.get(f"{url}/jobs/{job_id}/events").json()["events"] if e["kind"] == "status"]
    assert timeline[-2:] == ["running", "succeeded"]
    everything = json.dumps(requests.get(f"{url}/jobs/{job_id}", params={"logs_limit": 5000}).json())
    assert "hf_local_e2e_secret" not in everything and "hf_local_e2e_secret" not in (tmp / "jobs.db").read_bytes().decode(errors="replace")


def test_cancel_of_a_running_local_job(platform, tiny: Path) -> None:
    url, container, tmp = platform
    data = tmp / "chat.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in CHAT * 20))
    body = {
        "backend": "local",
        "model_id": str(tiny),
        "dataset_file": str(data),
        "output_dir": str(tmp / "out-cancel"),
        "method": "lora",
        "max_steps": 100000,
        "logging_steps": 1,
        "per_device_train_batch_size": 1,
        "gradient_accumulation_steps": 1,
        "val_split_size": 0,
        "save_steps": 100000,
    }
    job_id = requests.post(f"{url}/train", json=body).json()["job"]["id"]
    wait_for(url, job_id, lambda j: j["status"] == "running" and (j.get("progress") or {}).get("event") == "step")
    pid = int(requests.get(f"{url}/jobs/{job_id}").json()["job"]["externalId"])
    r = requests.post(f"{url}/jobs/{job_id}/cancel")
    assert r.status_code == 202 and r.json()["job"]["status"] in ("cancelling", "cancelled")
    done = wait_for(url, job_id, lambda j: j["status"] in ("cancelled", "failed", "succeeded"), timeout=60)
    assert done["status"] == "cancelled", done
    local = container.backends[LOCAL]
    assert local.wait(job_id, 60) in (143, -15, 137)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        pytest.fail("the trainer's process group is still alive")
    assert requests.post(f"{url}/jobs/{job_id}/cancel").status_code == 409
