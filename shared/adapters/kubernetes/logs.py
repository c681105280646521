"""Pod log following: one thread per started pod reads `pods/log?follow=true&timestamps=true` and
publishes the lines as `training-events` in batches (by count and by age), in order.

Lines get `seq` = their line number in that pod's log, from 1; a follower that loses its connection
reads again from the start and skips what it already had, and a restarted watcher re-reads every log
from the start: same seqs, so status_sync (which drops lines at or below the highest seq it applied)
appends nothing twice. A several-node job's pods tag each line `[node N] ` (the completion index).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared.adapters.kubernetes.client import lines, shutdown
from shared.adapters.kubernetes.watch import uid_of
from shared.domain.events import EventLog, TrainingEvent
from shared.domain.k8s_observe import completion_index, container_name, parse_k8s_time
from shared.domain.translate import PROGRESS_PREFIX
from shared.ports import Clock

log = logging.getLogger(__name__)

SOURCE = "kubernetes"
LOG_BUFFER_LIMIT_BATCHES = 50  # while publishing fails, keep at most this many batches of a pod's lines


@dataclass(frozen=True)
class LogContext:
    """What every follower of one watcher shares (read-only): the API, the clock, where to publish, the
    watcher's stop flag, batching and retry settings. `on_batch` counts published batches."""

    core: Any  # CoreV1Api
    namespace: str
    clock: Clock
    publish: Callable[[dict[str, Any]], Any]
    stop_event: threading.Event
    on_batch: Callable[[], None]
    log_batch_lines: int = 200
    log_batch_seconds: float = 0.5
    retry_seconds: float = 1.0
    max_retry_seconds: float = 30.0
    connect_timeout: float = 10.0
    log_read_timeout: float = 600.0


def split_timestamp(line: str) -> tuple[datetime | None, str]:
    """`pods/log?timestamps=true` prefixes each line with an RFC 3339 time and a space."""
    head, sep, rest = line.partition(" ")
    if sep and "T" in head and head[:4].isdigit():
        when = parse_k8s_time(head)
        if when is not None:
            return when, rest
    return None, line


class LogFollower:
    """Follows one pod's log in a thread and publishes its lines in batches, in order."""

    def __init__(self, ctx: LogContext, pod: dict[str, Any], job_id: str):
        meta = pod.get("metadata") or {}
        self.ctx = ctx
        self.uid = uid_of(pod)
        self.name = str(meta.get("name"))
        self.container = container_name(pod)
        self.job_id = job_id
        # A several-node job's pods: each line says which node it came from (PROGRESS lines stay as
        # they are, so status_sync still lifts them: only global rank 0 prints them).
        index = completion_index(pod)
        self.tag = f"[node {index}] " if index is not None else ""
        self.emitted = 0  # the seq of the last line read (buffered or published)
        self.buffer: list[EventLog] = []
        self.oldest: float | None = None  # monotonic time the oldest buffered line arrived
        self.done = False  # the stream ended by itself: the container has exited
        self.retired_at: float | None = None  # the pod is gone: drain, don't reconnect
        # Guards `buffer`, `emitted` and `oldest`: the follower's thread adds, the ticker flushes (and
        # so one publisher per pod at a time keeps the batches in order).
        self._publish_lock = threading.Lock()
        self._stopping = threading.Event()
        self._resp: Any = None
        self.thread = threading.Thread(target=self._run, name=f"log-{self.name}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def retire(self) -> None:
        if self.retired_at is None:
            self.retired_at = time.monotonic()

    def stop(self) -> None:
        self._stopping.set()
        if self._resp is not None:
            shutdown(self._resp)

    @property
    def alive(self) -> bool:
        return self.thread.is_alive()

    def _run(self) -> None:
        w = self.ctx
        backoff = w.retry_seconds
        while not self._stopping.is_set() and not w.stop_event.is_set():
            try:
                self._read_once()
                self.done = True
                break
            except Exception as exc:  # noqa: BLE001 - any failure: reconnect unless told to stop
                if self._stopping.is_set() or w.stop_event.is_set():
                    break
                status = getattr(exc, "status", None)
                if status == 404:  # the pod is gone
                    break
                if self.retired_at is not None:
                    break
                log.info("log of pod %s: %s; reading again in %.1fs", self.name, type(exc).__name__, backoff)
                if self._stopping.wait(backoff):
                    break
                backoff = min(backoff * 2, w.max_retry_seconds)
        self.flush()

    def _read_once(self) -> None:
        w = self.ctx
        kwargs: dict[str, Any] = {"follow": True, "timestamps": True, "_preload_content": False, "_request_timeout": (w.connect_timeout, w.log_read_timeout)}
        if self.container:
            kwargs["container"] = self.container
        resp = w.core.read_namespaced_pod_log(self.name, w.namespace, **kwargs)
        self._resp = resp
        try:
            if self._stopping.is_set():
                return
            index = 0
            for line in lines(resp):
                index += 1
                if index <= self.emitted:
                    continue  # read again after a reconnect: already had it
                when, message = split_timestamp(line)
                if self.tag and not message.startswith(PROGRESS_PREFIX):
                    message = self.tag + message
                self._add(EventLog(seq=index, timestamp=when or w.clock.now(), stream="stdout", message=message))
                if self._stopping.is_set():
                    return
        finally:
            self._resp = None
            resp.close()
            resp.release_conn()

    def _add(self, line: EventLog) -> None:
        with self._publish_lock:
            self.buffer.append(line)
            self.emitted = line.seq
            if self.oldest is None:
                self.oldest = time.monotonic()
            full = len(self.buffer) >= self.ctx.log_batch_lines
        if full:
            self.flush()

    def due(self) -> bool:
        return self.oldest is not None and time.monotonic() - self.oldest >= self.ctx.log_batch_seconds

    def flush(self) -> None:
        """Publish what is buffered, a batch at a time, in order (one publisher per pod at a time)."""
        w = self.ctx
        with self._publish_lock:
            while self.buffer:
                batch = self.buffer[: w.log_batch_lines]
                # `log_stream` (the pod) keeps one log cursor per pod: a retried pod's lines count from 1 again.
                event = TrainingEvent(job_id=self.job_id, source=SOURCE, observed_at=w.clock.now(), logs=tuple(batch), extra={"log_stream": self.name})
                try:
                    w.publish(event.to_message())
                except Exception as exc:  # noqa: BLE001 - kept; the ticker flushes again
                    log.warning("job %s: publishing %d log lines of pod %s failed: %s", self.job_id, len(batch), self.name, exc)
                    limit = w.log_batch_lines * LOG_BUFFER_LIMIT_BATCHES
                    if len(self.buffer) > limit:
                        del self.buffer[: len(self.buffer) - limit]
                    return
                del self.buffer[: len(batch)]
                w.on_batch()
            self.oldest = None
