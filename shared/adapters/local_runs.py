"""Local runs on disk: one folder per job, so a trainer outlives the server that started it and its end
is never lost.

The local backend (`local_backend.py`) does not start the trainer itself: it starts this module as a
small supervisor (`python -m shared.adapters.local_runs ...`) in a session of its own, and the supervisor
starts the trainer. The supervisor owns the job's run folder, `<runs dir>/<job id>/`:
- `lock`: held (`flock`) by the supervisor for as long as it lives. The server hands it the lock it took
  before the launch, so "someone holds the lock" means "this job's run is alive" with no window and no
  pid-reuse question; a dead process holds no lock.
- `launch.json`: the supervisor's pid and start time, the trainer's pid, process group and start time
  (from /proc/<pid>/stat, so a reused pid is never signalled), the display command, the wall time.
- `output.jsonl`: the trainer's stdout and stderr, one JSON object per line (`seq`, `t`, `stream`,
  `message`), secret values already redacted and lines cut (the file holds no secret, and any server
  can replay it). A server that follows the run, or adopts it after a restart, reads it from the start;
  status_sync drops the lines a job already has (by `seq`).
- `exit.json`: written atomically after the trainer's process group is gone: the true exit code (a
  signal N as 128 + N), whether the run was asked to stop, whether it had to be killed.

The trainer leads a process group of its own inside the supervisor's session, so a stop reaches
everything it started without reaching the supervisor: SIGTERM to the supervisor is forwarded to the
trainer's group, SIGKILL follows after the grace period, and the supervisor survives both to write
`exit.json`. When the trainer exits, whatever is left in its group is killed (nothing it started
outlives the run), and the pipes are drained for at most `DRAIN_SECONDS`. A several-process run's
trainer is the distributed launcher (`trainer/launch.py`): its ranks run in sessions of their own, out
of the group's reach, so the launcher forwards a SIGTERM to each, and each rank dies with the launcher
should it be SIGKILLed (`PR_SET_PDEATHSIG`, set by `train.py`).

This module runs alone in the supervisor process: the standard library and the pure redaction only.
"""

from __future__ import annotations

import argparse
import errno
import fcntl
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, BinaryIO

from shared.domain.redaction import redact_cut, secret_values

MAX_LINE_CHARS = 16_384
# After the trainer exits, how long its pipes may stay open (held by a grandchild) before its group is killed.
DRAIN_SECONDS = 2.0

LOCK = "lock"
LAUNCH = "launch.json"
EXIT = "exit.json"
OUTPUT = "output.jsonl"

_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def exit_code_of(returncode: int) -> int:
    """Popen's `-N` for "killed by signal N" becomes the shell's and Kubernetes' `128 + N`."""
    return 128 - returncode if returncode < 0 else returncode


def read_bound(secrets: Sequence[str]) -> int:
    """Bytes a reader takes of one line: the kept characters (UTF-8: up to 4 bytes each) plus room for
    the longest secret, so one that starts before the cut is read whole and redacted. The rest of a
    longer line is read and dropped: one endless line can't fill the memory."""
    return 4 * (MAX_LINE_CHARS + max((len(s) for s in secrets), default=0)) + 4


def proc_start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/<pid>/stat): with the pid,
    it names one process for the machine's uptime, so a pid reused by another process is told apart."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its closing one.
    fields = raw[raw.rfind(b")") + 2 :].split()
    if len(fields) < 20 or fields[0] == b"Z":
        return None  # gone, or a zombie: nothing left to signal
    return int(fields[19])


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Readers see the old file or the new one, never half of it; fsynced, so it survives a crash."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(json.dumps(data, sort_keys=True).encode())
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    try:
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:  # pragma: no cover - a file system without directory fsync
        pass


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


@dataclass(frozen=True)
class LaunchRecord:
    pid: int  # the supervisor's: the run's external id
    start_time: int | None
    trainer_pid: int
    trainer_start_time: int | None
    command: str
    started_at: float  # wall clock, seconds since the epoch

    @property
    def trainer_pgid(self) -> int:
        return self.trainer_pid  # the trainer leads its own process group


