"""The launcher's use case: turn a queued job into exactly one submission on its backend.

Exactly once, with at-least-once delivery:
- `queued -> submitting` is a compare-and-set that also reads the job: one that is already submitted,
  cancelling or terminal is skipped (ack); a job left `submitting` by a crash is submitted again,
  and the backend adopts what an earlier attempt created (every backend name derives from the job id);
- `TransientError` propagates (the message is redelivered with backoff); `PermanentError` marks the job
  `failed` with its reason and class, and the message is acked;
- a message for an unknown job is acked and logged;
- a store that can't be written (`StoreUnavailable`: a full disk) is transient like any other, and it never
  fails a job: out of retries, the launch is published again instead of dead-lettered into
  `failed / LaunchFailed` (the dead-letter write would fail too), so it goes on being retried and the job
  is launched as soon as the store takes writes again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from shared.domain.backend import BackendKind
from shared.domain.job import Job
from shared.domain.lifecycle import Change
from shared.domain.status import FailureClass, JobStatus
from shared.errors import PermanentError, StoreUnavailable
from shared.messages import Message
from shared.ports import Backend, Bus, Clock, JobStore, Submission, SystemClock
from shared.usecases.service import OP_CANCEL, OP_SUBMIT, mark_failed

log = logging.getLogger(__name__)
SOURCE = "launcher"  # who the timeline names for the launcher's transitions


def _begin(now: datetime) -> Callable[[Job], Change | None]:
    def mutate(job: Job) -> Change | None:
        if job.status is JobStatus.QUEUED and not job.cancel_requested:
            return Change(job.replace(status=JobStatus.SUBMITTING, updated_at=now), source=SOURCE)
        return None

    return mutate


def _submitted(submission: Submission, now: datetime) -> Callable[[Job], Change | None]:
    def done(current: Job) -> Change | None:
        changes: dict[str, Any] = {
            "external_id": submission.external_id,
            "command": submission.command or current.command,
            "manifest": submission.manifest,
            "dry_run": submission.dry_run,
            "updated_at": now,
        }
        if current.status is JobStatus.SUBMITTING:
            changes["status"] = JobStatus.SUBMITTED
            changes["status_reason"] = submission.status_reason
        elif current.external_id == submission.external_id:
            return None
        return Change(current.replace(**changes), source=SOURCE)

    return done


class Launcher:
    def __init__(
        self,
        *,
        store: JobStore,
        backends: Mapping[BackendKind, Backend],
        clock: Clock | None = None,
        bus: Bus | None = None,
        requests_topic: str | None = None,
    ):
        """`bus` / `requests_topic`: where a launch the store could not record is published again (the
        inline bus's dead letters); without them such a launch waits for reconcile."""
        self.store = store
        self.backends = dict(backends)
        self.clock = clock or SystemClock()
        self.bus = bus
        self.requests_topic = requests_topic

    def handle(self, message: Message) -> None:
        data = message.data if isinstance(message.data, dict) else {}
        job_id = data.get("job_id")
        op = data.get("op", OP_SUBMIT)
        if not isinstance(job_id, str):
            raise PermanentError("launch message without a job_id", reason="MalformedMessage")
        if op == OP_SUBMIT:
            self.submit(job_id, data.get("env") or {})
        elif op == OP_CANCEL:
            self.cancel(job_id)
        else:
            raise PermanentError(f"unknown op {op!r}", reason="MalformedMessage")

    def handle_batch(self, messages: Sequence[Message]) -> list[BaseException | None]:
        """Several messages at once (the inline bus's batches): the submits share one compare-and-set
        that claims their jobs and one that records their submissions; anything else goes through
        `handle`. One outcome per message: None (ack) or the exception to retry it with."""
        outcomes: list[BaseException | None] = [None] * len(messages)
        submits: dict[str, dict[str, str]] = {}
        index: dict[str, int] = {}
        for i, message in enumerate(messages):
            data = message.data if isinstance(message.data, dict) else {}
            job_id = data.get("job_id")
            if data.get("op", OP_SUBMIT) == OP_SUBMIT and isinstance(job_id, str) and job_id not in submits:
                submits[job_id] = data.get("env") or {}
                index[job_id] = i
                continue
            try:
                self.handle(message)
            except Exception as exc:  # noqa: BLE001 - the bus decides: retry or dead-letter
                outcomes[i] = exc
        if submits:
            try:
                retry = self._submit_many(submits)[1]
            except Exception as exc:  # noqa: BLE001 - the store failed them all (claim or record): retry each
                retry = {job_id: exc for job_id in submits}
            for job_id, failure in retry.items():
                outcomes[index[job_id]] = failure
        return outcomes

    def submit(self, job_id: str, env: dict[str, str]) -> Job | None:
        jobs, retry = self._submit_many({job_id: env})
        if job_id in retry:
            raise retry[job_id]
        return jobs[job_id]

    def _submit_many(self, envs: Mapping[str, dict[str, str]]) -> tuple[dict[str, Job | None], dict[str, Exception]]:
        """Launch each job once. Returns every job as it now is, and the launches to retry with why."""
        # One compare-and-set both reads each job and claims it: queued -> submitting. A job already
        # `submitting` (an earlier attempt died mid-launch) is returned as it is and submitted again.
        claimed = self.store.update_many({job_id: _begin(self.clock.now()) for job_id in envs})
        retry: dict[str, Exception] = {}
        finish: dict[str, Callable[[Job], Change | None]] = {}
        for job_id, job in claimed.items():
            if job is None:
                log.warning("launch for unknown job %s: acked", job_id)
                continue
            if job.status is not JobStatus.SUBMITTING or job.cancel_requested:
                log.info("job %s is %s: nothing to launch", job_id, job.status)
                continue
            backend = self.backends.get(job.backend)
            try:
                if backend is None:
                    raise PermanentError(
                        f"the {job.backend.value} backend is not available in this deployment",
                        reason="BackendUnavailable",
                        failure_class=FailureClass.INFRA.value,
                    )
                submission = backend.submit(job, envs[job_id])
            except PermanentError as exc:
                fc = FailureClass(exc.failure_class) if exc.failure_class else FailureClass.USER
                log.error("job %s failed permanently at launch: %s", job_id, exc)
                finish[job_id] = mark_failed(exc.reason, str(exc), fc, self.clock.now(), source=SOURCE)
                continue
            except Exception as exc:  # noqa: BLE001 - transient (or unknown): the message is retried
                retry[job_id] = exc
                continue
            finish[job_id] = _submitted(submission, self.clock.now())
        jobs = dict(claimed)
        if finish:
            known = {job_id: current for job_id, current in claimed.items() if job_id in finish and current is not None}
            for job_id, job in self.store.update_many(finish, known=known).items():
                jobs[job_id] = job
                backend = self.backends.get(job.backend) if job is not None else None
                if job is not None and job.status is JobStatus.CANCELLING and backend is not None:
                    backend.cancel(job)  # a cancel arrived while it was being submitted
        return jobs, retry

    def cancel(self, job_id: str) -> Job | None:
        """Stop what the backend runs. Messages of one job arrive in order (ordering key = job id), so a
        cancel is handled after the submit that preceded it: no external id now means nothing runs."""
        job = self.store.get(job_id)
        if job is None or job.is_terminal() or not job.cancel_requested:
            return job
        backend = self.backends.get(job.backend)
        stopped: bool | None = None
        if backend is not None and job.external_id and not job.dry_run:
            stopped = backend.cancel(job)
        if stopped is None and job.external_id and not job.dry_run:
            return job  # the backend's own events (or reconcile) will report `cancelled`
        now = self.clock.now()

        def done(current: Job) -> Change | None:
            if current.is_terminal():
                return None
            return Change(current.replace(status=JobStatus.CANCELLED, status_reason="Cancelled", finished_at=now, updated_at=now), source=SOURCE)

        return self.store.update(job_id, done)

    def dead_letter(self, message: Message, exc: BaseException) -> None:
        """Out of retries: the job fails with the reason instead of waiting forever, unless the store
        was the reason or can't record the failure: a storage hiccup is never a failed job, so the
        launch is published again and retried until the store takes it."""
        data = message.data if isinstance(message.data, dict) else {}
        job_id = data.get("job_id")
        if not isinstance(job_id, str):
            return
        if not isinstance(exc, StoreUnavailable):
            try:
                self.store.update(
                    job_id,
                    mark_failed(
                        "LaunchFailed", f"launch failed after {message.delivery_attempt} attempts: {exc}", FailureClass.INFRA, self.clock.now(), source=SOURCE
                    ),
                )
                return
            except StoreUnavailable as write_failed:
                exc = write_failed
        self._relaunch(message, job_id, exc)

    def _relaunch(self, message: Message, job_id: str, exc: BaseException) -> None:
        if self.bus is None or self.requests_topic is None:
            log.error("launch of job %s not recorded (%s): it stays as stored until reconcile publishes it again", job_id, exc)
            return
        log.warning("launch of job %s not recorded after %d attempts (%s): published again", job_id, message.delivery_attempt, exc)
        # The same data (the env's secret values travel only in this message), in the job's order.
        attributes = {**message.attributes, "relaunch": "store-unavailable"}
        self.bus.publish(self.requests_topic, message.data, attributes=attributes, ordering_key=message.ordering_key or job_id)
