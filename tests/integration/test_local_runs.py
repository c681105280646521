"""Local runs outlive the server (shared/adapters/local_runs.py, local_backend.py): a server process that
is killed with SIGKILL leaves its trainer running; a backend built later over the same runs folder adopts
it instead of starting another, reports its true exit code even when it ended while no server ran, fails
a run that ended without a record as `ProcessLost` (after stopping what was left of it), and never
signals a process that merely reuses a recorded pid. Reconcile reads the same folder."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest

from shared.adapters.local_backend import LocalBackend
from shared.adapters.local_runs import RunDir, proc_start_time, write_json_atomic
from shared.adapters.sqlite_store import SqliteJobStore
from shared.domain.backends.local import LOCAL
from shared.domain.status import JobStatus
from shared.errors import TransientError
from shared.settings import REPO_ROOT
from shared.usecases.reconcile import Reconciler
from shared.usecases.status_sync import StatusSync
from tests.fakes import FAKE_TRAINER
from tests.fakes.backends import Events, local_job
from tests.fakes.backends import assert_gone as _assert_gone
from tests.fakes.backends import make_local_backend as make_backend
from tests.fakes.policy import BUILT_IN_RULES
from tests.integration.conftest import RecordingBus

# A "server": builds the backend over RUNS, submits the job, says the external id, then waits to be killed.
SERVER = """
import os, sys, time
from tests.fakes.backends import Events, local_job, make_local_backend
backend = make_local_backend(Events(), runs_dir=sys.argv[1], **{k: v for k, v in os.environ.items() if k.startswith("FAKE_TRAINER_")})
job, env = local_job(output_dir=sys.argv[2])
print(backend.submit(job, env).external_id, flush=True)
time.sleep(600)
"""


def starts(markers: Path, key: str) -> list[int]:
    return sorted(int(p.suffix[1:]) for p in markers.glob(f"{key}.*"))


def kill_9_server(runs: Path, markers: Path, output_dir: str, **trainer_env: str) -> str:
    """Start a backend in a process of its own, let it launch the job, kill it with SIGKILL; the run's pid."""
    env = {**os.environ, "FAKE_TRAINER_MARKER_DIR": str(markers), **trainer_env}
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(runs), output_dir], cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, text=True)
    try:
        external_id = server.stdout.readline().strip()
        assert external_id.isdigit(), external_id
        deadline = time.monotonic() + 10
        while not starts(markers, Path(output_dir).name):  # the trainer runs
            assert time.monotonic() < deadline and server.poll() is None
            time.sleep(0.02)
    finally:
        server.kill()  # SIGKILL: no goodbye, no stop_all
        server.wait(10)
    return external_id


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    runs, markers = tmp_path / "runs", tmp_path / "markers"
    markers.mkdir()
    return runs, markers


def test_a_run_outlives_a_killed_server_and_is_adopted_not_started_again(dirs) -> None:
    runs, markers = dirs
    pid = kill_9_server(runs, markers, "/tmp/out-adopt", FAKE_TRAINER_SLEEP="1.5", FAKE_TRAINER_EXIT="3")
    job, env = local_job(output_dir="/tmp/out-adopt")
    assert RunDir(runs, job.id).state() == "alive"  # the trainer went on without its server
    events = Events()
    backend = make_backend(events, runs_dir=runs, FAKE_TRAINER_MARKER_DIR=str(markers))
    assert backend.observe(job).state == "running"
    sub = backend.submit(job, {})  # a recovered launch: no secret values, and none needed to adopt
    assert sub.external_id == pid
    assert backend.wait(job.id, 15) == 3
    assert len(starts(markers, "out-adopt")) == 1, "the trainer was started twice"
    assert events.states() == ["started", "exited"] and events.messages[-1]["exit_code"] == 3
    # Everything it printed, from the start, numbered as it was written; the secret never on disk.
    stdout = [l["message"] for l in events.lines() if l["stream"] == "stdout"]
    assert stdout[0].startswith("ARGS ") and "READY" in stdout
    assert [l["seq"] for l in events.lines()] == list(range(1, len(events.lines()) + 1))
    assert b"hf_local_secret_42" not in b"".join(p.read_bytes() for p in RunDir(runs, job.id).path.iterdir() if p.is_file())
    # A third server, after the end: the same answer, still nothing started.
    again = make_backend(Events(), runs_dir=runs)
    assert again.observe(job).exit_code == 3
    assert again.submit(job, env).external_id == pid and again.wait(job.id, 10) == 3
    assert len(starts(markers, "out-adopt")) == 1


def test_the_true_exit_code_of_a_run_that_ended_while_no_server_ran(dirs) -> None:
    runs, markers = dirs
    kill_9_server(runs, markers, "/tmp/out-ended", FAKE_TRAINER_SLEEP="0.3", FAKE_TRAINER_EXIT="0")
    job, _ = local_job(output_dir="/tmp/out-ended")
    folder = RunDir(runs, job.id)
    deadline = time.monotonic() + 10
    while folder.exit() is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    backend = make_backend(Events(), runs_dir=runs)
    seen = backend.observe(job)
    assert (seen.state, seen.exit_code) == ("exited", 0)  # not `lost`: the record says how it ended
    events = Events()
    backend = make_backend(events, runs_dir=runs)
    assert backend.adopt(job) is True
    assert backend.wait(job.id, 10) == 0
    assert events.messages[-1]["state"] == "exited" and events.messages[-1]["exit_code"] == 0


