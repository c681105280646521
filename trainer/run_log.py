"""`--log_uri`: the trainer's full log (`train.log`) and `run_summary.json`, written to a folder of the caller's.

The studio names a folder (usually `s3://.../logs/<job id>/`) where it expects the run's log while the run
goes and after it ends, however it ends. Rank 0 alone does this (the other ranks' output is theirs; a
distributed run's rank 0 prints the run's PROGRESS and errors):

- everything this process prints through `sys.stdout` / `sys.stderr` (PROGRESS lines, warnings, the
  preflight report, tracebacks) is copied into a local spool file while it still goes to the real stream
  (the platform's log tail is unchanged). Output written straight to the file descriptors by native code
  (NCCL, a compiled kernel's printf) and logging handlers bound to the old streams before the copy
  started are not copied;
- every `interval` seconds a daemon thread writes `train.log` (the spool so far) and a `run_summary.json`
  saying `running` with the last PROGRESS event, overwriting the same two objects each time;
- at the end (`finish`, called from `train.main`'s `finally`, so also after an exception) it writes both
  once more: the run's own run_summary.json when it succeeded, else one saying `failed` / `preempted`
  with the exit code, the error the trainer reported, and the last progress.

Every upload is best effort: a failure is a warning on stderr, never the run's end. What goes up is
redacted like every message (`trainer.progress.redact`). A local folder works as well as gs:// / s3://.
"""

from __future__ import annotations

import json
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from trainer import progress, storage

LOG_FILE = "train.log"
SUMMARY_FILE = "run_summary.json"


class _Tee:
    """A text stream that writes to the real one and copies what it wrote into the run log."""

    def __init__(self, stream: TextIO, sink: RunLog):
        self._stream = stream
        self._sink = sink

    def write(self, text: str) -> int:
        written = self._stream.write(text)
        self._sink.append(text)
        return written

    def flush(self) -> None:
        self._stream.flush()

    def __getattr__(self, name: str) -> Any:  # fileno, isatty, encoding, ...: the real stream's
        return getattr(self._stream, name)


class RunLog:
    def __init__(
        self,
        uri: str,
        options: dict | None = None,
        interval: float = 300.0,
        *,
        summary_file: str | Path | None = None,
        write: Callable[[str, bytes, dict | None], None] | None = None,
        clock: Callable[[], float] = time.time,
    ):
        self.uri = uri
        self.options = options
        self.interval = interval
        self.summary_file = Path(summary_file) if summary_file else None
        self._write = write or storage.write_bytes
        self._clock = clock
        self._spool = tempfile.TemporaryFile(mode="w+b", prefix="train-log-")
        self._lock = threading.Lock()  # the spool and the progress seen, between the streams and the uploader
        self._upload_lock = threading.Lock()  # one upload at a time: the periodic one and the final one
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._streams: tuple[TextIO, TextIO] | None = None
        self._pending = ""
        self.started_at = clock()
        self.last_progress: dict | None = None
        self.error: str | None = None
        self.uploads = 0

    # ---- capture -------------------------------------------------------------------------------------

    def append(self, text: str) -> None:
        with self._lock:
            self._spool.write(text.encode("utf-8", "replace"))
            # PROGRESS lines are written whole, but a stream may be handed a line in pieces: keep the tail.
            lines = (self._pending + text).split("\n")
            self._pending = lines.pop()[-65536:]
            for line in lines:
                if not line.startswith(progress.PREFIX):
                    continue
                try:
                    event = progress.parse_line(line)
                except ValueError:
                    continue
                if isinstance(event, dict):
                    self.last_progress = event
                    if event.get("event") == "error":
                        self.error = event.get("message")

    def log_text(self) -> str:
        with self._lock:
            self._spool.flush()
            self._spool.seek(0)
            raw = self._spool.read()
            self._spool.seek(0, 2)
        return progress.redact(raw.decode("utf-8", "replace"))

    def start(self) -> RunLog:
        """Copy stdout/stderr from now on and start the periodic uploads."""
        self._streams = (sys.stdout, sys.stderr)
        sys.stdout = _Tee(sys.stdout, self)  # type: ignore[assignment]
        sys.stderr = _Tee(sys.stderr, self)  # type: ignore[assignment]
        self._thread = threading.Thread(target=self._loop, name="run-log-upload", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.upload(self.running_summary())

    # ---- uploads -------------------------------------------------------------------------------------

    def running_summary(self) -> dict:
        with self._lock:
            last = self.last_progress
        return {"status": "running", "updated_at": round(self._clock(), 3), "progress": last}

    def final_summary(self, exit_code: int) -> dict | bytes:
        """The run's own run_summary.json when it succeeded (written by this run), else one of ours."""
        if exit_code == 0 and self.summary_file is not None:
            try:
                if self.summary_file.stat().st_mtime >= self.started_at - 1:
                    return self.summary_file.read_bytes()
            except OSError:
                pass
        with self._lock:
            last, error = self.last_progress, self.error
        status = "preempted" if exit_code == 143 else ("succeeded" if exit_code == 0 else "failed")
        return {"status": status, "exit_code": exit_code, "error": error, "progress": last, "updated_at": round(self._clock(), 3)}

    def upload(self, summary: dict | bytes) -> bool:
        """Write train.log and run_summary.json; False (and a warning) when either failed."""
        if isinstance(summary, dict):
            payload = json.dumps(progress.sanitize(summary), indent=2) + "\n"
        else:
            payload = summary.decode("utf-8", "replace")
        with self._upload_lock:
            try:
                self._write(storage.join(self.uri, LOG_FILE), self.log_text().encode("utf-8"), self.options)
                self._write(storage.join(self.uri, SUMMARY_FILE), progress.redact(payload).encode("utf-8"), self.options)
            except Exception as e:  # noqa: BLE001 - a log upload must never end the run
                self._warn(f"warning: could not write the log to {self.uri}: {type(e).__name__}: {e}")
                return False
            self.uploads += 1
            return True

    def _warn(self, message: str) -> None:
        stream = self._streams[1] if self._streams else sys.stderr
        try:
            stream.write(progress.redact(message) + "\n")  # the real stderr: the warning need not be in the log
            stream.flush()
        except (OSError, ValueError):
            pass

    def finish(self, exit_code: int) -> bool:
        """Stop copying and uploading, then write the final log and summary (best effort)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
        if self._streams is not None:
            sys.stdout, sys.stderr = self._streams
        try:
            return self.upload(self.final_summary(exit_code))
        finally:
            self._streams = None
            self._spool.close()
