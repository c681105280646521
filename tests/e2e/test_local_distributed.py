"""Issue 15's "done when" for the local backend: `POST /train` with `"resources": {"gpus": 2}` trains on
two processes (CPU over gloo here: no CUDA) to `succeeded`, reports each step once and saves the adapter
once; a cancelled two-process job leaves no rank behind. In-process embedded container (SQLite, inline
bus, local supervisor), the real trainer and its launcher, real HTTP."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import requests

from shared.domain.backends.local import LOCAL
from tests.fakes.tiny_job import CHAT, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.trainer]


def processes_mentioning(text: str) -> list[int]:
    """Live processes whose command line holds `text` (the job's unique output folder): every rank has it."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if text in cmdline and state != "Z":
            found.append(int(entry.name))
    return found


def body(tiny: Path, data: Path, out: Path, **extra) -> dict:
    return {
        "backend": "local",
        "model_id": str(tiny),
        "dataset_file": str(data),
        "output_dir": str(out),
        "method": "lora",
        "logging_steps": 1,
        "per_device_train_batch_size": 2,
        "gradient_accumulation_steps": 1,
        "learning_rate": 0.005,
        "val_split_size": 0,
        "gradient_checkpointing": False,
        "resources": {"gpus": 2},
        **extra,
    }


def test_a_two_gpu_local_job_trains_on_two_processes_to_succeeded_and_saves_its_adapter_once(platform, tiny: Path) -> None:
    url, container, tmp = platform
    data = tmp / "chat.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in CHAT))
    out = tmp / "out"
    r = requests.post(f"{url}/train", json=body(tiny, data, out, max_steps=6))
    assert r.status_code == 202, r.text
    job_id = r.json()["job"]["id"]
    done = wait_for(url, job_id, lambda j: j["status"] in ("succeeded", "failed", "cancelled"), timeout=240)
    assert done["status"] == "succeeded", done
    assert done["exitCode"] == 0 and done["progress"]["event"] == "done" and done["progress"]["step"] == 6
    job = requests.get(f"{url}/jobs/{job_id}").json()["job"]
    assert "launch.py --nproc_per_node 2" in job["command"], job["command"]
    logs = requests.get(f"{url}/jobs/{job_id}/logs", params={"limit": 5000}).json()["logs"]
    assert "launch: 1 node(s) x 2 process(es)" in "\n".join(l["message"] for l in logs)
    progress = [json.loads(l["message"][len("PROGRESS ") :]) for l in logs if l["message"].startswith("PROGRESS ")]
    # Rank 0 alone reports: each step once, one start, one end.
    assert [p["step"] for p in progress if p["event"] == "step"] == [1, 2, 3, 4, 5, 6]
    assert [p["event"] for p in progress].count("done") == 1 and [p["event"] for p in progress].count("started") == 1
    summary = json.loads((out / "run_summary.json").read_text())
    assert summary["world_size"] == 2 and summary["global_batch_size"] == 4 and summary["status"] == "succeeded"
    assert [p.name for p in out.glob("adapter_model*")] == ["adapter_model.safetensors"]
    assert (out / "adapter_config.json").is_file()


def test_cancel_of_a_two_process_local_job_stops_every_rank(platform, tiny: Path) -> None:
    url, container, tmp = platform
    data = tmp / "chat.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in CHAT * 20))
    out = tmp / "out-cancel"
    job_id = requests.post(f"{url}/train", json=body(tiny, data, out, max_steps=100000, save_steps=100000)).json()["job"]["id"]
    wait_for(url, job_id, lambda j: j["status"] == "running" and (j.get("progress") or {}).get("event") == "step", timeout=240)
    ranks = processes_mentioning(str(out))
    assert len(ranks) >= 3, ranks  # the launcher and its two workers
    r = requests.post(f"{url}/jobs/{job_id}/cancel")
    assert r.status_code == 202
    done = wait_for(url, job_id, lambda j: j["status"] in ("cancelled", "failed", "succeeded"), timeout=90)
    assert done["status"] == "cancelled", done
    assert container.backends[LOCAL].wait(job_id, 60) == 143  # every rank checkpointed and exited 143
    deadline = time.monotonic() + 30  # generous for a loaded CI box: it only waits while a rank is still there
    while processes_mentioning(str(out)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert processes_mentioning(str(out)) == []
    checkpoints = list(out.glob("checkpoint-*"))
    assert len(checkpoints) == 1 and {"rng_state_0.pth", "rng_state_1.pth", "trainer_state.json"} <= {p.name for p in checkpoints[0].iterdir()}


@pytest.mark.parametrize("gpus, launcher", [(None, False), (0, False), (1, False), (2, True), (4, True)])
def test_the_trainer_command_is_the_script_for_one_process_and_the_launcher_for_more(gpus, launcher, tmp_path) -> None:
    from shared.adapters.local_backend import LocalBackend
    from shared.domain.resources import Resources
    from shared.settings import REPO_ROOT
    from tests.fakes.jobs import make_job

    script = REPO_ROOT / "trainer" / "train.py"
    backend = LocalBackend(python_bin="python3", script=script, cwd=REPO_ROOT, events=lambda m: None, runs_dir=tmp_path)
    job = make_job(1, backend=LOCAL, resources=Resources(gpus=gpus))
    argv = backend.trainer_argv(job)
    if launcher:
        assert argv[:6] == ["python3", str(script.with_name("launch.py")), "--nproc_per_node", str(gpus), "--script", str(script)]
        assert argv[6:] == ["--", *job.args]
    else:
        assert argv == ["python3", str(script), *job.args]
