"""`GET /openapi.json`, generated from the pydantic models (the request model is the domain's own)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import models_json_schema

from shared.domain.request import TrainRequestBody
from shared.domain.studio_schema import StudioTrainRequest
from shared.domain.status import FailureClass, JobStatus


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


class JobSummary(BaseModel):
    model_config = ConfigDict(title="Job")
    id: str
    name: str
    backend: Literal["kubernetes", "vertex", "local"]
    externalId: str | None
    status: JobStatus
    statusReason: str | None
    failureClass: FailureClass | None
    createdAt: str
    updatedAt: str
    startedAt: str | None
    finishedAt: str | None
    exitCode: int | None
    command: str | None
    args: list[str]
    modelId: str | None
    outputDir: str
    datasetFile: str = Field(description="The (first) dataset source.")
    datasetFiles: list[str] = Field(default_factory=list, description="Every dataset source, in order.")
    uploadOutputTo: str | None
    env: dict[str, str] = Field(description="Names of the secret variables; values are always redacted.")
    labels: dict[str, str]
    webhooks: list[str] = Field(default_factory=list, description="The job's own webhook URLs (without their query strings).")
    callback: dict[str, str] | None = Field(None, description="The studio's status callback: {kind, url} (without its query string; never its Authorization).")
    resources: dict[str, Any] = Field(
        default_factory=dict, description="What the request's `resources` asked for (gpus, gpu_type, nodes, cpus, memory_gb, max_duration_minutes); unset: the settings."
    )
    error: str | None
    logTail: str
    logCount: int
    progress: dict[str, Any] | None
    dryRun: bool
    cancelRequested: bool


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
    configErrors: list[str]


def _json_response(ref: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}}}


ERR = {
    "400": _json_response("ErrorBody", "Invalid request: each offending field is named."),
    "401": _json_response("ErrorBody", "Missing or invalid bearer token (when API_TOKENS is set)."),
}


# The README's Kubernetes example (a request the api accepts when K8S_TRAINING_IMAGE is set).
TRAIN_EXAMPLE = {
    "backend": "kubernetes",
    "job_name": "aml-qlora-k8s",
    "model": "meta-llama/Llama-3.2-3B-Instruct",
    "dataset_file": "s3://my-bucket/jobs/job-123/data.jsonl",
    "output_dir": "/tmp/model",
    "upload_output_to": "gs://finery-training/models/job-123",
    "trainer_args": {"num_train_epochs": 2, "per_device_train_batch_size": 2, "gradient_accumulation_steps": 8},
    "env": {"HF_TOKEN": "hf_xxx"},
}


def _query(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    # The api reads an empty query value (`?status=`) as "not given", so the document admits it.
    return {"name": name, "in": "query", "allowEmptyValue": True, "schema": schema}


@lru_cache(maxsize=1)
def openapi_document() -> dict[str, Any]:
    models = [TrainRequestBody, StudioTrainRequest, ErrorBody, JobEnvelope, JobDetailEnvelope, JobList, Health, EventList, MetricList, ManifestModel]
    _, defs = models_json_schema([(m, "validation") for m in models], ref_template="#/components/schemas/{model}")
    schemas = defs.get("$defs", {})
    job_id = {"name": "id", "in": "path", "required": True, "schema": {"type": "string", "pattern": "^[A-Za-z0-9_.\\-]{1,128}$"}}
    return {
        "openapi": "3.0.3",
        "info": {"title": "Training platform API", "version": "1.0.0"},
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
        "paths": {
            "/health": {
                "get": {"security": [], "responses": {"200": _json_response("Health", "Service status."), "503": _json_response("Health", "A dependency is down.")}}
            },
            "/train": {
                "post": {
                    "parameters": [{"name": "Idempotency-Key", "in": "header", "required": False, "schema": {"type": "string", "maxLength": 255}}],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {
                            "schema": {"oneOf": [{"$ref": "#/components/schemas/TrainRequestBody"}, {"$ref": "#/components/schemas/StudioTrainRequest"}]},
                            "example": TRAIN_EXAMPLE,
                        }},
                    },
                    "responses": {
                        "202": _json_response("JobEnvelope", "Accepted and queued."),
                        **ERR,
                        "409": _json_response("ErrorBody", "Idempotency-Key reused with another body."),
                        "413": _json_response("ErrorBody", "Body over the size limit."),
                        "415": _json_response("ErrorBody", "Not JSON."),
                        "503": _json_response("ErrorBody", "Stored but could not be queued (the job is marked failed)."),
                    },
                }
            },
            "/jobs": {
                "get": {
                    "parameters": [
                        _query("limit", {"type": "integer", "minimum": 1, "maximum": 500}),
                        _query("cursor", {"type": "string"}),
                        _query("status", {"type": "string", "enum": [s.value for s in JobStatus]}),
                        _query("backend", {"type": "string", "enum": ["kubernetes", "vertex", "local"]}),
                        _query("name", {"type": "string"}),
                        _query("label", {"type": "string", "pattern": "^[^=]+=.*$"}),
                    ],
                    "responses": {"200": _json_response("JobList", "Newest first, without logs."), **ERR},
                }
            },
            "/jobs/{id}": {
                "get": {
                    "parameters": [
                        job_id,
                        _query("logs_after", {"type": "integer", "minimum": 0}),
                        _query("logs_limit", {"type": "integer", "minimum": 1, "maximum": 5000}),
                    ],
                    "responses": {"200": _json_response("JobDetailEnvelope", "The job with a page of its logs."), **ERR, "404": _json_response("ErrorBody", "No such job.")},
                }
            },
            "/jobs/{id}/events": {
                "get": {
                    "parameters": [job_id, _query("after", {"type": "integer", "minimum": 0}), _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000})],
                    "responses": {"200": _json_response("EventList", "The job's timeline, oldest first."), **ERR, "404": _json_response("ErrorBody", "No such job.")},
                }
            },
            "/jobs/{id}/metrics": {
                "get": {
                    "parameters": [job_id, _query("after", {"type": "integer", "minimum": 0}), _query("limit", {"type": "integer", "minimum": 1, "maximum": 5000})],
                    "responses": {"200": _json_response("MetricList", "Every PROGRESS point of the job, oldest first (nextAfter: the next page's after)."), **ERR, "404": _json_response("ErrorBody", "No such job.")},
                }
            },
            "/jobs/{id}/manifest": {
                "get": {
                    "parameters": [job_id],
                    "responses": {"200": _json_response("ManifestModel", "What the launcher created or would create."), **ERR, "404": _json_response("ErrorBody", "No such job.")},
                }
            },
        },
    }
