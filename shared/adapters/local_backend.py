"""Local backend: the trainer as a child process of this server, watched by a supervisor thread.

For development and the embedded default. `submit` starts `PYTHON_BIN TRAIN_SCRIPT_PATH <flags>` with
the server's environment plus the job's secret variables (the only place they go), in the repo root,
in a new session (`start_new_session=True`: its own process group), so cancel reaches whatever the
trainer starts. The supervisor turns what the process does into `training-events` envelopes
(`shared/domain/events.py`) and hands them to the `events` callable it was built with, the same path the
cluster watcher and the Vertex log sink feed, so status_sync treats every backend alike:
- `started` with the pid, as soon as the process runs;
- log lines (`timestamp`, `stream`, `message`, increasing `seq`) in batches of up to `batch_lines`
  lines or `batch_seconds`, whichever comes first; secret values are redacted from them;
- `exited` with `exit_code` (a signal N is reported as 128 + N, so SIGTERM is 143, as on Kubernetes).

Cancel: SIGTERM to the group, SIGKILL after `grace_seconds` if anything is left. `stop_all()` does that
to every job at once (the embedded server calls it when it stops). A job id already started in this
process is adopted, never started twice.
"""

from __future__ import annotations

import logging
import os
import queue
import shlex
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping

from shared.domain.events import EventLog, TrainingEvent
from shared.domain.job import REDACTED, Job
from shared.domain.redaction import redact, redact_cut
from shared.domain.status import FailureClass
from shared.errors import PermanentError, TransientError
from shared.ports import Observation, Submission

log = logging.getLogger(__name__)

SOURCE = "local"
MAX_LINE_CHARS = 16_384
POLL_SECONDS = 0.1
# After the trainer exits, how long its pipes may stay open (held by a grandchild) before the group is killed.
DRAIN_SECONDS = 2.0
_EOF = object()


def read_bound(secrets: tuple[str, ...]) -> int:
    """Bytes a reader takes of one line: the kept characters (UTF-8: up to 4 bytes each) plus room for
    the longest secret, so one that starts before the cut is read whole and redacted. The rest of a
    longer line is read and dropped: one endless line can't fill the memory."""
    return 4 * (MAX_LINE_CHARS + max((len(s) for s in secrets), default=0)) + 4


class _UTC:
    def now(self) -> datetime:
        return datetime.now(timezone.utc)


@dataclass
class _Run:
    job_id: str
    process: subprocess.Popen
    command: str
    secrets: tuple[str, ...]
    started_at: float
    cancel_requested: bool = False
    killer: threading.Timer | None = None
    supervisor: threading.Thread | None = None
    done: threading.Event = field(default_factory=threading.Event)
    exit_code: int | None = None

    @property
    def pid(self) -> int:
        return self.process.pid


