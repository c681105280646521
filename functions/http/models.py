"""The api's response models (pydantic): the OpenAPI document's schemas and the client's types.

The job itself (`JobSummary`) is the domain's (`shared/domain/job.py`), the one definition that
`Job.to_summary()` also builds from; the request models are the domain's too (`TrainRequestBody`,
`StudioTrainRequest`).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.domain.job import JobSummary as JobSummary  # re-exported: the client reads every model from here
from shared.domain.status import JobStatus


class FieldErrorModel(BaseModel):
    field: str
    message: str


class ErrorBody(BaseModel):
    error: str = Field(description="One sentence saying what went wrong.")
    errors: list[FieldErrorModel] | None = Field(None, description="Each offending field (validation errors).")


class LogLineModel(BaseModel):
    seq: int
    timestamp: str
    stream: str
    message: str


class JobDetail(JobSummary):
    model_config = ConfigDict(title="JobDetail")
    logs: list[LogLineModel]
    logsNextAfter: int | None


class JobEnvelope(BaseModel):
    job: JobSummary


class JobDetailEnvelope(BaseModel):
    job: JobDetail


class JobList(BaseModel):
    jobs: list[JobSummary]
    nextCursor: str | None


class LogPage(BaseModel):
    logs: list[LogLineModel]
    nextAfter: int
    status: JobStatus
    final: bool


class TimelineEventModel(BaseModel):
    model_config = ConfigDict(title="TimelineEvent")
    seq: int
    at: str
    kind: str
    data: dict[str, Any]


class EventList(BaseModel):
    events: list[TimelineEventModel]
    nextAfter: int | None


class MetricPointModel(BaseModel):
    """One `PROGRESS` point of a job's training curve (`GET /jobs/{id}/metrics`)."""

    model_config = ConfigDict(title="MetricPoint")
    seq: int
    at: str = Field(description="When the trainer reported it (RFC 3339).")
    event: str = Field(description="The trainer's event: step, eval, done, ...")
    step: int | None = None
    totalSteps: int | None = None
    epoch: float | None = None
    loss: float | None = None
    evalLoss: float | None = None
    learningRate: float | None = None
    gradNorm: float | None = None
    tokensPerSecond: float | None = None
    etaSeconds: float | None = None


class MetricList(BaseModel):
    metrics: list[MetricPointModel]
    nextAfter: int | None


class ManifestModel(BaseModel):
    model_config = ConfigDict(title="Manifest")
    backend: str
    dryRun: bool
    objects: list[dict[str, Any]] = Field(description="Every object created (or, on a dry run, that would be); secret values redacted.")


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    defaultBackend: str
    backends: dict[str, dict[str, Any]]
    store: str
    bus: str
    checks: dict[str, str]
    auth: dict[str, Any] = Field(description="{enabled, problem}: whether API_TOKENS is set, and what is wrong with it.")
    configErrors: list[str]


class DeliveryModel(BaseModel):
    """One webhook delivery attempt (`GET /jobs/{id}/deliveries`)."""

    model_config = ConfigDict(title="Delivery")
    id: str = Field(description="Sortable within the job: the page cursor (`after`).")
    jobId: str
    notificationId: str
    notificationSeq: int
    subscriber: str
    url: str
    attempt: int
    at: str
    verdict: str
    statusCode: int | None
    durationMs: float
    error: str | None


class SubscriberModel(BaseModel):
    model_config = ConfigDict(title="Subscriber")
    subscriber: str
    url: str = Field(description="Without its query string.")
    state: str
    deliveredThrough: int = Field(description="The seq of the last notification finished with.")
    attempt: int
    nextAttemptAt: str | None
    lastError: str | None


class DeliveryList(BaseModel):
    deliveries: list[DeliveryModel]
    subscribers: list[SubscriberModel]
    nextAfter: str | None


class AcceptedItem(BaseModel):
    id: str
    name: str
    status: JobStatus


class RejectionModel(BaseModel):
    model_config = ConfigDict(title="Rejection")
    batchId: str
    index: int = Field(description="The item's position in the batch (-1: the whole message).")
    idempotencyKey: str
    error: str
    errors: list[FieldErrorModel]
    at: str | None
    messageId: str


class Submission(BaseModel):
    batchId: str
    accepted: list[AcceptedItem]
    rejections: list[RejectionModel]


class OpenApiDocument(BaseModel):
    """This document (`GET /openapi.json`)."""

    model_config = ConfigDict(extra="allow")
    openapi: str
    info: dict[str, Any]
    paths: dict[str, Any]
    components: dict[str, Any]
