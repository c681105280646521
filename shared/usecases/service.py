"""Use cases shared by every entry point (HTTP api, batch `submit`, embedded server).

Thin orchestration over the ports: decide with the pure domain, then store, then publish. The HTTP
handler and the Pub/Sub batch handler call the same `submit_training`, so the rules exist once.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shlex
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared.domain import studio
from shared.domain.job import Job
from shared.domain.lifecycle import Change
from shared.domain.request import NormalisedRequest, RequestPolicy, normalise_request
from shared.domain.status import FailureClass, JobStatus
from shared.errors import Conflict, FieldError, NotFound, TransientError, ValidationFailed
from shared.ports import Bus, Clock, IdempotentCreate, JobQuery, JobStore, SystemClock

log = logging.getLogger(__name__)

OP_SUBMIT = "submit"
OP_CANCEL = "cancel"


def new_job_id() -> str:
    return str(uuid.uuid4())


class PublishFailed(Exception):
    """The job was stored but could not be handed to the launcher; it is now `failed` (api: 503)."""

    def __init__(self, job: Job, cause: Exception):
        super().__init__(f"could not queue job {job.id} for launch: {cause}")
        self.job = job


@dataclass(frozen=True)
class Submitted:
    job: Job
    created: bool


def launch_message(job_id: str, op: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """The message on `train-requests`. Secret values travel only here (never stored)."""
    msg: dict[str, Any] = {"job_id": job_id, "op": op}
    if env:
        msg["env"] = env
    return msg


def publish_launch(bus: Bus, topic: str, job_id: str, op: str, env: dict[str, str] | None = None, **attributes: str) -> str:
    """Publish a submit / cancel op for the launcher: keyed by the job id, so a job's ops arrive in order."""
    return bus.publish(topic, launch_message(job_id, op, env), attributes={"op": op, "job_id": job_id, **attributes}, ordering_key=job_id)


def iter_jobs(store: JobStore, status: JobStatus | None = None, *, label: tuple[str, str] | None = None, page_size: int = 500) -> Iterator[Job]:
    """Every job with that status (or label), newest first, page by page."""
    cursor = None
    while True:
        page = store.list(JobQuery(limit=page_size, status=status.value if status else None, label=label, cursor=cursor))
        yield from page.items
        if not page.next_cursor:
            return
        cursor = page.next_cursor


def display_command(args: tuple[str, ...] | list[str], entry: str = "train.py") -> str:
    return shlex.join([entry, *args])


def build_job(req: NormalisedRequest, *, job_id: str, now: datetime, idempotency_key: str | None, extra_labels: dict[str, str] | None = None) -> Job:
    labels = dict(req.labels)
    if extra_labels:
        labels.update(extra_labels)
    return Job(
        id=job_id,
        name=req.job_name or job_id,
        backend=req.backend,
        status=JobStatus.QUEUED,
        created_at=now,
        updated_at=now,
        dataset_file=req.dataset_file,
        output_dir=req.output_dir,
        args=req.args,
        model_id=req.model_id,
        upload_output_to=req.upload_output_to,
        env_names=req.env_names,
        labels=labels,
        webhooks=req.webhooks,
        resources=req.resources,
        callback=req.callback,
        command=display_command(req.args),
        idempotency_key=idempotency_key,
        request_hash=req.request_hash,
    )


def mark_failed(reason: str, message: str, failure_class: FailureClass, now: datetime, *, source: str) -> Callable[[Job], Change | None]:
    """A mutation: fail a non-terminal job (compare-and-set through JobStore.update); `source` is the
    writer the timeline names."""

    def mutate(job: Job) -> Change | None:
        if job.is_terminal() or not job.status.can_become(JobStatus.FAILED):
            return None
        return Change(
            job.replace(
                status=JobStatus.FAILED,
                status_reason=reason,
                error=message,
                failure_class=failure_class,
                finished_at=now,
                updated_at=now,
            ),
            source=source,
        )

    return mutate


