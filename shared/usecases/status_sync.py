"""status_sync: applies `training-events` (the backends' and the trainer's reports) to the store.

It writes what a running job reports: status, reason, progress, log lines, the timeline. It is not the
only writer of a job (the api creates and cancels, the launcher submits, reconcile repairs); every
writer goes through the same store seam (`JobStore.apply` / `update`, planned by `lifecycle.plan`).

Decide, then act: `shared.domain.translate.job_after_event` is pure; this shell runs it inside the store's
compare-and-set (`JobStore.apply`), so a job's state and the log lines that came with it are written
together, once. Redelivered, late or reordered events never move a job backwards or duplicate a line.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping

from shared.domain.backend import BackendKind, BackendRules
from shared.domain.events import TrainingEvent, from_message
from shared.domain.job import Job, LogLine
from shared.domain.lifecycle import TimelineEvent
from shared.domain.translate import Decision, job_after_event
from shared.errors import PlatformError, TransientError
from shared.messages import Message
from shared.ports import Backend, Clock, JobStore, SystemClock

log = logging.getLogger(__name__)


class StatusSync:
    def __init__(
        self,
        *,
        store: JobStore,
        max_log_chars: int,
        rules: Mapping[str, BackendRules],
        clock: Clock | None = None,
        backends: Mapping[BackendKind, Backend] | None = None,
    ):
        """`rules`: every backend's, by name (how its events read; `Settings.backend_rules()`).
        `backends`: whose `release` is called once a job is final (its per-job secrets freed)."""
        self.store = store
        self.rules = dict(rules)
        self.max_log_chars = max_log_chars
        self.clock = clock or SystemClock()
        self.backends = dict(backends or {})

    def handle(self, message: Message) -> Job | None:
        now = self.clock.now()
        event: TrainingEvent | None
        foreign = next(((kind, f) for kind, rules in self.rules.items() if (f := rules.foreign_event(message.data, now)) is not None), None)
        if foreign is not None:
            # A backend's own message (Vertex's log entries): its id of the job finds ours.
            kind, read = foreign
            job = self.store.find_by_external_key(kind, read.external_id) if read.external_id and read.event else None
            if read.event is None or job is None:
                log.info("%s message for no job of ours: acked", kind)
                return None
            event = dataclasses.replace(read.event, job_id=job.id)
        else:
            event = from_message(message.data, now)
        if event is None:
            log.warning("training event without a job id: acked (%s)", message.id)
            return None
        return self.apply_event(event)

    def apply_event(self, event: TrainingEvent) -> Job | None:
        now = self.clock.now()
        decided: list[Decision] = []
        was_terminal: list[bool] = []

        def run(job: Job) -> tuple[Job | None, tuple[LogLine, ...], tuple[TimelineEvent, ...]]:
            d = job_after_event(job, event, now, self.rules)
            decided[:] = [d]
            was_terminal[:] = [job.is_terminal()]
            timeline: tuple[TimelineEvent, ...] = ()
            if d.transition is not None and d.job is not None:
                old, new = d.transition
                timeline = (
                    TimelineEvent(
                        at=event.observed_at,
                        kind="status",
                        data={"from": old.value, "to": new.value, "reason": d.job.status_reason, "source": event.source, "state": event.state},
                    ),
                )
            return d.job, d.lines, timeline

        # One commit: the job's new state, its new log lines and the timeline entry, or nothing.
        job = self.store.apply(event.job_id, run, self.max_log_chars)
        if job is None:
            log.warning("event for unknown job %s: acked", event.job_id)
            return None
        d = decided[0] if decided else None
        if d is not None and d.transition is not None:
            log.info("job %s: %s -> %s (%s, from %s)", job.id, d.transition[0].value, d.transition[1].value, job.status_reason, event.source)
        # Free what the job held while it ran, after its final status is written (never instead of it):
        # when this event made it final, and again on a state event for a job already final — the
        # redelivery of an event whose release failed. Log lines alone don't ask again.
        if job.is_terminal() and (not (was_terminal and was_terminal[0]) or event.state):
            self._release(job)
        return job

    def _release(self, job: Job) -> None:
        backend = self.backends.get(job.backend)
        release = getattr(backend, "release", None)
        if release is None:
            return
        try:
            release(job)
        except TransientError:
            # The status is written; raising makes the bus redeliver the event, which asks again (and
            # reconcile's sweep of `held()` catches whatever is still left).
            log.warning("job %s: releasing its %s resources failed: retried", job.id, job.backend.value)
            raise
        except PlatformError as exc:
            log.error("job %s: releasing its %s resources failed: %s (reconcile retries)", job.id, job.backend.value, exc)
