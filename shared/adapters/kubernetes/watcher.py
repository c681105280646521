"""The cluster watcher: follows our Jobs and Pods (by label) and their logs, and publishes what changes
to `training-events` (entry point: `python -m functions.watcher`, deployed by `infra/k8s/watcher.yaml`).

This module is the wiring and the threads; the parts are `watch.py` (each resource's list-then-watch:
resourceVersion, 410 Gone -> re-list, bookmarks), `reaction.py` (what a change means, published) and
`logs.py` (one follower per started pod).

Threads: a supervisor (initial lists, then it starts the rest), one watch loop per resource, a ticker
(grace deadlines, retries of failed publishes, time-based log flushes) and the log followers. `stop()`
ends them all: it sets a flag and shuts down the sockets of in-flight streams.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from shared.adapters.kubernetes.logs import LogContext
from shared.adapters.kubernetes.reaction import JOBS, PODS, JobReaction
from shared.adapters.kubernetes.watch import ResourceWatch
from shared.domain import naming
from shared.ports import Clock

log = logging.getLogger(__name__)

DEFAULT_SELECTOR = f"{naming.K8S_MANAGED_BY_LABEL}={naming.MANAGED_BY}"

Publish = Callable[[dict[str, Any]], Any]


class ClusterWatcher:
    """Watches the Jobs and Pods with our label in `namespace` and publishes `training-events`
    envelopes (dicts) through `publish`. `start()` / `stop()` / `join()`; `run()` blocks until stopped."""

    def __init__(
        self,
        api_client: Any,
        namespace: str,
        publish: Publish,
        *,
        clock: Clock,
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
        self.label_selector = label_selector
        self.tick_seconds = tick_seconds
        self.retry_seconds = retry_seconds
        self.max_retry_seconds = max_retry_seconds
        self.connect_timeout = connect_timeout
        self.batch = client.BatchV1Api(api_client)
        self.core = client.CoreV1Api(api_client)
        self._stop = threading.Event()
        self._synced = threading.Event()
        self._threads: list[threading.Thread] = []
        # Counters (logs and tests): watches started (resource, from rv), log batches published.
        self.watch_starts: list[tuple[str, str | None]] = []
        self.log_batches_published = 0

        self._watches = {
            resource: ResourceWatch(
                resource,
                call,
                namespace,
                label_selector,
                self._stop,
                watch_timeout_seconds=max(1, int(watch_timeout_seconds)),
                connect_timeout=connect_timeout,
                retry_seconds=retry_seconds,
                max_retry_seconds=max_retry_seconds,
                watch_starts=self.watch_starts,
            )
            for resource, call in ((JOBS, self.batch.list_namespaced_job), (PODS, self.core.list_namespaced_pod))
        }
        self._log_context = LogContext(
            core=self.core,
            namespace=namespace,
            clock=clock,
            publish=publish,
            stop_event=self._stop,
            on_batch=self._count_log_batch,
            log_batch_lines=max(1, int(log_batch_lines)),
            log_batch_seconds=log_batch_seconds,
            retry_seconds=retry_seconds,
            max_retry_seconds=max_retry_seconds,
            connect_timeout=connect_timeout,
            log_read_timeout=log_read_timeout,
        )

        self._reaction = JobReaction(
            self.core,
            namespace,
            publish,
            clock,
            self._log_context,
            self._watches[PODS],
            image_pull_grace_seconds=image_pull_grace_seconds,
            connect_timeout=connect_timeout,
            log_drain_seconds=log_drain_seconds,
            follow_logs=follow_logs,
        )

    @property
    def lists(self) -> dict[str, int]:
        """Lists done per resource (the initial one and every re-list)."""
        return {resource: w.lists for resource, w in self._watches.items()}

    def _count_log_batch(self) -> None:
        self.log_batches_published += 1

    # ---- lifecycle -------------------------------------------------------------------------------
    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def start(self) -> ClusterWatcher:
        thread = threading.Thread(target=self._supervise, name="watcher", daemon=True)
        self._threads.append(thread)
        thread.start()
        return self

    def wait_synced(self, timeout: float) -> bool:
        return self._synced.wait(timeout)

    def stop(self) -> None:
        """End every loop: the watches and log streams are cut, buffered log lines are flushed."""
        self._stop.set()
        for w in self._watches.values():
            w.stop()
        for f in self._reaction.followers():
            f.stop()

    def join(self, timeout: float = 10.0) -> bool:
        """Wait for the threads to end; False if some are still running after `timeout`."""
        deadline = time.monotonic() + timeout
        for thread in list(self._threads):
            thread.join(max(0.0, deadline - time.monotonic()))
        followers = self._reaction.followers()
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
        targets: list[tuple[Callable[[], None], str]] = [
            (lambda: self._watches[JOBS].run(lambda changes: self._reaction.deliver(JOBS, changes)), "watch-jobs"),
            (lambda: self._watches[PODS].run(lambda changes: self._reaction.deliver(PODS, changes)), "watch-pods"),
            (self._tick_loop, "ticker"),
        ]
        for target, name in targets:
            thread = threading.Thread(target=target, name=name, daemon=True)
            self._threads.append(thread)
            thread.start()

    @property
    def follow_logs(self) -> bool:
        return self._reaction.follow_logs

    @follow_logs.setter
    def follow_logs(self, value: bool) -> None:
        self._reaction.follow_logs = value

    @property
    def states_published(self) -> int:
        return self._reaction.states_published

    def _initial_sync(self) -> None:
        jobs = self._watches[JOBS].list_all()
        pods = self._watches[PODS].list_all()
        self._reaction.start(jobs, pods)
        log.info("watching %d Jobs and %d Pods in %s (%s)", len(jobs), len(pods), self.namespace, self.label_selector)

    def _tick_loop(self) -> None:
        while not self._stop.wait(self.tick_seconds):
            try:
                self.tick()
            except Exception:  # noqa: BLE001 - a bad tick must not end the ticker
                log.exception("watcher tick failed")

    def tick(self) -> None:
        """Deadlines (image-pull grace), retries of unpublished states, due log batches, drained followers."""
        self._reaction.tick()
