"""--log_uri: train.log and run_summary.json written while the run goes and at its end, however it ends
(trainer/run_log.py), on a local folder and on moto's S3 server."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import uuid
from pathlib import Path

import pytest
from trainer_testlib import FAST, chat_rows

from trainer import progress, run_log

pytestmark = pytest.mark.trainer


def wait_for(predicate, timeout: float = 30.0, step: float = 0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"not within {timeout}s")


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


# ---- the RunLog alone ----------------------------------------------------------------------------------


def test_periodic_uploads_overwrite_then_final_summary_says_how_it_ended(tmp_path, capsys):
    folder = tmp_path / "logs"
    log = run_log.RunLog(str(folder), interval=0.05, summary_file=tmp_path / "out" / "run_summary.json").start()
    try:
        print("preflight: 12 rows")
        print(progress.format_line("step", step=3, total_steps=10, loss=1.5))
        running = wait_for(lambda: (s := read_json(folder / "run_summary.json")) and s.get("progress") and s)
        assert running["status"] == "running" and running["progress"]["step"] == 3
        assert "preflight: 12 rows" in (folder / "train.log").read_text()
        first = log.uploads
        wait_for(lambda: log.uploads >= first + 2)  # every interval, the same two files again
        print(progress.format_line("error", message="bad input: no rows", exit_code=2))
    finally:
        assert log.finish(2)
    final = json.loads((folder / "run_summary.json").read_text())
    assert final["status"] == "failed" and final["exit_code"] == 2 and final["error"] == "bad input: no rows"
    text = (folder / "train.log").read_text()
    assert "preflight: 12 rows" in text and "PROGRESS" in text
    assert "preflight: 12 rows" in capsys.readouterr().out  # still printed to the real stream
    assert sorted(p.name for p in folder.iterdir()) == ["run_summary.json", "train.log"]  # no partial files left


def test_a_failing_upload_is_a_warning_never_an_exception(tmp_path, capsys):
    def broken(uri, payload, options):
        raise OSError("bucket says no")

    log = run_log.RunLog("s3://nowhere/logs", interval=0.01, write=broken).start()
    print("hello")
    time.sleep(0.05)  # a few periodic attempts fail meanwhile; nothing escapes the daemon thread
    assert log.finish(0) is False
    err = capsys.readouterr().err
    assert "warning: could not write the log to s3://nowhere/logs: OSError: bucket says no" in err


def test_uploaded_log_is_redacted(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_verysecret")
    log = run_log.RunLog(str(tmp_path), interval=60).start()
    print("token hf_verysecret leaked by a library")
    log.finish(1)
    assert "hf_verysecret" not in (tmp_path / "train.log").read_text()
    assert "token *** leaked" in (tmp_path / "train.log").read_text()


# ---- the trainer ---------------------------------------------------------------------------------------


@pytest.fixture
def s3_bucket(s3_server, monkeypatch):
    import fsspec
    import s3fs

    for k, v in s3_server.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("TRAINING_PLATFORM_CREDENTIALS", raising=False)
    s3fs.S3FileSystem.clear_instance_cache()  # the ambient instance must point at this server
    fs = fsspec.filesystem("s3", skip_instance_cache=True)
    name = f"logs-{uuid.uuid4().hex[:10]}"
    fs.mkdir(name)
    yield fs, name
    s3fs.S3FileSystem.clear_instance_cache()


def test_log_and_summary_land_on_s3_at_the_end(s3_bucket, tiny_model, chat_file, tmp_path, train_inproc):
    fs, bucket = s3_bucket
    out = tmp_path / "out"
    run = train_inproc(
        "--model_id", tiny_model, "--dataset_file", chat_file, "--output_dir", out, *FAST, "--max_steps", "3", "--log_uri", f"s3://{bucket}/logs/job-1/"
    )
    assert run.code == 0, run.stderr
    log = fs.cat(f"{bucket}/logs/job-1/train.log").decode()
    assert '"event":"done"' in log
    assert run.stderr.strip().splitlines()[-1] in log  # stderr too (the preflight report, the warnings)
    assert [line for line in log.splitlines() if line.startswith("PROGRESS ")] == [line for line in run.stdout.splitlines() if line.startswith("PROGRESS ")]
    summary = json.loads(fs.cat(f"{bucket}/logs/job-1/run_summary.json"))
    assert summary == json.loads((out / "run_summary.json").read_text())
    assert summary["status"] == "succeeded" and summary["steps"] == 3


def test_failed_runs_still_leave_a_log_and_a_failed_summary(s3_bucket, tiny_model, tmp_path, train_inproc):
    fs, bucket = s3_bucket
    # Bad input: the dataset is not there (exit 2).
    run = train_inproc(
        "--model_id", tiny_model, "--dataset_file", tmp_path / "missing.jsonl", "--output_dir", tmp_path / "a", "--log_uri", f"s3://{bucket}/bad/"
    )
    assert run.code == 2
    summary = json.loads(fs.cat(f"{bucket}/bad/run_summary.json"))
    assert summary["status"] == "failed" and summary["exit_code"] == 2 and "missing.jsonl" in summary["error"]
    assert "error: bad input" in fs.cat(f"{bucket}/bad/train.log").decode()

    # A runtime exception (a model folder whose tokenizer cannot load: exit 1), traceback included.
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text("{}")
    data = tmp_path / "chat.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in chat_rows()))
    run = train_inproc("--model_id", broken, "--dataset_file", data, "--output_dir", tmp_path / "b", "--dry_run", "--log_uri", f"s3://{bucket}/crash/")
    assert run.code == 1, run.stderr
    summary = json.loads(fs.cat(f"{bucket}/crash/run_summary.json"))
    assert summary["status"] == "failed" and summary["exit_code"] == 1 and summary["error"]
    assert "Traceback (most recent call last)" in fs.cat(f"{bucket}/crash/train.log").decode()


def test_a_mid_run_upload_is_seen_while_training(s3_bucket, tiny_model, chat_file, tmp_path, train_inproc):
    """With the shortest interval the flag allows (5 s), a watcher sees run_summary.json say `running`
    with a step while the run still trains; it then stops the run with SIGTERM (bounded: 90 s at most),
    and the final summary says `preempted`."""
    import fsspec

    fs, bucket = s3_bucket
    watcher_fs = fsspec.filesystem("s3", skip_instance_cache=True)
    seen: dict = {}
    finished = threading.Event()  # the run ended on its own: no SIGTERM then (it would reach pytest itself)

    def watch():
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and "summary" not in seen and not finished.is_set():
            try:
                summary = json.loads(watcher_fs.cat(f"{bucket}/live/run_summary.json"))
                if summary["status"] == "running" and (summary.get("progress") or {}).get("event") == "step":
                    seen["summary"] = summary
                    seen["log"] = watcher_fs.cat(f"{bucket}/live/train.log").decode()
            except (FileNotFoundError, ValueError):
                pass
            time.sleep(0.2)
        if not finished.is_set():
            os.kill(os.getpid(), signal.SIGTERM)  # the trainer's handler: checkpoint at this step, exit 143

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    run = train_inproc(
        "--model_id",
        tiny_model,
        "--dataset_file",
        chat_file,
        "--output_dir",
        tmp_path / "out",
        *FAST,
        "--max_steps",
        "100000",
        "--save_steps",
        "100000",
        "--log_uri",
        f"s3://{bucket}/live",
        "--log_upload_interval_seconds",
        "5",
    )
    finished.set()
    watcher.join(timeout=30)
    assert "summary" in seen, "no mid-run upload seen"
    assert run.code == 143, run.stderr
    assert seen["summary"]["progress"]["step"] >= 1 and '"event":"started"' in seen["log"]
    final = json.loads(fs.cat(f"{bucket}/live/run_summary.json"))
    assert final["status"] == "preempted" and final["progress"]["step"] >= seen["summary"]["progress"]["step"]
