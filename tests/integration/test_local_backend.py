"""The local backend with a real child process (tests/fakes/fake_trainer.py as TRAIN_SCRIPT_PATH): the
supervisor's started / logs / exited envelopes, exit codes, secrets in the child's environment only,
cancel of the whole process group, stop_all, adoption of a job already running."""

from __future__ import annotations

import os
import sys
import time

import pytest

from shared.adapters.local_backend import LocalBackend
from shared.adapters.local_unit import LocalSettings
from shared.adapters.sqlite_store import SqliteJobStore
from shared.domain.backends.local import LOCAL
from shared.domain.events import from_message
from shared.domain.status import JobStatus
from shared.errors import PermanentError
from shared.messages import Message
from shared.settings import REPO_ROOT, Settings
from shared.usecases.launching import Launcher
from shared.usecases.service import OP_SUBMIT, launch_message
from tests.fakes import FAKE_TRAINER
from tests.fakes.backends import Events, assert_gone, local_job
from tests.fakes.backends import make_local_backend as make_backend


def test_runs_the_script_and_emits_started_logs_exited():
    events = Events()
    backend = make_backend(events, FAKE_TRAINER_LINES="3", FAKE_TRAINER_EXIT="0", FAKE_TRAINER_ECHO_ENV="HF_TOKEN")
    job, env = local_job()
    sub = backend.submit(job, env)
    assert backend.wait(job.id, 10) == 0
    assert sub.external_id == str(backend.pid_of(job.id))
    assert sub.command.startswith("HF_TOKEN=[redacted] ") and str(FAKE_TRAINER) in sub.command and "--dataset_file=/tmp/data.jsonl" in sub.command
    assert "hf_local_secret_42" not in sub.command
    decoded = [from_message(m, job.created_at) for m in events.messages]
    assert all(e is not None and e.job_id == job.id and e.source == "local" for e in decoded)
    assert events.states() == ["started", "exited"]
    assert events.messages[0]["pid"] == int(sub.external_id)
    assert events.messages[-1]["exit_code"] == 0
    lines = events.lines()
    assert [l["seq"] for l in lines] == list(range(1, len(lines) + 1))  # increasing, 1-based, no gaps
    stdout = [l["message"] for l in lines if l["stream"] == "stdout"]
    assert stdout[0].startswith("ARGS ") and "--output_dir=/tmp/out" in stdout[0]
    assert "HF_TOKEN=[redacted]" in stdout  # the child saw the value; the log shows it redacted
    assert stdout[2:5] == ["line 0", "line 1", "line 2"] and stdout[5].startswith("PROGRESS {")
    assert [l["message"] for l in lines if l["stream"] == "stderr"] == ["warning 0"]
    assert all(l["timestamp"].endswith("Z") for l in lines)
    assert "hf_local_secret_42" not in repr(events.messages)


@pytest.mark.parametrize("code", [1, 2, 7])
def test_exit_code_is_reported(code):
    events = Events()
    backend = make_backend(events, FAKE_TRAINER_EXIT=str(code))
    job, env = local_job()
    backend.submit(job, env)
    assert backend.wait(job.id, 10) == code
    assert events.messages[-1]["state"] == "exited" and events.messages[-1]["exit_code"] == code


def test_lines_are_batched_by_count():
    events = Events()
    backend = make_backend(events, batch_lines=50, FAKE_TRAINER_LINES="500", FAKE_TRAINER_STDERR="0")
    job, env = local_job()
    backend.submit(job, env)
    backend.wait(job.id, 10)
    batches = [len(m["logs"]) for m in events.messages if "logs" in m]
    assert sum(batches) == 502 and max(batches) <= 50 and len(batches) >= 11
    assert [l["seq"] for l in events.lines()] == list(range(1, 503))


def test_cancel_terminates_the_whole_process_group(tmp_path):
    events = Events()
    pidfile = tmp_path / "child.pid"
    backend = make_backend(events, FAKE_TRAINER_SLEEP="30", FAKE_TRAINER_CHILD_PIDFILE=str(pidfile))
    job, env = local_job()
    backend.submit(job, env)
    deadline = time.monotonic() + 10
    while not pidfile.exists() or not pidfile.read_text():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    grandchild = int(pidfile.read_text())
    assert backend.cancel(job) is True
    assert backend.wait(job.id, 10) == 143  # SIGTERM, as Kubernetes would report it
    exited = events.messages[-1]
    assert exited["state"] == "exited" and exited["reason"] == "CancelRequested" and exited["message"] == "terminated by SIGTERM"
    assert_gone(grandchild)
    assert backend.cancel(job) is None  # already exited: its events tell the end