def exit_code_of(returncode: int) -> int:
    """Popen's `-N` for "killed by signal N" becomes the shell's and Kubernetes' `128 + N`."""
    return 128 - returncode if returncode < 0 else returncode


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
        grace_seconds: float = 10.0,
        batch_lines: int = 200,
        batch_seconds: float = 0.2,
        clock: Any = None,
    ):
        self.python_bin = python_bin
        self.script = Path(script)
        self.cwd = Path(cwd)
        self.events = events
        self.base_env = dict(os.environ if base_env is None else base_env)
        self.grace_seconds = grace_seconds
        self.batch_lines = batch_lines
        self.batch_seconds = batch_seconds
        self.clock = clock or _UTC()
        self._runs: dict[str, _Run] = {}
        self._lock = threading.Lock()
        if events is None:
            log.warning("local backend built without an events callable: its jobs' logs and exit codes go nowhere")

    # ---- Backend -------------------------------------------------------------------------------
    def submit(self, job: Job, env: dict[str, str]) -> Submission:
        with self._lock:
            run = self._runs.get(job.id)
            if run is not None:
                log.info("job %s: already started here (pid %s): adopted", job.id, run.pid)
                return Submission(external_id=str(run.pid), command=run.command)
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
            argv = [self.python_bin, str(self.script), *job.args]
            # Each line of a multi-line secret too: a trainer printing it shows it line by line.
            secrets = tuple(p for v in env.values() if v for p in (v, *v.splitlines()) if p)
            command = self.display_command(argv, env)
            child_env = {**self.base_env, **env}
            try:
                process = subprocess.Popen(
                    argv,
                    cwd=str(self.cwd),
                    env=child_env,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    start_new_session=True,
                    close_fds=True,
                )
            except (FileNotFoundError, PermissionError, NotADirectoryError) as exc:
                raise PermanentError(
                    f"could not start {argv[0]}: {exc.strerror or exc}", reason="TrainerNotStartable", failure_class=FailureClass.INFRA.value
                ) from exc
            except OSError as exc:  # EAGAIN, ENOMEM: the machine is busy; try again later
                raise TransientError(f"could not start the trainer: {exc}") from exc
            run = _Run(job_id=job.id, process=process, command=command, secrets=secrets, started_at=time.monotonic())
            self._runs[job.id] = run
            run.supervisor = threading.Thread(target=self._supervise, args=(run,), name=f"local-{job.id[:8]}", daemon=True)
            run.supervisor.start()
        log.info("job %s: started pid %d: %s", job.id, process.pid, command)
        return Submission(external_id=str(process.pid), command=command)

    def cancel(self, job: Job) -> bool | None:
        """SIGTERM to the trainer's process group now, SIGKILL after the grace period. True: signalled
        (the `exited` event follows); None: it had already exited (its events tell the end); False: no
        such process here (never started, or started by an earlier server process)."""
        with self._lock:
            run = self._runs.get(job.id)
        if run is None:
            log.info("job %s: not running here: nothing to cancel", job.id)
            return False
        if run.done.is_set():
            return None
        self._terminate(run)
        return True

    def observe(self, job: Job) -> Observation:
        """For reconcile: `running`, `exited` (with its code), or `lost` — no such process in this
        server (it was started by an earlier server process, which stopped its trainers on the way out)."""
        with self._lock:
            run = self._runs.get(job.id)
        if run is None:
            return Observation("lost")
        if run.done.is_set():
            return Observation("exited", exit_code=run.exit_code)
        return Observation("running")

    # ---- lifecycle -----------------------------------------------------------------------------
    def stop_all(self, grace_seconds: float | None = None) -> None:
        """Terminate every running trainer (SIGTERM, SIGKILL after the grace period) and wait for them."""
        grace = self.grace_seconds if grace_seconds is None else grace_seconds
        with self._lock:
            runs = [r for r in self._runs.values() if not r.done.is_set()]
        for run in runs:
            self._terminate(run, grace)
        deadline = time.monotonic() + grace + 5
        for run in runs:
            run.done.wait(max(0.0, deadline - time.monotonic()))

    def is_running(self, job_id: str) -> bool:
        with self._lock:
            run = self._runs.get(job_id)
        return run is not None and not run.done.is_set()

    def wait(self, job_id: str, timeout: float | None = None) -> int | None:
        """Block until the job's process has exited and its last event was sent; its exit code."""
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

    @staticmethod
    def display_command(argv: list[str], env: Mapping[str, str]) -> str:
        """The command line as shown to users: secret variables by name only, values redacted."""
        prefix = [f"{name}={REDACTED}" for name in sorted(env)]
        return redact(" ".join([*prefix, shlex.join(argv)]), env.values())

    # ---- internals -----------------------------------------------------------------------------
    def _terminate(self, run: _Run, grace: float | None = None) -> None:
        if run.done.is_set():
            return
        run.cancel_requested = True
        self._signal(run, signal.SIGTERM)
        if run.killer is None:
            run.killer = threading.Timer(self.grace_seconds if grace is None else grace, self._signal, args=(run, signal.SIGKILL))
            run.killer.daemon = True
            run.killer.start()

    @staticmethod
    def _signal(run: _Run, sig: signal.Signals) -> None:
        # The child leads its own group (start_new_session), so its pid is the group id; the group can
        # outlive the leader (a grandchild), hence killpg even after the leader exited.
        try:
            os.killpg(run.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def _emit(self, event: TrainingEvent) -> None:
        if self.events is None:
            return
        try:
            self.events(event.to_message())
        except Exception:  # noqa: BLE001 - the supervisor must keep draining the pipes whatever happens
            log.exception("job %s: could not publish a %s event", event.job_id, event.state or "log")

    def _event(self, run: _Run, n: int, **fields: Any) -> TrainingEvent:
        return TrainingEvent(
            job_id=run.job_id,
            source=SOURCE,
            observed_at=self.clock.now(),
            event_id=f"local-{run.job_id}-{run.pid}-{n}",
            **fields,
        )

    def _supervise(self, run: _Run) -> None:
        lines: queue.Queue = queue.Queue()
        readers = [
            threading.Thread(target=self._read, args=(run.process.stdout, "stdout", lines, read_bound(run.secrets)), daemon=True),
            threading.Thread(target=self._read, args=(run.process.stderr, "stderr", lines, read_bound(run.secrets)), daemon=True),
        ]
        counter = 0
        self._emit(self._event(run, counter, state="started", extra={"pid": run.pid, "command": run.command}))
        for reader in readers:
            reader.start()
        seq = 0
        batch: list[EventLog] = []
        first_at = 0.0
        open_streams = len(readers)

        def flush() -> None:
            nonlocal batch, counter
            if batch:
                counter += 1
                self._emit(self._event(run, counter, logs=tuple(batch)))
                batch = []

        exited_at: float | None = None
        try:
            while open_streams:
                now = time.monotonic()
                if exited_at is None and run.process.poll() is not None:
                    exited_at = now
                if exited_at is not None and now - exited_at > DRAIN_SECONDS:
                    # The trainer is gone but something it started still holds the pipes: end it too.
                    self._signal(run, signal.SIGKILL)
                    if now - exited_at > 2 * DRAIN_SECONDS:
                        break
                timeout = POLL_SECONDS if not batch else min(POLL_SECONDS, max(0.0, first_at + self.batch_seconds - now))
                try:
                    item = lines.get(timeout=timeout)
                except queue.Empty:
                    if batch and time.monotonic() - first_at >= self.batch_seconds:
                        flush()
                    continue
                if item is _EOF:
                    open_streams -= 1
                    continue
                stream, text, continued, at = item
                seq += 1
                if not batch:
                    first_at = time.monotonic()
                batch.append(EventLog(seq=seq, timestamp=at, stream=stream, message=redact_cut(text, run.secrets, MAX_LINE_CHARS, continued=continued)))
                if len(batch) >= self.batch_lines or time.monotonic() - first_at >= self.batch_seconds:
                    flush()
            flush()
            returncode = run.process.wait()
        except Exception:  # noqa: BLE001
            log.exception("job %s: supervisor failed", run.job_id)
            returncode = run.process.wait()
        run.exit_code = exit_code_of(returncode)
        fields: dict[str, Any] = {"state": "exited", "exit_code": run.exit_code}
        if returncode < 0:
            fields["message"] = f"terminated by {signal.Signals(-returncode).name}"
        if run.cancel_requested:
            fields["reason"] = "CancelRequested"
        counter += 1
        self._emit(self._event(run, counter, extra={"pid": run.pid}, **fields))
        run.done.set()
        log.info("job %s: pid %d exited with %d", run.job_id, run.pid, run.exit_code)

    def _read(self, pipe: Any, stream: str, out: queue.Queue, bound: int) -> None:
        """Each line as (stream, text, continued, at): `continued` when the line went on past `bound`
        bytes (what followed was dropped, and may hold the rest of a secret)."""
        try:
            for raw in iter(lambda: pipe.readline(bound), b""):
                continued = False
                if not raw.endswith(b"\n"):
                    while rest := pipe.readline(bound):  # the rest of an over-long line is dropped
                        continued = True
                        if rest.endswith(b"\n"):
                            break
                text = raw.decode("utf-8", "replace").rstrip("\r\n")
                out.put((stream, text, continued, self.clock.now()))
        finally:
            pipe.close()
            out.put(_EOF)

