"""reconcile (scheduled): polls the backend for every non-terminal job and applies the truth.

For each job not updated for `min_age`:
- `queued` / `submitting`: the launch message may be lost (a crash between store and publish, or a
  launcher that died mid-submit): publish the submit op again; the launcher is idempotent.
- otherwise ask the backend (`Backend.observe`) and apply what it says as a `reconcile` event through
  status_sync's own decision, so the same mapping and compare-and-set hold.
- a job with no sign of life for `stale_after` is flagged `statusReason: Stale` — its status is never
  guessed: only evidence from the backend moves it.
- what a backend still holds for a job that is final (`Backend.held()`: Vertex's per-job secrets whose
  release failed, or whose submit died half-way) is released (`Backend.release`).
Dry runs are final and skipped.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from shared.domain.backend import BackendKind
from shared.domain.events import TrainingEvent
from shared.domain.job import Job
from shared.domain.status import JobStatus
from shared.errors import PlatformError
from shared.ports import Backend, Bus, Clock, JobStore, SystemClock
from shared.usecases.service import OP_SUBMIT, iter_jobs, publish_launch
from shared.usecases.status_sync import StatusSync

log = logging.getLogger(__name__)

ACTIVE = (JobStatus.QUEUED, JobStatus.SUBMITTING, JobStatus.SUBMITTED, JobStatus.RUNNING, JobStatus.CANCELLING)


@dataclass
class ReconcileReport:
    checked: int = 0
    relaunched: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    released: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "checked": self.checked,
            "relaunched": self.relaunched,
            "updated": self.updated,
            "stale": self.stale,
            "errors": self.errors,
            "released": self.released,
        }


class Reconciler:
    def __init__(
        self,
        *,
        store: JobStore,
        backends: Mapping[BackendKind, Backend],
        status_sync: StatusSync,
        bus: Bus,
        requests_topic: str,
        clock: Clock | None = None,
        min_age: timedelta = timedelta(minutes=2),
        stale_after: timedelta = timedelta(hours=1),
    ):
        self.store = store
        self.backends = dict(backends)
        self.status_sync = status_sync
        self.bus = bus
        self.requests_topic = requests_topic
        self.clock = clock or SystemClock()
        self.min_age = min_age
        self.stale_after = stale_after

    def run_once(self) -> ReconcileReport:
        report = ReconcileReport()
        now = self.clock.now()
        for status in ACTIVE:
            for job in iter_jobs(self.store, status, page_size=200):
                if job.dry_run or now - job.updated_at < self.min_age:
                    continue
                report.checked += 1
                try:
                    self._one(job, now, report)
                except PlatformError as exc:
                    report.errors[job.id] = f"{exc.__class__.__name__}: {exc}"
                    log.warning("reconcile of %s failed: %s", job.id, exc)
        self._release_held(report)
        log.info("reconcile: %s", report.to_dict())
        return report

    def _release_held(self, report: ReconcileReport) -> None:
        """Release what each backend still holds for a final job: the jobs that ended while nothing was
        listening, a release that failed, a submit that died between the secret and the job."""
        for kind, backend in self.backends.items():
            held, release = getattr(backend, "held", None), getattr(backend, "release", None)
            if held is None or release is None:
                continue
            try:
                job_ids = held()
            except PlatformError as exc:
                report.errors[f"{kind.value}:held"] = f"{exc.__class__.__name__}: {exc}"
                continue
            for job_id in job_ids:
                job = self.store.get(job_id)
                if job is None or not job.is_terminal():
                    continue  # still running (or not ours to judge): it needs what it holds
                try:
                    release(job)
                    report.released.append(job_id)
                except PlatformError as exc:
                    report.errors[job_id] = f"{exc.__class__.__name__}: {exc}"
                    log.warning("release of %s failed: %s", job_id, exc)

    def _one(self, job: Job, now: Any, report: ReconcileReport) -> None:
        if job.status in (JobStatus.QUEUED, JobStatus.SUBMITTING) and not job.cancel_requested:
            publish_launch(self.bus, self.requests_topic, job.id, OP_SUBMIT, reconcile="true")
            report.relaunched.append(job.id)
            return
        backend = self.backends.get(job.backend)
        # Asked even without an external id: every backend finds a job by its id (the name it derives
        # from it, the local run folder), and a crash between the launch and its record leaves exactly
        # such a job, which nothing else would ever finish.
        observation = backend.observe(job) if backend is not None else None
        if observation is not None and observation.state:
            event = TrainingEvent(
                job_id=job.id,
                source="reconcile",
                observed_at=now,
                state=observation.state,
                reason=observation.reason,
                message=observation.message,
                exit_code=observation.exit_code,
            )
            after = self.status_sync.apply_event(event)
            if after is not None and after.status is not job.status:
                report.updated.append(job.id)
                return
        last_sign = max(t for t in (job.last_event_at, job.updated_at, job.started_at) if t is not None)
        if now - last_sign > self.stale_after and job.status_reason != "Stale":
            quiet = int((now - last_sign).total_seconds())
            self.status_sync.apply_event(
                TrainingEvent(
                    job_id=job.id, source="reconcile", observed_at=job.last_event_at or job.updated_at, state="Stale", message=f"no sign of life for {quiet}s"
                )
            )
            report.stale.append(job.id)
