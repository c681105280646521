"""The cluster watcher's reaction: what a change of one of our Jobs or Pods means for the platform,
published as `training-events` (the list/watch protocol that feeds it is `watch.py`; the threads are
`watcher.py`).

- What a job's objects mean is decided in one pure place (`shared/domain/k8s_observe.py`); a state is
  published only when the (state, reason) differs from the last published for that job, and never a
  step back (`STATE_ORDER`). A restarted watcher has no memory: it publishes each job's current state once
  more, with the same `event_id` (`<Job uid>:<state>:<reason>`) as the first time, so status_sync drops
  it as a redelivery.
- A several-node job (an Indexed Job) has one pod per node; its state is read index by index.
- An image pull (or container config) that keeps failing is reported `Waiting`, then `Failed` after
  `image_pull_grace_seconds` since this process first saw it waiting: a bounded wait, checked by
  `tick()` with the injected clock, so tests move time instead of sleeping.
- Every started pod gets a log follower (`logs.py`); `tick()` flushes due batches and drains the
  followers of pods that are gone.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime
from typing import Any

from shared.adapters.kubernetes.logs import SOURCE, LogContext, LogFollower
from shared.adapters.kubernetes.watch import Change, ResourceWatch, not_older, uid_of
from shared.domain.events import TrainingEvent
from shared.domain.k8s_observe import (
    PENDING,
    RUNNING,
    TERMINAL_STATES,
    WAITING,
    ObservedState,
    deleted_state,
    has_started,
    image_pull_reason,
    job_id_of,
    job_state,
    owner_job_uid,
)
from shared.ports import Clock

log = logging.getLogger(__name__)

JOBS, PODS = "jobs", "pods"
MEMO_LIMIT = 10_000  # job ids whose last published state is remembered (oldest forgotten first)
CATCH_UP_ATTEMPTS = 5  # reads of a failed Job's pods before its failure is reported with the Job's reason

# How far along a Kubernetes state word is (not a job status, not a torch rank); the watcher never
# publishes a step back (see `_evaluate`).
STATE_ORDER = {PENDING: 1, WAITING: 1, RUNNING: 2, **{state: 3 for state in TERMINAL_STATES}}


def _says_failed(job: dict[str, Any]) -> bool:
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") in ("Failed", "FailureTarget") and str(cond.get("status")) == "True":
            return bool(cond.get("reason") != "DeadlineExceeded")
    return False


class JobReaction:
    """Keeps what the watches delivered (Jobs and Pods by uid) and publishes each job's state when it
    changes. Called from both watch threads and the ticker: `_lock` guards all of the state below (a
    job's state reads its Job and its pods together, so one lock, not one per resource)."""

    def __init__(
        self,
        core: Any,
        namespace: str,
        publish: Callable[[dict[str, Any]], Any],
        clock: Clock,
        log_context: LogContext,
        pods_watch: ResourceWatch,
        *,
        image_pull_grace_seconds: float,
        connect_timeout: float,
        log_drain_seconds: float,
        follow_logs: bool,
    ):
        self.core = core
        self.namespace = namespace
        self.publish = publish
        self.clock = clock
        self._log_context = log_context
        self._pods_watch = pods_watch
        self.image_pull_grace_seconds = image_pull_grace_seconds
        self.connect_timeout = connect_timeout
        self.log_drain_seconds = log_drain_seconds
        self.follow_logs = follow_logs
        self.states_published = 0
        self._lock = threading.Lock()
        self._objects: dict[str, dict[str, dict[str, Any]]] = {JOBS: {}, PODS: {}}  # resource -> uid -> object
        self._published: OrderedDict[str, tuple[str, str | None]] = OrderedDict()  # job id -> (state, reason)
        self._pull_seen: dict[str, datetime] = {}  # pod uid -> first seen waiting on an image pull
        self._followers: dict[str, LogFollower] = {}
        self._tombstones: dict[str, dict[str, Any]] = {}  # job id -> its deleted Job, until that is published
        self._catch_up_failures: dict[str, int] = {}  # Job uid -> failed reads of its pods

    @property
    def stopped(self) -> bool:
        return self._log_context.stop_event.is_set()

    def followers(self) -> list[LogFollower]:
        with self._lock:
            return list(self._followers.values())

    def start(self, jobs: list[dict[str, Any]], pods: list[dict[str, Any]]) -> None:
        """After the initial lists: evaluate every job once and follow every started pod."""
        with self._lock:
            self._objects[JOBS] = {uid_of(o): o for o in jobs}
            self._objects[PODS] = {uid_of(o): o for o in pods}
            for job_id in self._known_job_ids():
                self._evaluate(job_id)
            for pod in self._objects[PODS].values():
                self._maybe_follow(pod)

    def deliver(self, resource: str, changes: list[Change]) -> None:
        with self._lock:
            for change in changes:
                self._on_event(resource, change.kind, change.obj)

    # ---- events -> state -------------------------------------------------------------------------
    def _on_event(self, resource: str, kind: str, obj: dict[str, Any]) -> None:
        uid = uid_of(obj)
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
            if not not_older(obj, self._objects[PODS].get(uid)):
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
            uid = uid_of(pod)
            if image_pull_reason(pod):
                self._pull_seen.setdefault(uid, now)
            else:
                self._pull_seen.pop(uid, None)
        if deleted is not None:
            observed = deleted_state(deleted, pods, now=now, first_seen=self._pull_seen, image_pull_grace_seconds=self.image_pull_grace_seconds)
        elif job is None and not pods:
            return
        else:
            observed = job_state(job, pods, now=now, first_seen=self._pull_seen, image_pull_grace_seconds=self.image_pull_grace_seconds)
        if observed.state is None or (observed.state, observed.reason) == last:
            return
        if last is not None and STATE_ORDER.get(observed.state, 0) < STATE_ORDER.get(last[0], 0):
            # Back to Pending after Running (a retry's back-off, or pods seen gone before their Job):
            # nothing downstream can move backwards, so saying it would only be noise.
            return
        anchor = deleted or job
        job_uid = uid_of(anchor) if anchor else next((owner_job_uid(p) for p in pods if owner_job_uid(p)), None) or job_id
        self._send_state(job_id, job_uid, observed, now)

    def _send_state(self, job_id: str, job_uid: str, observed: ObservedState, now: datetime) -> None:
        assert observed.state is not None  # _evaluate sends only a state
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
        pods = [p for p in self._objects[PODS].values() if owner_job_uid(p) == uid_of(job)]
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
            attempts = self._catch_up_failures.get(uid_of(job), 0) + 1
            self._catch_up_failures[uid_of(job)] = attempts
            log.warning("reading the pods of Job %s failed (attempt %d): %s", (job.get("metadata") or {}).get("name"), attempts, exc)
            # A few ticks' worth of tries, then report with what we have: a failure is never held back for long.
            return attempts >= CATCH_UP_ATTEMPTS
        self._catch_up_failures.pop(uid_of(job), None)
        for pod in items:
            uid = uid_of(pod)
            if uid and not_older(pod, self._objects[PODS].get(uid)):
                self._objects[PODS][uid] = pod
        self._pods_watch.saw(items)  # so a re-list of the pods knows of them too
        return True

    # ---- logs ------------------------------------------------------------------------------------
    def _maybe_follow(self, pod: dict[str, Any]) -> None:
        if not self.follow_logs or self.stopped or not has_started(pod):
            return
        uid = uid_of(pod)
        current = self._followers.get(uid)
        if current is not None and (current.alive or current.done or current.retired_at is not None):
            return
        job_id = self._pod_job_id(pod)
        if not job_id:
            return
        follower = LogFollower(self._log_context, pod, job_id)
        if current is not None:  # its thread gave up (errors): carry on from where it was
            follower.emitted, follower.buffer = current.emitted, current.buffer
        self._followers[uid] = follower
        follower.start()

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