def test_an_adopted_run_is_cancelled_through_its_supervisor(dirs) -> None:
    runs, markers = dirs
    kill_9_server(runs, markers, "/tmp/out-cancel", FAKE_TRAINER_SLEEP="30")
    job, _ = local_job(output_dir="/tmp/out-cancel")
    trainer = starts(markers, "out-cancel")[0]
    events = Events()
    backend = make_backend(events, runs_dir=runs)
    assert backend.cancel(job) is True
    assert backend.wait(job.id, 15) == 143
    assert events.messages[-1]["reason"] == "CancelRequested"
    _assert_gone(trainer)


def test_a_run_that_ended_without_a_record_is_lost_and_its_leftovers_stopped(dirs, tmp_path: Path) -> None:
    runs, _ = dirs
    job, env = local_job()
    folder = RunDir(runs, job.id)
    folder.path.mkdir(parents=True)
    # What a supervisor killed with SIGKILL leaves: a launch record, no exit record, a trainer still alive.
    orphan = subprocess.Popen(["sleep", "60"], start_new_session=True)
    record = {
        "pid": 999_999,
        "start_time": 1,
        "trainer_pid": orphan.pid,
        "trainer_start_time": proc_start_time(orphan.pid),
        "command": "train.py",
        "started_at": time.time(),
    }
    write_json_atomic(folder.path / "launch.json", record)
    events = Events()
    backend = make_backend(events, runs_dir=runs)
    assert backend.observe(job).state == "lost"
    sub = backend.submit(job, env)  # exactly once: not started a second time
    assert backend.wait(job.id, 10) is None
    assert events.states() == ["started", "lost"] and sub.external_id == "999999"
    assert orphan.wait(5) == -signal.SIGKILL  # the leftover trainer was stopped


def test_a_reused_pid_is_never_signalled(dirs) -> None:
    runs, _ = dirs
    job, _ = local_job()
    folder = RunDir(runs, job.id)
    folder.path.mkdir(parents=True)
    bystander = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        record = {
            "pid": 999_999,
            "start_time": 1,
            "trainer_pid": bystander.pid,
            "trainer_start_time": (proc_start_time(bystander.pid) or 0) - 1,
            "command": "train.py",
            "started_at": time.time(),
        }
        write_json_atomic(folder.path / "launch.json", record)
        backend = make_backend(Events(), runs_dir=runs)
        backend.adopt(job)
        backend.wait(job.id, 10)
        assert bystander.poll() is None, "a process that reused the trainer's pid was killed"
    finally:
        bystander.kill()
        bystander.wait()


def test_stop_all_refuses_new_launches() -> None:
    backend = make_backend(Events())
    backend.stop_all(grace_seconds=1)
    job, env = local_job()
    with pytest.raises(TransientError):
        backend.submit(job, env)
    assert not RunDir(backend.runs_dir, job.id).path.exists()


def test_reconcile_finishes_a_running_job_without_external_id_from_its_exit_record(dirs, tmp_path: Path) -> None:
    """The crash window between `started` and the launcher's record: `running`, `externalId: null`."""
    runs, markers = dirs
    kill_9_server(runs, markers, "/tmp/out-reconcile", FAKE_TRAINER_EXIT="3")
    job, _ = local_job(output_dir="/tmp/out-reconcile")
    deadline = time.monotonic() + 10
    while RunDir(runs, job.id).exit() is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    store = SqliteJobStore(tmp_path / "jobs.db")
    store.create(job.replace(status=JobStatus.RUNNING, external_id=None, updated_at=job.created_at - timedelta(hours=1)))
    sync = StatusSync(store=store, max_log_chars=1000, rules=BUILT_IN_RULES)
    rec = Reconciler(
        store=store,
        backends={LOCAL: make_backend(Events(), runs_dir=runs)},
        status_sync=sync,
        bus=RecordingBus(),
        requests_topic="train-requests",
        min_age=timedelta(0),
    )
    assert rec.run_once().updated == [job.id]
    done = store.get(job.id)
    assert (done.status, done.exit_code, done.status_reason) == (JobStatus.FAILED, 3, "TrainerError")


def test_the_supervisor_keeps_no_secret_in_its_records(dirs) -> None:
    runs, _ = dirs
    events = Events()
    backend = make_backend(events, runs_dir=runs, FAKE_TRAINER_ECHO_ENV="HF_TOKEN")
    job, env = local_job()
    backend.submit(job, env)
    assert backend.wait(job.id, 10) == 0
    folder = RunDir(runs, job.id)
    launch = json.loads((folder.path / "launch.json").read_text())
    assert launch["command"].startswith("HF_TOKEN=[redacted] ") and str(FAKE_TRAINER) in launch["command"]
    assert "HF_TOKEN=[redacted]" in folder.output.read_text()
    assert all(b"hf_local_secret_42" not in p.read_bytes() for p in folder.path.iterdir() if p.is_file())
    assert isinstance(backend, LocalBackend) and json.loads((folder.path / "exit.json").read_text())["exit_code"] == 0


def test_a_supervisor_that_could_not_run_says_why(dirs) -> None:
    runs, _ = dirs
    events = Events()
    # A cwd that does not exist: the supervisor can't start the trainer and leaves an exit record saying so.
    backend = LocalBackend(
        python_bin=sys.executable, script=FAKE_TRAINER, cwd="/nonexistent-cwd", events=events, base_env={"PATH": os.environ.get("PATH", "")}, runs_dir=runs
    )
    job, env = local_job()
    backend.submit(job, env)
    assert backend.wait(job.id, 10) == 127
    assert events.states() == ["exited"] and "could not start" in events.messages[-1]["message"]
