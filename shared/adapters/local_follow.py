"""The local backend's bookkeeping of a run: the run as this server knows it (`LocalRun`) and the
follower that turns its folder (`local_runs.RunDir`) into `training-events` envelopes
(`shared/domain/events.py`), handed to the backend's `events` callable, the same path the cluster
watcher and the Vertex log sink feed, so status_sync treats every backend alike:
- `started` with the supervisor's pid (the job's external id);
- log lines (`timestamp`, `stream`, `message`, increasing `seq`) in batches of up to `batch_lines`
  lines or `batch_seconds`, whichever comes first; a restarted server replays them from the start and
  status_sync keeps only those past the job's cursor;
- `exited` with `exit_code` (a signal N is reported as 128 + N, so SIGTERM is 143, as on Kubernetes), or
  `lost` when the supervisor died without an exit record (what it left of the trainer is killed first).
Event ids derive from the run and the content, so a replay is recognised as one.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shared.adapters.local_runs import RunDir, exit_code_of
from shared.domain.events import EventLog, TrainingEvent
from shared.ports import Clock

log = logging.getLogger(__name__)

SOURCE = "local"
POLL_SECONDS = 0.1


@dataclass
class LocalRun:
    job_id: str
    folder: RunDir
    pid: int  # the supervisor's
    command: str
    process: subprocess.Popen[bytes] | None = None  # None: adopted from an earlier server (not our child)
    started_at: datetime | None = None
    cancel_requested: bool = False
    killed: bool = False  # the supervisor itself had to be killed: no exit record will come
    killers: list[threading.Timer] = field(default_factory=list)
    follower: threading.Thread | None = None
    done: threading.Event = field(default_factory=threading.Event)
    exit_code: int | None = None

    def finished(self) -> bool:
        if self.process is not None:
            return self.process.poll() is not None
        return not self.folder.alive()


def last_line(path: Path, limit: int = 500) -> str:
    """The supervisor's last complaint (its stderr never holds the trainer's output, so no secret)."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 4096))
            lines = f.read().decode("utf-8", "replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1][:limit] if lines else ""


def at(epoch: float | None) -> datetime | None:
    return datetime.fromtimestamp(epoch, UTC) if epoch else None


class RunFollower:
    """One thread per run: replays the run's output as log events, then tells how it ended; `done` is set
    once the last event was handed to `emit`."""

    def __init__(self, emit: Callable[[TrainingEvent], None], clock: Clock, *, batch_lines: int, batch_seconds: float):
        self.emit = emit
        self.clock = clock
        self.batch_lines = batch_lines
        self.batch_seconds = batch_seconds

    def follow(self, run: LocalRun) -> None:
        run.follower = threading.Thread(target=self._run_follower, args=(run,), name=f"local-{run.job_id[:8]}", daemon=True)
        run.follower.start()

    def _run_follower(self, run: LocalRun) -> None:
        try:
            self._replay(run)
        except Exception:  # noqa: BLE001 - whatever happened, the run's end must still be told
            log.exception("job %s: follower failed", run.job_id)
        if run.process is not None:
            run.process.wait()
        self._finish(run)

    def _replay(self, run: LocalRun) -> None:
        base = f"local-{run.job_id}-{run.pid}"
        announced = False

        def announce() -> None:
            # `started` once the trainer runs (its supervisor wrote the launch record), not before:
            # `running` means the trainer runs.
            nonlocal announced
            if announced or run.folder.launch() is None:
                return
            announced = True
            started = run.started_at if run.process is None else None
            self.emit(
                TrainingEvent(
                    job_id=run.job_id,
                    source=SOURCE,
                    observed_at=started or self.clock.now(),
                    event_id=f"{base}-started",
                    state="started",
                    extra={"pid": run.pid, "command": run.command},
                )
            )

        batch: list[EventLog] = []
        first_at = 0.0
        pending = b""
        f = None

        def flush() -> None:
            nonlocal batch
            if batch:
                self.emit(
                    TrainingEvent(
                        job_id=run.job_id,
                        source=SOURCE,
                        observed_at=self.clock.now(),
                        event_id=f"{base}-logs-{batch[0].seq}-{batch[-1].seq}",
                        logs=tuple(batch),
                    )
                )
                batch = []

        def pump() -> bool:
            nonlocal f, pending, first_at
            if f is None:
                try:
                    f = open(run.folder.output, "rb")
                except FileNotFoundError:
                    return False
            chunk = f.read(1 << 16)
            if not chunk:
                return False
            *lines, pending = (pending + chunk).split(b"\n")
            for raw in lines:
                try:
                    item = json.loads(raw)
                    line = EventLog(seq=int(item["seq"]), timestamp=at(item["t"]) or self.clock.now(), stream=str(item["stream"]), message=str(item["message"]))
                except (ValueError, KeyError, TypeError):
                    continue  # a torn line (the machine died mid-write): the rest is still good
                if not batch:
                    first_at = time.monotonic()
                batch.append(line)
                if len(batch) >= self.batch_lines:
                    flush()
            return True

        try:
            while True:
                finished = run.finished()  # before reading: once it has ended, one more read gets the rest
                announce()
                got = pump()
                if batch and time.monotonic() - first_at >= self.batch_seconds:
                    flush()
                if finished:
                    while pump():
                        pass
                    flush()
                    return
                if not got:
                    time.sleep(POLL_SECONDS if not batch else min(POLL_SECONDS, max(0.0, first_at + self.batch_seconds - time.monotonic())))
        finally:
            if f is not None:
                f.close()

    def _finish(self, run: LocalRun) -> None:
        for timer in run.killers:
            timer.cancel()
        record = run.folder.exit()
        base = f"local-{run.job_id}-{run.pid}"
        fields: dict[str, Any]
        if record is not None:
            run.exit_code = record.exit_code
            fields = {"state": "exited", "exit_code": record.exit_code}
            if record.message:
                fields["message"] = record.message
            if run.cancel_requested or record.terminated:
                fields["reason"] = "CancelRequested"
            observed = self.clock.now() if run.process is not None else (at(record.finished_at) or self.clock.now())
        else:
            # The supervisor is gone without saying how the trainer ended: stop what is left of it.
            run.folder.kill_trainer_group(signal.SIGKILL)
            observed = self.clock.now()
            returncode = run.process.returncode if run.process is not None else None
            if run.killed:
                run.exit_code = 137
                fields = {"state": "exited", "exit_code": 137, "message": "terminated by SIGKILL", "reason": "CancelRequested"}
            elif returncode is not None and returncode < 0:
                # Our own child, stopped by a signal before it could record anything (before it ran the
                # trainer): that signal is how the run ended.
                run.exit_code = exit_code_of(returncode)
                fields = {
                    "state": "exited",
                    "exit_code": run.exit_code,
                    "message": f"terminated by {signal.Signals(-returncode).name} before the trainer started",
                }
                if run.cancel_requested:
                    fields["reason"] = "CancelRequested"
            else:
                message = "the run's supervisor ended without an exit record"
                if run.folder.launch() is None:
                    message = "the run's supervisor ended before it started the trainer"
                said = last_line(run.folder.path / "supervisor.log")
                fields = {"state": "lost", "message": f"{message}: {said}" if said else message}
        self.emit(TrainingEvent(job_id=run.job_id, source=SOURCE, observed_at=observed, event_id=f"{base}-end", extra={"pid": run.pid}, **fields))
        run.done.set()
        log.info("job %s: run %d ended: %s", run.job_id, run.pid, fields.get("exit_code", fields["state"]))