@dataclass(frozen=True)
class ExitRecord:
    exit_code: int
    terminated: bool = False  # the supervisor was asked to stop the run (SIGTERM / SIGINT / SIGHUP)
    killed: bool = False  # the grace period ran out: the trainer's group got SIGKILL
    finished_at: float = 0.0
    message: str | None = None


class RunDir:
    """One job's run folder. Every question about the run is answered from here, by any server."""

    def __init__(self, root: Path, job_id: str):
        self.job_id = job_id
        self.path = Path(root) / self.folder_name(job_id)

    @staticmethod
    def folder_name(job_id: str) -> str:
        # Job ids are UUIDs or the studio's ids; anything that is not a plain file name is hashed.
        if _SAFE_NAME.fullmatch(job_id):
            return job_id
        return "h-" + hashlib.sha256(job_id.encode()).hexdigest()[:40]

    @property
    def output(self) -> Path:
        return self.path / OUTPUT

    def launch(self) -> LaunchRecord | None:
        data = _read_json(self.path / LAUNCH)
        try:
            return LaunchRecord(**data) if data else None
        except TypeError:
            return None

    def exit(self) -> ExitRecord | None:
        data = _read_json(self.path / EXIT)
        try:
            return ExitRecord(**data) if data else None
        except TypeError:
            return None

    def try_lock(self) -> int | None:
        """The run's lock, taken: an open descriptor (hand it to the supervisor, or close it to release);
        None if a live supervisor holds it."""
        self.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path / LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                return None
            raise
        return fd

    def alive(self) -> bool:
        """A supervisor of this run is alive (it holds the lock)."""
        if not (self.path / LOCK).exists():
            return False
        fd = self.try_lock()
        if fd is None:
            return True
        os.close(fd)
        return False

    def state(self) -> str:
        """`exited` (an exit record: the trainer's group is gone), `alive`, `dead` (launched, ended
        without a record) or `none`. A supervisor writes its record and then dies, so a run found not
        alive is asked for its record once more before it is called dead."""
        if self.exit() is not None:
            return "exited"
        if self.alive():
            return "alive"
        if self.exit() is not None:
            return "exited"
        if self.launch() is not None:
            return "dead"
        return "none"

    def kill_trainer_group(self, sig: int, record: LaunchRecord | None = None) -> bool:
        """Signal whatever is left of the trainer's process group; never a process that merely reuses a
        pid. True if something was signalled."""
        rec = record or self.launch()
        if rec is None:
            return False
        leader = proc_start_time(rec.trainer_pid)
        if leader is not None and rec.trainer_start_time is not None and leader != rec.trainer_start_time:
            return False  # that pid is someone else's now
        # The leader gone, the group may live on in a grandchild; Linux does not hand out a pid that is
        # still some group's id, so killpg reaches only what is left of this one.
        try:
            os.killpg(rec.trainer_pgid, sig)
        except (ProcessLookupError, PermissionError):
            return False
        return True


# ---- the supervisor process ---------------------------------------------------------------------------


class _Output:
    """Writes the trainer's lines to `output.jsonl`, numbered in the order they arrive, redacted."""

    def __init__(self, f: BinaryIO, secrets: tuple[str, ...]):
        self.f = f
        self.secrets = secrets
        self.seq = 0
        self.lock = threading.Lock()

    def line(self, stream: str, text: str, continued: bool) -> None:
        message = redact_cut(text, self.secrets, MAX_LINE_CHARS, continued=continued)
        with self.lock:
            self.seq += 1
            record = {"seq": self.seq, "t": time.time(), "stream": stream, "message": message}
            self.f.write(json.dumps(record).encode() + b"\n")
            self.f.flush()

    def read(self, pipe: BinaryIO, stream: str, bound: int) -> None:
        """Each line of `pipe`; `continued` when the line went on past `bound` bytes (what followed was
        dropped, and may hold the rest of a secret)."""
        try:
            for raw in iter(lambda: pipe.readline(bound), b""):
                continued = False
                while not raw.endswith(b"\n"):
                    rest = pipe.readline(bound)
                    if not rest:
                        break
                    continued = True
                    if rest.endswith(b"\n"):
                        break
                self.line(stream, raw.decode("utf-8", "replace").rstrip("\r\n"), continued)
        finally:
            pipe.close()


