"""The Python client and `trainctl` against a real embedded server (`python -m functions.dev.embedded`, started
here on a free port in its own process group): the README's tiny local job submitted, watched and
followed to `succeeded`; `logs -f` across a server restart gets every line exactly once; `metrics --png`
draws one point per `PROGRESS` loss line; `watch` in a real terminal (tmux) shows the bar advancing."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import pytest

from functions.client import FINAL_STATUSES, Client
from functions.client.cli import main as trainctl
from functions.dev.local_stack import free_port, stop_group, wait_http

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
TRAINCTL = [sys.executable, "-m", "functions.client.cli"]
CURVE = REPO / "tests" / "fakes" / "curve_trainer.py"


class Server:
    """One embedded server process; `restart()` kills it (SIGKILL, like a crash) and starts it again on
    the same port and database."""

    def __init__(self, root: Path, **env: str):
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "PORT": str(self.port),
            "SQLITE_PATH": str(root / "jobs.db"),
            "DEFAULT_TRAINING_BACKEND": "local",
            "LOCAL_ALLOWED_ROOTS": f"{root}:/tmp",
            "RECONCILE_INTERVAL_SECONDS": "0",
            "TRAINCTL_URL": self.url,
            **env,
        }
        self.env.pop("TRAINCTL_TOKEN", None)
        self.proc: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "functions.dev.embedded"],
            cwd=REPO,
            env=self.env,
            start_new_session=True,
            stdout=open(self.root / "server.log", "ab"),
            stderr=subprocess.STDOUT,
        )
        wait_http(f"{self.url}/health", 60, proc=self.proc)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()  # the server only: its trainers live in their own sessions
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None:
            stop_group(self.proc)


@pytest.fixture
def curve_server(tmp_path: Path):
    (tmp_path / "data.jsonl").write_text('{"text": "unused by the stand-in"}\n')
    server = Server(tmp_path, TRAIN_SCRIPT_PATH=str(CURVE), CURVE_TRAINER_INTERVAL="0.1")
    yield server
    server.stop()


def curve_job(root: Path, steps: int) -> dict:
    return {
        "backend": "local",
        "job_name": "curve",
        "model_id": str(root),
        "dataset_file": str(root / "data.jsonl"),
        "output_dir": str(root / "out"),
        "method": "lora",
        "max_steps": steps,
    }


def read_png(path: Path) -> tuple[int, int, dict[str, str], bytes]:
    """Decode our own PNGs (RGB, filter 0): size, text chunks, pixels; every chunk's CRC is checked."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, text, idat, width, height = 8, {}, b"", 0, 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF, kind
        if kind == b"IHDR":
            width, height = struct.unpack(">II", body[:8])
        elif kind == b"tEXt":
            k, _, v = body.partition(b"\x00")
            text[k.decode()] = v.decode()
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    assert len(raw) == height * (1 + 3 * width)
    return width, height, text, raw


# ---- the README's tiny job, with the real trainer ---------------------------------------------------
CHAT = [{"messages": [{"role": "user", "content": f"What is {a} plus {b}?"}, {"role": "assistant", "content": str(a + b)}]} for a in range(6) for b in range(4)]