def test_sigkill_after_the_grace_period():
    events = Events()
    backend = make_backend(events, grace=0.5, FAKE_TRAINER_SLEEP="30", FAKE_TRAINER_IGNORE_TERM="1")
    job, env = local_job()
    backend.submit(job, env)
    _wait_for_line(events, "READY")
    started = time.monotonic()
    backend.cancel(job)
    assert backend.wait(job.id, 10) == 137
    assert 0.4 < time.monotonic() - started < 5


def test_stop_all_stops_every_job():
    events = Events()
    backend = make_backend(events, FAKE_TRAINER_SLEEP="30")
    jobs = [local_job(f"0b7e1f3a-1111-4c2d-8e9f-00000000000{i}") for i in range(3)]
    for job, env in jobs:
        backend.submit(job, env)
    for job, _ in jobs:
        _wait_for_line(events, "READY", job.id)
    backend.stop_all(grace_seconds=2)
    assert [backend.wait(job.id, 0) for job, _ in jobs] == [143, 143, 143]
    assert not any(backend.is_running(job.id) for job, _ in jobs)


def test_a_job_already_running_is_adopted_not_started_twice():
    events = Events()
    backend = make_backend(events, FAKE_TRAINER_SLEEP="30")
    job, env = local_job()
    first = backend.submit(job, env)
    second = backend.submit(job, env)
    assert first.external_id == second.external_id
    _wait_for_line(events, "READY")  # `started` comes once the trainer runs
    assert events.states().count("started") == 1
    backend.stop_all(grace_seconds=2)


def test_through_the_launcher_ten_deliveries_start_one_process(tmp_path):
    events = Events()
    backend = make_backend(events, FAKE_TRAINER_SLEEP="30")
    store = SqliteJobStore(tmp_path / "jobs.db")
    launcher = Launcher(store=store, backends={LOCAL: backend})
    job, env = local_job()
    store.create(job)
    for i in range(10):
        launcher.handle(Message(id=f"m{i}", topic="train-requests", data=launch_message(job.id, OP_SUBMIT, env)))
    stored = store.get(job.id)
    assert stored.status is JobStatus.SUBMITTED and stored.external_id == str(backend.pid_of(job.id))
    assert "[redacted]" in stored.command and "hf_local_secret_42" not in stored.command
    _wait_for_line(events, "READY")
    assert events.states().count("started") == 1
    backend.stop_all(grace_seconds=2)
    assert b"hf_local_secret_42" not in b"".join(p.read_bytes() for p in tmp_path.glob("jobs.db*"))


def test_missing_script_and_python_are_permanent(tmp_path):
    events = Events()
    job, env = local_job()
    with pytest.raises(PermanentError) as info:
        LocalBackend(python_bin=sys.executable, script=tmp_path / "nope.py", cwd=REPO_ROOT, events=events).submit(job, env)
    assert info.value.reason == "TrainerNotFound"
    with pytest.raises(PermanentError) as info:
        LocalBackend(python_bin=str(tmp_path / "no-python"), script=FAKE_TRAINER, cwd=REPO_ROOT, events=events).submit(job, env)
    assert info.value.reason == "TrainerNotStartable"
    with pytest.raises(PermanentError) as info:
        make_backend(events).submit(job, {})  # values lost (a recovered launch)
    assert info.value.reason == "SecretValuesUnavailable"
    assert events.messages == []


def test_settings_resolve_the_script_from_the_repo_root():
    assert Settings().group(LocalSettings).train_script == REPO_ROOT / "trainer" / "train.py"
    relative = os.path.relpath(FAKE_TRAINER, REPO_ROOT)
    assert Settings(TRAIN_SCRIPT_PATH=relative).group(LocalSettings).train_script == FAKE_TRAINER


# ---- helpers ---------------------------------------------------------------------------------------


def _wait_for_line(events: Events, text: str, job_id: str | None = None, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with events.lock:
            if any(l["message"] == text for m in events.messages if job_id in (None, m["job_id"]) for l in m.get("logs", [])):
                return
        time.sleep(0.02)
    raise AssertionError(f"no {text!r} line within {timeout}s")