def supervise(run: RunDir, argv: list[str], *, cwd: str, command: str, grace: float, secrets: tuple[str, ...]) -> int:
    """Run the trainer to its end and leave its exit record. The caller holds the run's lock."""
    state = {"terminated": False, "killed": False}
    proc: subprocess.Popen[bytes] | None = None
    killer: list[threading.Timer] = []

    def kill_group() -> None:
        if proc is not None:
            state["killed"] = True
            _killpg(proc.pid, signal.SIGKILL)

    def on_stop(signum: int, frame: object) -> None:
        state["terminated"] = True
        if proc is not None:
            _killpg(proc.pid, signal.SIGTERM)
        if not killer:
            timer = threading.Timer(grace, kill_group)
            timer.daemon = True
            killer.append(timer)
            timer.start()

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_stop)

    with open(run.output, "wb") as f:
        out = _Output(f, secrets)
        try:
            proc = subprocess.Popen(
                argv,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                process_group=0,
                close_fds=True,
            )
        except OSError as exc:
            write_json_atomic(run.path / EXIT, asdict(ExitRecord(exit_code=127, finished_at=time.time(), message=f"could not start {argv[0]}: {exc}")))
            return 127
        if state["terminated"]:
            _killpg(proc.pid, signal.SIGTERM)  # the stop came while it was being started
        write_json_atomic(
            run.path / LAUNCH,
            asdict(
                LaunchRecord(
                    pid=os.getpid(),
                    start_time=proc_start_time(os.getpid()),
                    trainer_pid=proc.pid,
                    trainer_start_time=proc_start_time(proc.pid),
                    command=command,
                    started_at=time.time(),
                )
            ),
        )
        bound = read_bound(secrets)
        readers = [
            threading.Thread(target=out.read, args=(proc.stdout, "stdout", bound), daemon=True),
            threading.Thread(target=out.read, args=(proc.stderr, "stderr", bound), daemon=True),
        ]
        for reader in readers:
            reader.start()
        returncode = proc.wait()
        for reader in readers:
            reader.join(DRAIN_SECONDS)
        # Nothing the trainer started outlives the run (and a grandchild holding the pipes lets go).
        _killpg(proc.pid, signal.SIGKILL)
        for reader in readers:
            reader.join(DRAIN_SECONDS)
    for timer in killer:
        timer.cancel()
    code = exit_code_of(returncode)
    message = f"terminated by {signal.Signals(-returncode).name}" if returncode < 0 else None
    record = ExitRecord(exit_code=code, terminated=state["terminated"], killed=state["killed"], finished_at=time.time(), message=message)
    write_json_atomic(run.path / EXIT, asdict(record))
    return code if 0 <= code < 256 else 1


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared.adapters.local_runs", description="Supervise one local training run.")
    parser.add_argument("--runs-dir", required=True)
    parser.add_argument("--job-id", required=True)
    parser.add_argument("--lock-fd", type=int, required=True, help="the run's lock, taken by the server and inherited")
    parser.add_argument("--cwd", required=True, help="the trainer's working directory")
    parser.add_argument("--command", default="", help="the display command (secrets redacted)")
    parser.add_argument("--grace", type=float, default=10.0, help="seconds between SIGTERM and SIGKILL")
    parser.add_argument("--secret-names", default="", help="comma-separated variables whose values are redacted")
    parser.add_argument("argv", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    trainer = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    if not trainer:
        parser.error("no trainer command after --")
    run = RunDir(Path(args.runs_dir), args.job_id)
    os.set_inheritable(args.lock_fd, False)  # held here for life; the trainer must not keep the run "alive"
    names = [n for n in args.secret_names.split(",") if n]
    # Each value, its lines and each leaf of a JSON one (the per-source credentials): see secret_values.
    secrets = secret_values({n: os.environ.get(n, "") for n in names})
    return supervise(run, trainer, cwd=args.cwd, command=args.command, grace=args.grace, secrets=secrets)


if __name__ == "__main__":
    sys.exit(main())