@pytest.mark.trainer
def test_tiny_local_job_through_the_client_and_trainctl(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    from trainer import tiny_model

    model = tiny_model.write(tmp_path / "tiny")
    (tmp_path / "chat.jsonl").write_text("".join(json.dumps(r) + "\n" for r in CHAT))
    spec = {
        "backend": "local",
        "job_name": "tiny-lora",
        "model_id": str(model),
        "dataset_file": str(tmp_path / "chat.jsonl"),
        "output_dir": str(tmp_path / "out"),
        "method": "lora",
        "max_steps": 8,
        "logging_steps": 1,
        "learning_rate": 0.005,
        "per_device_train_batch_size": 4,
        "gradient_accumulation_steps": 1,
        "val_split_size": 0,
    }
    spec_file = tmp_path / "tiny-local.json"
    spec_file.write_text(json.dumps(spec))
    server = Server(tmp_path)
    try:
        with Client(server.url) as client:
            # The Python client: submit, follow the logs while waiting, with a callback per change.
            job = client.submit(spec_file)
            followed: list = []
            follower = threading.Thread(target=lambda: followed.extend(client.logs(job.id, follow=True)))
            follower.start()
            seen: list[str] = []
            final = client.wait(job.id, on_change=lambda j: seen.append(j.status.value), poll_seconds=0.2)
            follower.join(60)
            assert final.status.value == "succeeded", final
            assert seen[-1] == "succeeded" and "running" in seen and len(seen) >= 2
            stored = list(client.logs(job.id))
            assert [l.seq for l in followed] == [l.seq for l in stored] == list(range(1, final.logCount + 1))
            statuses = [e.data["to"] for e in client.events(job.id) if e.kind == "status"]
            assert statuses[-1] == "succeeded"
            loss_lines = [l for l in stored if l.message.startswith("PROGRESS ") and "loss" in json.loads(l.message[9:])]
            points = list(client.metrics(job.id))
            assert len([p for p in points if p.loss is not None]) == len(loss_lines) >= 8
            assert [p.seq for p in points] == sorted(p.seq for p in points)

            # trainctl, as the README shows it: submit --follow, then metrics --png.
            capfd.readouterr()
            proc = subprocess.run([*TRAINCTL, "--url", server.url, "submit", str(spec_file), "--follow"], capture_output=True, text=True, timeout=300)
            assert proc.returncode == 0, proc.stdout + proc.stderr
            second_id = proc.stdout.splitlines()[0].strip()
            assert second_id != job.id and "succeeded" in proc.stdout.splitlines()[-1]
            png = tmp_path / "loss.png"
            proc = subprocess.run([*TRAINCTL, "--url", server.url, "metrics", second_id, "--png", str(png)], capture_output=True, text=True, timeout=60)
            assert proc.returncode == 0, proc.stderr
            width, height, text, pixels = read_png(png)
            second_loss = [l for l in client.logs(second_id) if l.message.startswith("PROGRESS ") and "loss" in json.loads(l.message[9:])]
            assert text["trainctl:points"].split(",")[0] == f"loss={len(second_loss)}"
            assert (width, height) == (800, 480) and len(set(pixels)) > 3  # more than a blank canvas
    finally:
        server.stop()


# ---- the stand-in trainer: cheap curves ----------------------------------------------------------------
def test_client_models_errors_and_paging(curve_server: Server, tmp_path: Path) -> None:
    with Client(curve_server.url, retries=1, backoff_seconds=0.01) as client:
        with pytest.raises(Exception) as bad:
            client.submit({**curve_job(tmp_path, 1), "max_stepz": 3, "learning_rate": "fast"})
        err = bad.value
        assert getattr(err, "status", None) == 400
        assert {"max_stepz", "learning_rate"} <= {e.field for e in err.errors}  # the api's field errors, typed
        ids = [client.submit(curve_job(tmp_path, 2)).id for _ in range(3)]
        listed = [j.id for j in client.jobs(page_size=1)]  # one job a page: the iterator follows the cursors
        assert listed == ids[::-1]
        assert [j.id for j in client.jobs(limit=2)] == ids[::-1][:2]
        for job_id in ids:
            assert client.wait(job_id, poll_seconds=0.1, timeout=60).status.value == "succeeded"
        assert len(list(client.metrics(ids[0], page_size=1))) == 4  # started, 2 steps, done: page by page
        # The same Idempotency-Key twice (what a retry sends) is one job.
        a = client.submit(curve_job(tmp_path, 1), idempotency_key="retry-me")
        b = client.submit(curve_job(tmp_path, 1), idempotency_key="retry-me")
        assert a.id == b.id
        with pytest.raises(Exception) as missing:
            client.get("no-such-job")
        assert getattr(missing.value, "status", None) == 404


def test_logs_follow_across_a_server_restart_gets_every_line_once(curve_server: Server, tmp_path: Path) -> None:
    """The server is killed (SIGKILL) mid-job and started again; the follower reconnects with
    Last-Event-ID and ends with exactly the stored lines, in order, none twice."""
    with Client(curve_server.url, backoff_seconds=0.1) as client:
        job = client.submit(curve_job(tmp_path, 40))
        got: list = []
        errors: list[BaseException] = []

        def follow() -> None:
            try:
                got.extend(client.logs(job.id, follow=True))
            except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
                errors.append(exc)

        t = threading.Thread(target=follow)
        t.start()
        deadline = time.monotonic() + 60
        while len(got) < 10 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(got) >= 10, "the follower received nothing before the restart"
        before = len(got)
        curve_server.kill()
        time.sleep(0.5)
        curve_server.start()
        t.join(120)
        assert not t.is_alive() and not errors, errors
        final = client.summary(job.id)
        assert final.status.value in FINAL_STATUSES
        stored = list(client.logs(job.id))
        assert [l.seq for l in got] == [l.seq for l in stored] == list(range(1, len(stored) + 1))
        assert len(got) > before  # lines also arrived after the restart


def test_trainctl_commands_and_exit_codes(curve_server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "job.yaml"
    spec.write_text("\n".join(f"{k}: {json.dumps(v)}" for k, v in curve_job(tmp_path, 3).items()) + "\n")
    url = ["--url", curve_server.url]
    assert trainctl([*url, "submit", str(spec), "--json"]) == 0
    job_id = json.loads(capsys.readouterr().out)["id"]
    assert trainctl([*url, "wait", job_id]) == 0
    assert capsys.readouterr().out.strip() == f"{job_id} succeeded"
    assert trainctl([*url, "jobs", "--status", "succeeded"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:4] == ["ID", "NAME", "BACKEND", "STATUS"] and job_id in table[1]
    assert trainctl([*url, "get", job_id]) == 0
    shown = capsys.readouterr().out
    assert "status:" in shown and "succeeded" in shown and "running -> succeeded" in shown and "training step 3" in shown
    assert trainctl([*url, "logs", job_id, "--tail", "2"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2
    assert trainctl([*url, "metrics", job_id]) == 0
    assert "loss (3 points)" in capsys.readouterr().out
    assert trainctl([*url, "manifest", job_id]) == 0
    assert json.loads(capsys.readouterr().out)["backend"] == "local"
    # Exit codes: a failed job is 1, a cancelled one 3, bad input 2 with the field errors one per line.
    failing = tmp_path / "fail.json"
    failing.write_text(json.dumps({**curve_job(tmp_path, 1), "job_name": "fails", "env": {"CURVE_TRAINER_EXIT": "5"}}))
    assert trainctl([*url, "submit", str(failing), "--follow"]) == 1
    capsys.readouterr()
    long = client_submit(curve_server.url, curve_job(tmp_path, 1000))
    assert trainctl([*url, "cancel", long]) == 0
    assert trainctl([*url, "watch", long]) == 3
    capsys.readouterr()
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**curve_job(tmp_path, 1), "max_stepz": 1, "learning_rate": "fast"}))
    assert trainctl([*url, "submit", str(bad)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert any(line.startswith("max_stepz: ") for line in err) and any(line.startswith("learning_rate: ") for line in err)
    assert trainctl([*url, "get", "no-such-job"]) == 2
    assert trainctl(["--url", f"http://127.0.0.1:{free_port()}", "jobs"]) == 4  # nobody there


def client_submit(url: str, body: dict) -> str:
    with Client(url) as client:
        return client.submit(body).id


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_watch_in_a_real_terminal_shows_the_bar_advancing(curve_server: Server, tmp_path: Path) -> None:
    job_id = client_submit(curve_server.url, curve_job(tmp_path, 30))
    session = f"trainctl-{os.getpid()}-{curve_server.port}"
    cmd = " ".join([*TRAINCTL, "--url", curve_server.url, "watch", job_id, "--poll", "0.2"]) + "; echo EXIT=$?; sleep 30"
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "150", "-y", "20", cmd], check=True, cwd=REPO, env=curve_server.env)
    try:
        steps: list[int] = []
        screen = ""
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            screen = subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True).stdout
            bars = [line for line in screen.splitlines() if line.startswith("[") and "/30" in line]
            if bars:  # the newest bar on the screen
                steps.append(int(bars[-1].split("]")[1].split("/")[0]))
            if "EXIT=" in screen:
                break
            time.sleep(0.2)
        assert "EXIT=0" in screen, screen
        assert len(set(steps)) >= 3 and steps == sorted(steps), steps  # the bar moved forward, in place
        assert steps[-1] == 30 and "-> succeeded" in screen
        bars = sum(1 for line in screen.splitlines() if line.startswith("["))
        assert bars < len(set(steps))  # redrawn in place: fewer bar lines on screen than steps it showed
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
