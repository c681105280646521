"""Local backend: the trainer as a process of this machine, in a run folder that outlives the server.

For development and the embedded default. `submit` starts a small supervisor (`local_runs.py`, in a
session of its own) that runs `PYTHON_BIN TRAIN_SCRIPT_PATH <flags>` with the server's environment plus
the job's secret variables (the only place they go), in the repo root. A job whose `resources.gpus` asks
for more than one runs that many trainer processes through the trainer's distributed launcher instead:
`PYTHON_BIN <launch.py beside the script> --nproc_per_node N --script TRAIN_SCRIPT_PATH -- <flags>` (one
process per GPU where CUDA has them, CPU processes over gloo otherwise; the launcher refuses more
processes than CUDA devices). One process (gpus unset, 0 or 1) stays the plain script, as before. The
launcher leads the trainer's process group, forwards a SIGTERM to every rank and takes its workers
with it if it is killed, so cancel and the supervisor's clean-up work the same for both. The supervisor keeps the run's
record in `<runs dir>/<job id>/`: a lock it holds while it lives, the launch record, the output (secret
values already redacted) and, at the end, the true exit code. So a trainer does not die with the server
(`kill -9`, a crash), and a server started later knows, from the folder alone, whether the job's run is
alive (adopt it), has ended (report how) or never started (start it), and never starts one twice.

A follower thread per run (`local_follow.py`) turns the folder into `training-events` envelopes and
hands them to the `events` callable the backend was built with (`started`, log lines in batches,
`exited` with the exit code or `lost`), the same path the cluster watcher and the Vertex log sink feed.
This module starts the supervisor, keeps the table of this server's runs and signals them.

Cancel: SIGTERM to the supervisor, which forwards it to the trainer's process group; SIGKILL to that
group after `grace_seconds`. `stop_all()` does that to every job at once and refuses new launches (the
embedded server calls it when it stops). `adopt(job)` takes over a run an earlier server started.
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import shared
from shared.adapters.local_follow import SOURCE, LocalRun, RunFollower, at
from shared.adapters.local_runs import DRAIN_SECONDS, RunDir
from shared.domain.events import TrainingEvent
from shared.domain.job import REDACTED, Job
from shared.domain.redaction import redact, secret_values
from shared.domain.status import FailureClass
from shared.errors import PermanentError, TransientError
from shared.ports import Clock, Observation, Submission, SystemClock

log = logging.getLogger(__name__)

LAUNCHER = "launch.py"  # the trainer's distributed entry point, beside train.py
# How long a run's supervisor may take to write its launch record once it holds the lock.
LAUNCH_RECORD_SECONDS = 5.0
# The supervisor runs from the folder above the `shared` package, whatever the trainer's cwd is.
_PACKAGE_ROOT = Path(shared.__file__).resolve().parent.parent


class LocalBackend:
    name = "local"

    def __init__(
        self,
        *,
        python_bin: str,
        script: str | Path,
        cwd: str | Path,
        events: Callable[[dict[str, Any]], Any] | None = None,
        base_env: Mapping[str, str] | None = None,
        runs_dir: str | Path | None = None,
        grace_seconds: float = 10.0,
        batch_lines: int = 200,
        batch_seconds: float = 0.2,
        clock: Clock | None = None,
    ):
        self.python_bin = python_bin
        self.script = Path(script)
        self.cwd = Path(cwd)
        self.events = events
        self.base_env = dict(os.environ if base_env is None else base_env)
        if runs_dir is None:
            # Without a runs dir of its own (tests, one-offs) nothing is adopted across restarts.
            runs_dir = tempfile.mkdtemp(prefix="local-runs-")
        self.runs_dir = Path(runs_dir)
        self.grace_seconds = grace_seconds
        self.clock: Clock = clock or SystemClock()
        self._follower = RunFollower(self._emit, self.clock, batch_lines=batch_lines, batch_seconds=batch_seconds)
        self._runs: dict[str, LocalRun] = {}
        self._lock = threading.Lock()
        self._closing = False
        if events is None:
            log.warning("local backend built without an events callable: its jobs' logs and exit codes go nowhere")

    # ---- Backend -------------------------------------------------------------------------------
    def submit(self, job: Job, env: dict[str, str]) -> Submission:
        with self._lock:
            run = self._runs.get(job.id)
            if run is not None:
                log.info("job %s: already started here (pid %s): adopted", job.id, run.pid)
                return Submission(external_id=str(run.pid), command=run.command)
            if self._closing:
                raise TransientError("the server is stopping: the job is launched when it starts again")
            folder = RunDir(self.runs_dir, job.id)
            lock_fd = folder.try_lock()
            if lock_fd is None:  # an earlier server's run, alive: follow it, never start another
                run = self._attach(folder, "alive")
            else:
                try:
                    state = "exited" if folder.exit() is not None else "dead" if folder.launch() is not None else "none"
                    if state == "none":
                        run = self._start(job, env, folder, lock_fd)
                    else:  # it ran already (and ended while no server watched): report that end
                        run = self._attach(folder, state)
                finally:
                    os.close(lock_fd)  # the supervisor has its own copy; without one, the run is free again
            self._runs[job.id] = run
        if run.process is None:
            log.warning("job %s: adopted the run of an earlier server (pid %d)", job.id, run.pid)
        return Submission(external_id=str(run.pid), command=run.command)

    def cancel(self, job: Job) -> bool | None:
        """SIGTERM to the trainer's process group now, SIGKILL after the grace period. True: signalled
        (the `exited` event follows); None: it had already exited (its events tell the end); False: no
        run of this job exists (never started, or its record is gone)."""
        run = self._tracked(job.id)
        if run is None:
            log.info("job %s: no run: nothing to cancel", job.id)
            return False
        if run.done.is_set() or run.finished():
            return None
        self._terminate(run)
        return True

    def observe(self, job: Job) -> Observation:
        """For reconcile, from the run folder: `running`, `exited` (with its true code, even if it ended
        while no server watched), or `lost` — never started here, or ended without an exit record."""
        with self._lock:
            run = self._runs.get(job.id)
        if run is not None and not run.done.is_set():
            return Observation("running")
        if run is not None and run.exit_code is not None:
            return Observation("exited", exit_code=run.exit_code)
        folder = RunDir(self.runs_dir, job.id)
        state = folder.state()
        if state == "alive":
            return Observation("running")
        record = folder.exit() if state == "exited" else None
        if record is not None:
            return Observation("exited", exit_code=record.exit_code, message=record.message)
        return Observation("lost", message="no live process and no exit record for this job")

    def release(self, job: Job) -> None:
        """Nothing to free: the secrets lived only in the trainer's environment, gone with its process."""

    def held(self) -> list[str]:
        return []

    # ---- lifecycle -----------------------------------------------------------------------------
    def adopt(self, job: Job) -> bool:
        """Take over the job's run from an earlier server (on start): follow it if it is alive, report
        its end if it ended meanwhile, `lost` if nothing of it is left. False: no run folder at all."""
        run = self._tracked(job.id)
        if run is None:
            self._emit(
                TrainingEvent(
                    job_id=job.id,
                    source=SOURCE,
                    observed_at=self.clock.now(),
                    event_id=f"local-{job.id}-none-lost",
                    state="lost",
                    message="the job has no run on this machine",
                )
            )
            return False
        if job.cancel_requested and not run.done.is_set():
            self._terminate(run)
        return True

    def stop_all(self, grace_seconds: float | None = None) -> None:
        """Refuse new launches, terminate every running trainer (SIGTERM, SIGKILL after the grace
        period) and wait until each one's exit event has been handed to `events`."""
        grace = self.grace_seconds if grace_seconds is None else grace_seconds
        with self._lock:
            self._closing = True
            runs = [r for r in self._runs.values() if not r.done.is_set()]
        for run in runs:
            self._terminate(run, grace)
        deadline = time.monotonic() + grace + 2 * DRAIN_SECONDS + 5
        for run in runs:
            run.done.wait(max(0.0, deadline - time.monotonic()))

    def is_running(self, job_id: str) -> bool:
        with self._lock:
            run = self._runs.get(job_id)
        return run is not None and not run.done.is_set()

    def wait(self, job_id: str, timeout: float | None = None) -> int | None:
        """Block until the job's run has ended and its last event was sent; its exit code."""
        with self._lock:
            run = self._runs.get(job_id)
        if run is None:
            return None
        run.done.wait(timeout)
        return run.exit_code

    def pid_of(self, job_id: str) -> int | None:
        with self._lock:
            run = self._runs.get(job_id)
        return run.pid if run else None

    def run_folder(self, job_id: str) -> Path:
        return RunDir(self.runs_dir, job_id).path

    def trainer_argv(self, job: Job) -> list[str]:
        """The trainer's command line: the script for one process, the distributed launcher for more."""
        processes = self.processes(job)
        if processes <= 1:
            return [self.python_bin, str(self.script), *job.args]
        launcher = self.script.with_name(LAUNCHER)
        if not launcher.is_file():
            launcher = _PACKAGE_ROOT / "trainer" / LAUNCHER  # a TRAIN_SCRIPT_PATH of one's own: ours launches it
        return [self.python_bin, str(launcher), "--nproc_per_node", str(processes), "--script", str(self.script), "--", *job.args]

    @staticmethod
    def processes(job: Job) -> int:
        """Trainer processes on this machine: the job's `resources.gpus` (one node; the api refuses more)."""
        gpus = getattr(getattr(job, "resources", None), "gpus", None)
        return gpus if isinstance(gpus, int) and not isinstance(gpus, bool) and gpus > 1 else 1

    @staticmethod
    def display_command(argv: list[str], env: Mapping[str, str]) -> str:
        """The command line as shown to users: secret variables by name only, values redacted."""
        prefix = [f"{name}={REDACTED}" for name in sorted(env)]
        return redact(" ".join([*prefix, shlex.join(argv)]), secret_values(env))

    # ---- starting and attaching ----------------------------------------------------------------
    def _start(self, job: Job, env: dict[str, str], folder: RunDir, lock_fd: int) -> LocalRun:
        missing = sorted(set(job.env_names) - set(env))
        if missing:
            raise PermanentError(
                f"the values of {', '.join(missing)} are no longer available (the launch was retried without them): submit the job again",
                reason="SecretValuesUnavailable",
                failure_class=FailureClass.INFRA.value,
            )
        if not self.script.is_file():
            raise PermanentError(
                f"the trainer script {self.script} does not exist (TRAIN_SCRIPT_PATH)",
                reason="TrainerNotFound",
                failure_class=FailureClass.INFRA.value,
            )
        child_env = {**self.base_env, **env}
        if shutil.which(self.python_bin, path=child_env.get("PATH", os.defpath)) is None:
            raise PermanentError(
                f"could not start {self.python_bin}: no such executable (PYTHON_BIN)", reason="TrainerNotStartable", failure_class=FailureClass.INFRA.value
            )
        argv = self.trainer_argv(job)
        command = self.display_command(argv, env)
        for stale in (folder.output, folder.path / "launch.json", folder.path / "exit.json"):
            stale.unlink(missing_ok=True)  # an attempt that died before its trainer started
        supervisor = [
            sys.executable,
            "-E",
            "-m",
            "shared.adapters.local_runs",
            "--runs-dir",
            str(self.runs_dir),
            "--job-id",
            job.id,
            "--lock-fd",
            str(lock_fd),
            "--cwd",
            str(self.cwd),
            "--command",
            command,
            "--grace",
            str(self.grace_seconds),
            "--secret-names",
            ",".join(sorted(env)),
            "--",
            *argv,
        ]
        # The supervisor's own complaints (never the trainer's output) go to a file of the run.
        with open(folder.path / "supervisor.log", "ab") as errors:
            try:
                process = subprocess.Popen(
                    supervisor,
                    cwd=str(_PACKAGE_ROOT),
                    env=child_env,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=errors,
                    start_new_session=True,
                    close_fds=True,
                    pass_fds=(lock_fd,),
                )
            except OSError as exc:  # EAGAIN, ENOMEM: the machine is busy; try again later
                raise TransientError(f"could not start the trainer's supervisor: {exc}") from exc
        run = LocalRun(job_id=job.id, folder=folder, pid=process.pid, command=command, process=process, started_at=self.clock.now())
        self._follower.follow(run)
        log.info("job %s: started pid %d: %s", job.id, process.pid, command)
        return run

    def _attach(self, folder: RunDir, state: str) -> LocalRun:
        """A run this server did not start: alive (follow it), exited (replay it) or dead (report lost)."""
        record = folder.launch()
        deadline = time.monotonic() + LAUNCH_RECORD_SECONDS
        while record is None and state == "alive" and time.monotonic() < deadline:
            time.sleep(0.02)  # its supervisor is just starting the trainer
            record = folder.launch()
        if record is None and state == "alive":
            raise TransientError(f"job {folder.job_id}: its run holds the lock but wrote no launch record yet")
        pid = record.pid if record else 0
        run = LocalRun(
            job_id=folder.job_id, folder=folder, pid=pid, command=record.command if record else "", started_at=at(record.started_at) if record else None
        )
        self._follower.follow(run)
        return run

    def _tracked(self, job_id: str) -> LocalRun | None:
        """The job's run, attached from its folder if this server does not follow it yet."""
        with self._lock:
            run = self._runs.get(job_id)
            if run is not None:
                return run
            folder = RunDir(self.runs_dir, job_id)
            state = folder.state()
            if state == "none":
                return None
            run = self._attach(folder, state)
            self._runs[job_id] = run
            return run

    # ---- stopping ------------------------------------------------------------------------------
    def _terminate(self, run: LocalRun, grace: float | None = None) -> None:
        if run.done.is_set():
            return
        run.cancel_requested = True
        self._signal_supervisor(run, signal.SIGTERM)
        if not run.killers:
            grace = self.grace_seconds if grace is None else grace
            # The supervisor kills the group itself after its own grace; these also hold when the grace
            # asked for here is shorter, and when the supervisor is stuck.
            for after, action in ((grace, self._kill_trainer), (grace + 2 * DRAIN_SECONDS + 1, self._kill_supervisor)):
                timer = threading.Timer(after, action, args=(run,))
                timer.daemon = True
                run.killers.append(timer)
                timer.start()

    def _signal_supervisor(self, run: LocalRun, sig: signal.Signals) -> None:
        if run.process is not None:
            if run.process.poll() is None:
                run.process.send_signal(sig)
        elif run.pid and run.folder.alive():
            try:
                os.kill(run.pid, sig)  # it holds the run's lock: the pid is still that supervisor's
            except ProcessLookupError:
                pass

    def _kill_trainer(self, run: LocalRun) -> None:
        if not run.done.is_set():
            run.folder.kill_trainer_group(signal.SIGKILL)

    def _kill_supervisor(self, run: LocalRun) -> None:
        if run.done.is_set() or run.finished():
            return
        log.error("job %s: the supervisor (pid %d) did not end after the grace period: killed", run.job_id, run.pid)
        run.killed = True
        self._signal_supervisor(run, signal.SIGKILL)
        run.folder.kill_trainer_group(signal.SIGKILL)

    # ---- following -----------------------------------------------------------------------------
    def _emit(self, event: TrainingEvent) -> None:
        if self.events is None:
            return
        try:
            self.events(event.to_message())
        except Exception:  # noqa: BLE001 - the follower must keep going whatever happens
            log.exception("job %s: could not publish a %s event", event.job_id, event.state or "log")
