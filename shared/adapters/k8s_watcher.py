"""The cluster watcher: follows our Jobs and Pods (by label) and their logs, and publishes what changes
to `training-events` (entry point: `python -m functions.watcher`, deployed by `infra/k8s/watcher.yaml`).

How it stays correct across disconnects and restarts (the Kubernetes list-then-watch protocol):
- Start: list Jobs and Pods (label `app.kubernetes.io/managed-by=training-platform`), evaluate every
  job once, then watch each resource from its list's `resourceVersion`.
- Each watch runs with a server-side `timeoutSeconds` (so the client library never retries on its
  own) and bookmarks; the last `resourceVersion` seen (object or BOOKMARK) is kept per resource and a
  dropped or timed-out connection re-watches from it: nothing is missed and nothing is replayed.
- `410 Gone` (an ERROR event with code 410, or an HTTP 410): the history we were at is compacted; the
  resource is listed again, objects that vanished meanwhile count as deleted, and the watch resumes
  from the new list's `resourceVersion`.
- What a job's objects mean is decided in one pure place (`shared/domain/k8s_observe.py`); the watcher
  publishes only when the (state, reason) differs from the last it published for that job. A restarted
  watcher has no memory: it publishes each job's current state once more, with the same `event_id`
  (`<Job uid>:<state>:<reason>`) as the first time, so status_sync drops it as a redelivery.
- Logs: one follower thread per started pod (`pods/log?follow=true&timestamps=true`); lines get
  `seq` = their line number in that pod's log, from 1, and are published in batches (by count and by
  age); a follower that loses its connection reads again from the start and skips what it already
  had. A restarted watcher re-reads every log from the start: same seqs, so status_sync (which drops
  lines at or below the highest seq it applied) appends nothing twice.
- A several-node job (an Indexed Job) has one pod per node; each pod's lines are tagged `[node N] `
  (its completion index), and its state is read index by index (see `k8s_observe`).
- An image pull (or container config) that keeps failing is reported `Waiting`, then `Failed` after
  `image_pull_grace_seconds` since this process first saw it waiting: a bounded wait. The deadline is
  checked on a ticker, with the injected clock, so tests move time instead of sleeping.

Threads: a supervisor (initial sync, then it starts the rest), one watch loop per resource, a ticker
(grace deadlines, retries of failed publishes, time-based log flushes) and the log followers. `stop()`
ends them all: it sets a flag and shuts down the sockets of in-flight streams.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections import OrderedDict
from datetime import datetime
from typing import Any, Callable, Iterator

from shared.domain import naming
from shared.domain.events import EventLog, TrainingEvent
from shared.domain.translate import PROGRESS_PREFIX
from shared.domain.k8s_observe import (
    DELETED,
    PENDING,
    RUNNING,
    TERMINAL_STATES,
    WAITING,
    ObservedState,
    completion_index,
    container_name,
    deleted_state,
    has_started,
    image_pull_reason,
    job_id_of,
    job_state,
    owner_job_uid,
    parse_k8s_time,
    scheduled_at,
)
from shared.ports import Observation

log = logging.getLogger(__name__)

SOURCE = "kubernetes"
JOBS, PODS = "jobs", "pods"
DEFAULT_SELECTOR = f"{naming.K8S_MANAGED_BY_LABEL}={naming.MANAGED_BY}"
GONE = 410
MEMO_LIMIT = 10_000  # job ids whose last published state is remembered (oldest forgotten first)
CATCH_UP_ATTEMPTS = 5  # reads of a failed Job's pods before its failure is reported with the Job's reason
LOG_BUFFER_LIMIT_BATCHES = 50  # while publishing fails, keep at most this many batches of a pod's lines

# How far along a state is; the watcher never publishes a step back (see `_evaluate`).
RANK = {PENDING: 1, WAITING: 1, RUNNING: 2, **{state: 3 for state in TERMINAL_STATES}}

Publish = Callable[[dict[str, Any]], Any]


class _Gone(Exception):
    """The watch's resourceVersion is too old (410): list again."""


