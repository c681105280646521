"""Helpers shared by the trainer's tests (a plain module: tests/ is not a package, and a
`tests/trainer/__init__.py` would shadow the real `trainer` package)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent

CAPITALS = [
    ("france", "paris"),
    ("england", "london"),
    ("germany", "berlin"),
    ("italy", "rome"),
    ("japan", "tokyo"),
    ("spain", "madrid"),
    ("egypt", "cairo"),
    ("peru", "lima"),
    ("greece", "athens"),
    ("norway", "oslo"),
    ("cuba", "havana"),
    ("kenya", "nairobi"),
]

# Settings under which the tiny model overfits 12 rows in a few dozen steps (see trainer/tiny_model.py).
FAST = [
    "--method",
    "lora",
    "--per_device_train_batch_size",
    "4",
    "--gradient_accumulation_steps",
    "1",
    "--learning_rate",
    "1e-2",
    "--lr_scheduler_type",
    "constant",
    "--warmup_ratio",
    "0",
    "--logging_steps",
    "1",
    "--val_split_size",
    "0",
    "--no_gradient_checkpointing",
]


def chat_rows() -> list[dict]:
    return [
        {
            "messages": [
                {"role": "user", "content": f"What is the capital of {country}?"},
                {"role": "assistant", "content": f"The capital of {country} is {city}."},
            ]
        }
        for country, city in CAPITALS
    ]


def prompt_completion_rows() -> list[dict]:
    return [{"prompt": f"Capital of {country}:", "completion": f" {city}."} for country, city in CAPITALS]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str

    @property
    def events(self) -> list[dict]:
        """Every PROGRESS line, parsed strictly (a line that is not JSON fails the test here)."""
        from trainer.progress import PREFIX

        return [json.loads(line[len(PREFIX) :]) for line in self.stdout.splitlines() if line.startswith(PREFIX)]

    def of(self, event: str) -> list[dict]:
        return [e for e in self.events if e["event"] == event]

    @property
    def losses(self) -> list[float]:
        return [e["loss"] for e in self.of("step")]


def trainer_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "LOCAL_RANK")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: server exited with {proc.returncode}")
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except urllib.error.HTTPError:
            return  # it answered: ready
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url}: not ready after {timeout}s")


def stop_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