class TrainingService:
    def __init__(
        self,
        *,
        store: JobStore,
        bus: Bus,
        policy: RequestPolicy,
        requests_topic: str,
        clock: Clock | None = None,
        id_factory: Callable[[], str] = new_job_id,
    ):
        self.store = store
        self.bus = bus
        if policy.resolve_links is None:
            # Local paths are checked after resolving symlinks (the roots too), not just lexically.
            backends = {kind: rules.resolved(os.path.realpath) for kind, rules in policy.backends.items()}
            policy = dataclasses.replace(policy, resolve_links=os.path.realpath, backends=backends)
        self.policy = policy
        self.requests_topic = requests_topic
        self.clock = clock or SystemClock()
        self.id_factory = id_factory

    def validate(self, body: Any) -> NormalisedRequest:
        """Either request shape (the studio's job spec is recognised by its own objects) -> one request."""
        if studio.is_studio_body(body):
            return studio.normalise_studio_request(body, self.policy)
        return normalise_request(body, self.policy)

    def submit_training(
        self,
        body: Any,
        *,
        idempotency_key: str | None = None,
        extra_labels: dict[str, str] | None = None,
        normalised: NormalisedRequest | None = None,
    ) -> Submitted:
        """Validate, store (queued), publish the launch. Raises ValidationFailed, Conflict, PublishFailed."""
        job, req = self.prepare(body, idempotency_key=idempotency_key, extra_labels=extra_labels, normalised=normalised)
        return self.finish_submission(req, self.store.create(job, job.idempotency_key))

    def prepare(
        self,
        body: Any,
        *,
        idempotency_key: str | None = None,
        extra_labels: dict[str, str] | None = None,
        normalised: NormalisedRequest | None = None,
    ) -> tuple[Job, NormalisedRequest]:
        """The first half of a submission, no I/O: validate and build the queued job to store. The job's
        idempotency key is the caller's (the Idempotency-Key header), else the body's (the studio's job_id)."""
        req = normalised or self.validate(body)
        if req.idempotency_key is not None:
            same = idempotency_key is None or idempotency_key in (req.idempotency_key, req.idempotency_key.removeprefix(studio.IDEMPOTENCY_PREFIX))
            if not same:
                raise ValidationFailed(
                    [FieldError("job_id", "is this run's idempotency key, and the Idempotency-Key header names another: send one, or the same")]
                )
            idempotency_key = req.idempotency_key
        job = build_job(req, job_id=self.id_factory(), now=self.clock.now(), idempotency_key=idempotency_key, extra_labels=extra_labels)
        return job, req

    def finish_submission(self, req: NormalisedRequest, result: IdempotentCreate) -> Submitted:
        """The second half, once the job is stored: publish its launch (not for a replayed key)."""
        if not result.created:
            return Submitted(result.job, created=False)
        job = result.job
        try:
            publish_launch(self.bus, self.requests_topic, job.id, OP_SUBMIT, req.env)
        except Exception as exc:  # noqa: BLE001 - whatever broke, the job must not sit unlaunched
            log.error("publish of job %s failed: %s", job.id, exc)
            failed = self.store.update(
                job.id,
                mark_failed("PublishFailed", f"could not queue the job for launch: {exc}", FailureClass.INFRA, self.clock.now(), source="api"),
            )
            raise PublishFailed(failed or job, exc) from exc
        return Submitted(job, created=True)

    def cancel(self, job_id: str) -> Job:
        """queued -> cancelled at once; otherwise cancelling + a cancel op for the launcher.
        Raises NotFound, Conflict (final job), TransientError (the cancel op could not be published)."""
        now = self.clock.now()

        def mutate(job: Job) -> Change | None:
            if job.is_final():
                what = "a dry run, which is final" if not job.is_terminal() else f"already {job.status.value}"
                raise Conflict(f"Job {job.id} can't be cancelled: it is {what}.")
            if job.status is JobStatus.QUEUED:
                return Change(
                    job.replace(status=JobStatus.CANCELLED, status_reason="Cancelled", cancel_requested=True, finished_at=now, updated_at=now), source="api"
                )
            if job.status is JobStatus.CANCELLING:
                return None
            return Change(job.replace(status=JobStatus.CANCELLING, status_reason="CancelRequested", cancel_requested=True, updated_at=now), source="api")

        job = self.store.update(job_id, mutate)
        if job is None:
            raise NotFound(f"Job {job_id} not found.")
        if job.status is JobStatus.CANCELLING:
            publish_launch(self.bus, self.requests_topic, job.id, OP_CANCEL)
        return job


__all__ = ["TrainingService", "Submitted", "PublishFailed", "TransientError", "launch_message", "OP_SUBMIT", "OP_CANCEL"]