def _uid(obj: dict[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("uid") or "")


def _rv(obj: dict[str, Any]) -> str | None:
    value = (obj.get("metadata") or {}).get("resourceVersion")
    return str(value) if value else None


def _not_older(new: dict[str, Any], old: dict[str, Any] | None) -> bool:
    """Whether `new` is at least as recent as `old` (resourceVersions compared as numbers when they are,
    as every API server in practice makes them; opaque ones are taken as newer)."""
    if old is None:
        return True
    a, b = _rv(new) or "", _rv(old) or ""
    return not (a.isdigit() and b.isdigit()) or int(a) >= int(b)


def _is_gone(exc: BaseException) -> bool:
    from kubernetes.client.exceptions import ApiException

    return isinstance(exc, ApiException) and exc.status == GONE


def _says_failed(job: dict[str, Any]) -> bool:
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") in ("Failed", "FailureTarget") and str(cond.get("status")) == "True":
            return cond.get("reason") != "DeadlineExceeded"
    return False


def _split_timestamp(line: str) -> tuple[datetime | None, str]:
    """`pods/log?timestamps=true` prefixes each line with an RFC 3339 time and a space."""
    head, sep, rest = line.partition(" ")
    if sep and "T" in head and head[:4].isdigit():
        when = parse_k8s_time(head)
        if when is not None:
            return when, rest
    return None, line


def _lines(resp: Any) -> Iterator[str]:
    """Lines of a (chunked, streaming) response as they arrive; the last one even without a newline."""
    buffer = b""
    for chunk in resp.stream(amt=None, decode_content=False):
        buffer += chunk if isinstance(chunk, bytes) else str(chunk).encode()
        while True:
            cut = buffer.find(b"\n")
            if cut < 0:
                break
            line, buffer = buffer[:cut], buffer[cut + 1 :]
            yield line.decode("utf-8", "replace").rstrip("\r")
    if buffer:
        yield buffer.decode("utf-8", "replace").rstrip("\r")


def _shutdown(resp: Any) -> None:
    """Unblock a thread reading `resp` by shutting its socket down (the client library's `Watch.stop`
    does the same through the connection; when the server said `Connection: close`, http.client has
    handed the socket to the response, so look there too)."""
    candidates = [getattr(getattr(resp, "connection", None), "sock", None)]
    raw = getattr(getattr(getattr(resp, "_fp", None), "fp", None), "raw", None)
    candidates.append(getattr(raw, "_sock", None))
    for sock in candidates:
        if sock is None:
            continue
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class _LogFollower:
    """Follows one pod's log in a thread and publishes its lines in batches, in order."""

    def __init__(self, watcher: "ClusterWatcher", pod: dict[str, Any], job_id: str):
        meta = pod.get("metadata") or {}
        self.watcher = watcher
        self.uid = _uid(pod)
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
            _shutdown(self._resp)

    @property
    def alive(self) -> bool:
        return self.thread.is_alive()

    def _run(self) -> None:
        w = self.watcher
        backoff = w.retry_seconds
        while not self._stopping.is_set() and not w.stopped:
            try:
                self._read_once()
                self.done = True
                break
            except Exception as exc:  # noqa: BLE001 - any failure: reconnect unless told to stop
                if self._stopping.is_set() or w.stopped:
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
        w = self.watcher
        kwargs: dict[str, Any] = {"follow": True, "timestamps": True, "_preload_content": False, "_request_timeout": (w.connect_timeout, w.log_read_timeout)}
        if self.container:
            kwargs["container"] = self.container
        resp = w.core.read_namespaced_pod_log(self.name, w.namespace, **kwargs)
        self._resp = resp
        try:
            if self._stopping.is_set():
                return
            index = 0
            for line in _lines(resp):
                index += 1
                if index <= self.emitted:
                    continue  # read again after a reconnect: already had it
                when, message = _split_timestamp(line)
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
            full = len(self.buffer) >= self.watcher.log_batch_lines
        if full:
            self.flush()

    def due(self) -> bool:
        return self.oldest is not None and time.monotonic() - self.oldest >= self.watcher.log_batch_seconds

    def flush(self) -> None:
        """Publish what is buffered, a batch at a time, in order (one publisher per pod at a time)."""
        w = self.watcher
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
                w.log_batches_published += 1
            self.oldest = None


class ClusterWatcher:
    """Watches the Jobs and Pods with our label in `namespace` and publishes `training-events`
    envelopes (dicts) through `publish`. `start()` / `stop()` / `join()`; `run()` blocks until stopped."""

    def __init__(
        self,
        api_client: Any,
        namespace: str,
        publish: Publish,
        *,
        clock: Any,
        image_pull_grace_seconds: float = 300,
        log_batch_lines: int = 200,
        log_batch_seconds: float = 0.5,
        label_selector: str = DEFAULT_SELECTOR,
        watch_timeout_seconds: int = 300,
        tick_seconds: float = 1.0,
        retry_seconds: float = 1.0,
        max_retry_seconds: float = 30.0,
        connect_timeout: float = 10.0,
        log_read_timeout: float = 600.0,
        log_drain_seconds: float = 10.0,
        follow_logs: bool = True,
    ):
        from kubernetes import client

        self.api_client = api_client
        self.namespace = namespace
        self.publish = publish
        self.clock = clock
        self.image_pull_grace_seconds = image_pull_grace_seconds
        self.log_batch_lines = max(1, int(log_batch_lines))
        self.log_batch_seconds = log_batch_seconds
        self.label_selector = label_selector
        self.watch_timeout_seconds = max(1, int(watch_timeout_seconds))
        self.tick_seconds = tick_seconds
        self.retry_seconds = retry_seconds
        self.max_retry_seconds = max_retry_seconds
        self.connect_timeout = connect_timeout
        self.log_read_timeout = log_read_timeout
        self.log_drain_seconds = log_drain_seconds
        self.follow_logs = follow_logs
        self.batch = client.BatchV1Api(api_client)
        self.core = client.CoreV1Api(api_client)

        self._lock = threading.RLock()
        self._objects: dict[str, dict[str, dict[str, Any]]] = {JOBS: {}, PODS: {}}  # resource -> uid -> object
        self._published: OrderedDict[str, tuple[str, str | None]] = OrderedDict()  # job id -> (state, reason)
        self._pull_seen: dict[str, datetime] = {}  # pod uid -> first seen waiting on an image pull
        self._followers: dict[str, _LogFollower] = {}
        self._tombstones: dict[str, dict[str, Any]] = {}  # job id -> its deleted Job, until that is published
        self._catch_up_failures: dict[str, int] = {}  # Job uid -> failed reads of its pods
        self._resource_version: dict[str, str | None] = {JOBS: None, PODS: None}
        self._watches: dict[str, Any] = {}
        self._streams: dict[str, Any] = {}  # resource -> the open watch response (cut by stop())
        self._stop = threading.Event()
        self._synced = threading.Event()
        self._threads: list[threading.Thread] = []
        # Counters (logs and tests): lists done per resource, watches started (resource, from rv).
        self.lists: dict[str, int] = {JOBS: 0, PODS: 0}
        self.watch_starts: list[tuple[str, str | None]] = []
        self.states_published = 0
        self.log_batches_published = 0

    # ---- lifecycle -------------------------------------------------------------------------------
    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def start(self) -> "ClusterWatcher":
        thread = threading.Thread(target=self._supervise, name="watcher", daemon=True)
        self._threads.append(thread)
        thread.start()
        return self

    def wait_synced(self, timeout: float) -> bool:
        return self._synced.wait(timeout)

    def stop(self) -> None:
        """End every loop: the watches and log streams are cut, buffered log lines are flushed."""
        self._stop.set()
        for w in list(self._watches.values()):
            w.stop()
        for resp in list(self._streams.values()):
            _shutdown(resp)
        with self._lock:
            followers = list(self._followers.values())
        for f in followers:
            f.stop()

    def join(self, timeout: float = 10.0) -> bool:
        """Wait for the threads to end; False if some are still running after `timeout`."""
        deadline = time.monotonic() + timeout
        for thread in list(self._threads):
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            followers = list(self._followers.values())
        for f in followers:
            f.thread.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self._threads) and not any(f.alive for f in followers)

    def run(self) -> None:
        """Start and block until `stop()` (the entry point calls it from a signal handler)."""
        self.start()
        while not self._stop.wait(1.0):
            pass
        self.join()

    def _supervise(self) -> None:
        backoff = self.retry_seconds
        while not self.stopped:
            try:
                self._initial_sync()
                break
            except Exception as exc:  # noqa: BLE001 - the API server may not be reachable yet
                log.warning("initial list failed (%s: %s); trying again in %.1fs", type(exc).__name__, exc, backoff)
                if self._stop.wait(backoff):
                    return
                backoff = min(backoff * 2, self.max_retry_seconds)
        if self.stopped:
            return
        self._synced.set()
        for target, name in ((lambda: self._watch_loop(JOBS), "watch-jobs"), (lambda: self._watch_loop(PODS), "watch-pods"), (self._tick_loop, "ticker")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            self._threads.append(thread)
            thread.start()

    # ---- list and watch --------------------------------------------------------------------------
    def _list_call(self, resource: str) -> Callable[..., Any]:
        return self.batch.list_namespaced_job if resource == JOBS else self.core.list_namespaced_pod

    def _list(self, resource: str) -> tuple[list[dict[str, Any]], str]:
        resp = self._list_call(resource)(
            self.namespace, label_selector=self.label_selector, _preload_content=False, _request_timeout=(self.connect_timeout, 60)
        )
        body = json.loads(resp.data)
        self.lists[resource] += 1
        return list(body.get("items") or []), str((body.get("metadata") or {}).get("resourceVersion") or "")

    def _initial_sync(self) -> None:
        jobs, jobs_rv = self._list(JOBS)
        pods, pods_rv = self._list(PODS)
        with self._lock:
            self._replace(JOBS, jobs)
            self._replace(PODS, pods)
            self._resource_version[JOBS], self._resource_version[PODS] = jobs_rv, pods_rv
            for job_id in self._known_job_ids():
                self._evaluate(job_id)
            for pod in self._objects[PODS].values():
                self._maybe_follow(pod)
        log.info("watching %d Jobs and %d Pods in %s (%s)", len(jobs), len(pods), self.namespace, self.label_selector)

    def _relist(self, resource: str) -> None:
        """After 410 Gone: list again; what vanished meanwhile is handled as deleted."""
        items, rv = self._list(resource)
        with self._lock:
            current = {_uid(o): o for o in items}
            for uid, old in list(self._objects[resource].items()):
                if uid not in current:
                    self._on_event(resource, "DELETED", old)
            for obj in items:
                self._on_event(resource, "MODIFIED", obj)
            self._resource_version[resource] = rv
        log.info("re-listed %s after 410 Gone: %d objects, resuming at resourceVersion %s", resource, len(items), rv)

    def _replace(self, resource: str, items: list[dict[str, Any]]) -> None:
        self._objects[resource] = {_uid(o): o for o in items}

    def _watch_loop(self, resource: str) -> None:
        backoff = self.retry_seconds
        while not self.stopped:
            try:
                if self._resource_version[resource] is None:
                    self._relist(resource)
                self._watch_once(resource)
                backoff = self.retry_seconds
            except Exception as exc:  # noqa: BLE001 - sorted below; the loop only ends on stop()
                if self.stopped:
                    break
                if isinstance(exc, _Gone) or _is_gone(exc):
                    log.info("watch of %s: 410 Gone at resourceVersion %s; listing again", resource, self._resource_version[resource])
                    self._resource_version[resource] = None
                    continue
                log.warning("watch of %s failed (%s: %s); resuming from %s in %.1fs", resource, type(exc).__name__, exc, self._resource_version[resource], backoff)
                if self._stop.wait(backoff):
                    break
                backoff = min(backoff * 2, self.max_retry_seconds)

    def _watch_once(self, resource: str) -> None:
        from kubernetes import watch

        w = watch.Watch(return_type="object")  # raw dicts: the pure module reads JSON, not models
        self._watches[resource] = w
        if self.stopped:
            return
        since = self._resource_version[resource]
        self.watch_starts.append((resource, since))
        list_call = self._list_call(resource)

        def call(*args: Any, **kwargs: Any) -> Any:
            # Registered before the flag is read, and stop() sets the flag before reading these: a
            # stop() that lands while the request is being made still cuts it.
            resp = list_call(*args, **kwargs)
            self._streams[resource] = resp
            if self.stopped:
                _shutdown(resp)
            return resp

        stream = w.stream(
            call,
            self.namespace,
            label_selector=self.label_selector,
            resource_version=since,
            timeout_seconds=self.watch_timeout_seconds,
            allow_watch_bookmarks=True,
            _request_timeout=(self.connect_timeout, self.watch_timeout_seconds + 30),
        )
        try:
            for event in stream:
                if self.stopped:
                    break
                kind = event.get("type")
                obj = event.get("raw_object") or {}
                if kind == "ERROR":  # the client raises for these; kept in case it stops doing so
                    if obj.get("code") == GONE:
                        raise _Gone(obj.get("message"))
                    raise RuntimeError(f"watch error {obj.get('code')}: {obj.get('message')}")
                rv = _rv(obj)
                if kind != "BOOKMARK":
                    with self._lock:
                        self._on_event(resource, str(kind), obj)
                if rv:
                    self._resource_version[resource] = rv
        finally:
            stream.close()
            self._watches.pop(resource, None)
            self._streams.pop(resource, None)

    # ---- events -> state -------------------------------------------------------------------------
    def _on_event(self, resource: str, kind: str, obj: dict[str, Any]) -> None:
        uid = _uid(obj)
        if resource == JOBS:
            job_id = job_id_of(obj)
            if kind == "DELETED":
                self._objects[JOBS].pop(uid, None)
                if job_id:
                    self._tombstones[job_id] = obj
                    self._evaluate(job_id)
                return
            self._objects[JOBS][uid] = obj
            if job_id:
                self._evaluate(job_id)
            return
        job_id = self._pod_job_id(obj)
        if kind == "DELETED":
            self._objects[PODS].pop(uid, None)
            self._pull_seen.pop(uid, None)
            follower = self._followers.get(uid)
            if follower is not None:
                follower.retire()
        else:
            if not _not_older(obj, self._objects[PODS].get(uid)):
                return  # a direct read (see `_catch_up_pods`) already had something newer
            self._objects[PODS][uid] = obj
            self._maybe_follow(obj)
        if job_id:
            self._evaluate(job_id)

    def _pod_job_id(self, pod: dict[str, Any]) -> str | None:
        found = job_id_of(pod)
        if found:
            return found
        owner = owner_job_uid(pod)
        job = self._objects[JOBS].get(owner or "")
        return job_id_of(job) if job else None

    def _known_job_ids(self) -> list[str]:
        ids = {job_id_of(j) for j in self._objects[JOBS].values()} | {self._pod_job_id(p) for p in self._objects[PODS].values()} | set(self._tombstones)
        return sorted(i for i in ids if i)

    def _evaluate(self, job_id: str) -> None:
        """Work out the job's state and publish it if it changed (called with the lock held)."""
        last = self._published.get(job_id)
        if last is not None and last[0] in TERMINAL_STATES:
            self._tombstones.pop(job_id, None)
            return  # terminal states never change: late pod events of a finished job say nothing new
        jobs = [j for j in self._objects[JOBS].values() if job_id_of(j) == job_id]
        job = max(jobs, key=lambda j: str((j.get("metadata") or {}).get("creationTimestamp") or ""), default=None)
        deleted = self._tombstones.get(job_id) if job is None else None
        if job is not None and _says_failed(job) and not self._catch_up_pods(job):
            return  # the pods could not be read: the next tick tries again rather than report a vaguer reason
        pods = [p for p in self._objects[PODS].values() if self._pod_job_id(p) == job_id]
        now = self.clock.now()
        for pod in pods:
            uid = _uid(pod)
            if image_pull_reason(pod):
                self._pull_seen.setdefault(uid, now)
            else:
                self._pull_seen.pop(uid, None)
        kwargs = {"now": now, "first_seen": self._pull_seen, "image_pull_grace_seconds": self.image_pull_grace_seconds}
        if deleted is not None:
            observed = deleted_state(deleted, pods, **kwargs)
        elif job is None and not pods:
            return
        else:
            observed = job_state(job, pods, **kwargs)
        if observed.state is None or (observed.state, observed.reason) == last:
            return
        if last is not None and RANK.get(observed.state, 0) < RANK.get(last[0], 0):
            # Back to Pending after Running (a retry's back-off, or pods seen gone before their Job):
            # nothing downstream can move backwards, so saying it would only be noise.
            return
        anchor = deleted or job
        job_uid = _uid(anchor) if anchor else next((owner_job_uid(p) for p in pods if owner_job_uid(p)), None) or job_id
        self._send_state(job_id, job_uid, observed, now)

    def _send_state(self, job_id: str, job_uid: str, observed: ObservedState, now: datetime) -> None:
        event = TrainingEvent(
            job_id=job_id,
            source=SOURCE,
            observed_at=now,
            event_id=f"{job_uid}:{observed.state}:{observed.reason or ''}",
            state=observed.state,
            reason=observed.reason,
            message=observed.message,
            exit_code=observed.exit_code,
        )
        try:
            self.publish(event.to_message())
        except Exception as exc:  # noqa: BLE001 - not remembered, so the ticker publishes it again
            log.warning("job %s: publishing %s/%s failed: %s", job_id, observed.state, observed.reason, exc)
            return
        self.states_published += 1
        self._published[job_id] = (observed.state, observed.reason)
        self._published.move_to_end(job_id)
        if observed.state in TERMINAL_STATES:
            self._tombstones.pop(job_id, None)
        while len(self._published) > MEMO_LIMIT:
            self._published.popitem(last=False)
        log.info("job %s: %s %s%s", job_id, observed.state, observed.reason or "", f" (exit {observed.exit_code})" if observed.exit_code is not None else "")

    def _catch_up_pods(self, job: dict[str, Any]) -> bool:
        """The Job says Failed but none of its pods in our cache has failed: the pods' watch is behind
        the Jobs' (two streams, no order between them). Read the pods now, so the failure is reported
        with the pod's reason (OOMKilled) and exit code rather than the Job's generic one."""
        pods = [p for p in self._objects[PODS].values() if owner_job_uid(p) == _uid(job)]
        if any(((p.get("status") or {}).get("phase")) == "Failed" for p in pods):
            return True
        match = ((job.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
        if not match:
            return True
        selector = ",".join(f"{k}={v}" for k, v in sorted(match.items()))
        try:
            resp = self.core.list_namespaced_pod(self.namespace, label_selector=selector, _preload_content=False, _request_timeout=(self.connect_timeout, 30))
            items = json.loads(resp.data).get("items") or []
        except Exception as exc:  # noqa: BLE001
            attempts = self._catch_up_failures.get(_uid(job), 0) + 1
            self._catch_up_failures[_uid(job)] = attempts
            log.warning("reading the pods of Job %s failed (attempt %d): %s", (job.get("metadata") or {}).get("name"), attempts, exc)
            # A few ticks' worth of tries, then report with what we have: a failure is never held back for long.
            return attempts >= CATCH_UP_ATTEMPTS
        self._catch_up_failures.pop(_uid(job), None)
        for pod in items:
            uid = _uid(pod)
            if uid and _not_older(pod, self._objects[PODS].get(uid)):
                self._objects[PODS][uid] = pod
        return True

    # ---- logs ------------------------------------------------------------------------------------
    def _maybe_follow(self, pod: dict[str, Any]) -> None:
        if not self.follow_logs or self.stopped or not has_started(pod):
            return
        uid = _uid(pod)
        current = self._followers.get(uid)
        if current is not None and (current.alive or current.done or current.retired_at is not None):
            return
        job_id = self._pod_job_id(pod)
        if not job_id:
            return
        follower = _LogFollower(self, pod, job_id)
        if current is not None:  # its thread gave up (errors): carry on from where it was
            follower.emitted, follower.buffer = current.emitted, current.buffer
        self._followers[uid] = follower
        follower.start()

    # ---- the ticker ------------------------------------------------------------------------------
    def _tick_loop(self) -> None:
        while not self._stop.wait(self.tick_seconds):
            try:
                self.tick()
            except Exception:  # noqa: BLE001 - a bad tick must not end the ticker
                log.exception("watcher tick failed")

    def tick(self) -> None:
        """Deadlines (image-pull grace), retries of unpublished states, due log batches, drained followers."""
        with self._lock:
            for job_id in self._known_job_ids():
                self._evaluate(job_id)
            followers = list(self._followers.items())
        now = time.monotonic()
        for uid, f in followers:
            if f.due():
                f.flush()
            if f.retired_at is not None:
                if f.alive and now - f.retired_at > self.log_drain_seconds:
                    f.stop()
                elif not f.alive:
                    with self._lock:
                        self._followers.pop(uid, None)


# ---- reconcile's one-shot read -----------------------------------------------------------------------
def observe_job(
    batch_api: Any,
    core_api: Any,
    namespace: str,
    name: str,
    *,
    now: datetime | None = None,
    image_pull_grace_seconds: float = 300,
    request_timeout: float | tuple[float, float] = (5.0, 30.0),
) -> Observation | None:
    """What the Job `namespace/name` and its pods say now, in the watcher's words (`Deleted` when
    there is no such Job). An image pull counts as failing since the pod was scheduled."""
    from shared.adapters.kubernetes_backend import api_error, is_not_found

    try:
        job = json.loads(batch_api.read_namespaced_job(name, namespace, _preload_content=False, _request_timeout=request_timeout).data)
    except Exception as exc:  # noqa: BLE001
        if is_not_found(exc):
            return Observation(state=DELETED, reason=None, message=f"the Kubernetes Job {namespace}/{name} does not exist")
        raise api_error(exc, f"read Job {namespace}/{name}") from exc
    match = ((job.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    selector = ",".join(f"{k}={v}" for k, v in sorted(match.items())) or f"job-name={name}"
    try:
        body = json.loads(core_api.list_namespaced_pod(namespace, label_selector=selector, _preload_content=False, _request_timeout=request_timeout).data)
    except Exception as exc:  # noqa: BLE001
        raise api_error(exc, f"list the pods of Job {namespace}/{name}") from exc
    pods = list(body.get("items") or [])
    first_seen = {_uid(p): when for p in pods if (when := scheduled_at(p)) is not None}
    observed = job_state(job, pods, now=now, first_seen=first_seen, image_pull_grace_seconds=image_pull_grace_seconds)
    if observed.state is None:
        return None
    return Observation(state=observed.state, reason=observed.reason, message=observed.message, exit_code=observed.exit_code)


def build_api_client(settings: Any) -> Any:
    """The `ApiClient` for the watcher: `K8S_KUBECONFIG` (+ `K8S_CONTEXT`), else in-cluster config."""
    from shared.adapters.kubernetes_backend import KubernetesConfig, load_api_client

    return load_api_client(KubernetesConfig(namespace=settings.k8s_namespace, kubeconfig=settings.k8s_kubeconfig, context=settings.k8s_context))
