"""The route table: every route of the api is one row, from which both the dispatcher (`Router`, used by
`functions/http/api.py`) and `GET /openapi.json` (`functions/http/openapi.py`) are built.

A row says the method, the path (OpenAPI's template; each `{name}` is matched by `PATH_PARAMS[name]`),
the handler (a `Handlers` method, called with the path's parameters in order), the query parameters and
request body as OpenAPI objects, the answers per status (a model, or none for a stream) and whether a
token is needed. Adding a route is a row here and its handler in `functions/http/handlers.py`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from functions.http import models as m
from functions.http.handlers import DEFAULT_LIMIT, MAX_EVENT_PAGE, MAX_LIMIT, MAX_LOG_PAGE, Handlers
from functions.http.wire import MAX_SEQ, Response
from shared.domain.backend import NAME_PATTERN
from shared.domain.request import TrainRequestBody
from shared.domain.status import JobStatus
from shared.domain.studio_schema import StudioTrainRequest

# What each path parameter matches (the dispatcher's regex and the document's pattern alike).
PATH_PARAMS = {"id": r"[A-Za-z0-9_.\-]{1,128}", "batch_id": r"[^/]{1,256}"}


@dataclass(frozen=True)
class Answer:
    """One documented status of a route: its body's model (None: a stream, `content_type` says which)."""

    description: str
    model: type[BaseModel] | None = m.ErrorBody
    content_type: str = "application/json"
    # Another representation of the same status (the SSE stream of `GET /jobs/{id}/logs?follow=true`).
    also: Mapping[str, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Callable[..., Response]
    answers: Mapping[int, Answer]
    auth: bool = True
    query: tuple[dict[str, Any], ...] = ()
    headers: tuple[dict[str, Any], ...] = ()
    body: dict[str, Any] | None = None

    @property
    def path_params(self) -> list[str]:
        return re.findall(r"\{(\w+)\}", self.path)

    def regex(self) -> re.Pattern[str]:
        # `$` as the old hand-written patterns had it (it also matches before a final newline).
        return re.compile("^" + re.sub(r"\\\{(\w+)\\\}", lambda g: f"({PATH_PARAMS[g.group(1)]})", re.escape(self.path)) + "$")


def query(name: str, schema: dict[str, Any], description: str | None = None) -> dict[str, Any]:
    # The api reads an empty query value (`?status=`) as "not given", so the document admits it.
    param = {"name": name, "in": "query", "allowEmptyValue": True, "schema": schema}
    return param if description is None else {**param, "description": description}


def _seq(name: str) -> dict[str, Any]:
    return query(name, {"type": "integer", "minimum": 0, "maximum": MAX_SEQ})


def _limit(name: str, hi: int) -> dict[str, Any]:
    return query(name, {"type": "integer", "minimum": 1, "maximum": hi})


# The statuses every route behind a token can answer besides its own.
AUTHED = {
    401: Answer("Missing or invalid bearer token (when API_TOKENS is set)."),
    503: Answer("The job store is unavailable (retry after `Retry-After`), or API_TOKENS is set but unusable."),
}
BAD = {400: Answer("Invalid request: each offending field is named.")}
NO_JOB = {404: Answer("No such job.")}

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
TRAIN_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "oneOf": [{"$ref": f"#/components/schemas/{TrainRequestBody.__name__}"}, {"$ref": f"#/components/schemas/{StudioTrainRequest.__name__}"}]
            },
            "example": TRAIN_EXAMPLE,
        }
    },
}
# The models the request bodies name (the document lists them beside the answers' models).
REQUEST_MODELS: tuple[type[BaseModel], ...] = (TrainRequestBody, StudioTrainRequest)

H = Handlers
ROUTES: tuple[Route, ...] = (
    Route("GET", "/health", H.health, {200: Answer("Service status.", m.Health), 503: Answer("A dependency is down.", m.Health)}, auth=False),
    Route(
        "POST",
        "/train",
        H.train,
        {
            202: Answer("Accepted and queued.", m.JobEnvelope),
            **BAD,
            **AUTHED,
            409: Answer("Idempotency-Key (or the studio's job_id) reused with another body."),
            413: Answer("Body over the size limit."),
            503: Answer(
                "Stored but could not be queued (the job is marked failed and returned in `job`), the store is unavailable, or API_TOKENS is set but unusable."
            ),
        },
        headers=({"name": "Idempotency-Key", "in": "header", "required": False, "schema": {"type": "string", "maxLength": 255}},),
        body=TRAIN_BODY,
    ),
    Route(
        "GET",
        "/jobs",
        H.list_jobs,
        {200: Answer("Newest first, without logs.", m.JobList), **BAD, **AUTHED},
        query=(
            query("limit", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}, f"Default {DEFAULT_LIMIT}."),
            query("cursor", {"type": "string"}),
            query("status", {"type": "string", "enum": [s.value for s in JobStatus]}),
            query("backend", {"type": "string", "pattern": NAME_PATTERN}, "A backend `/health` lists."),
            query("name", {"type": "string"}),
            query("label", {"type": "string", "pattern": "^[^=]+=.*$"}, "key=value"),
        ),
    ),
    Route(
        "GET",
        "/jobs/{id}",
        H.get_job,
        {200: Answer("The job with a page of its logs.", m.JobDetailEnvelope), **BAD, **AUTHED, **NO_JOB},
        query=(_seq("logs_after"), _limit("logs_limit", MAX_LOG_PAGE)),
    ),
    Route(
        "POST",
        "/jobs/{id}/cancel",
        H.cancel_job,
        {
            202: Answer("Cancelled (a queued job) or cancelling (the launcher stops it).", m.JobEnvelope),
            **AUTHED,
            **NO_JOB,
            409: Answer("The job is final: nothing to cancel."),
        },
    ),
    Route(
        "GET",
        "/jobs/{id}/logs",
        H.job_logs,
        {
            200: Answer(
                "A page of log lines; with `follow=true`, Server-Sent Events (`log` with `id: seq`, `status`, `end`, `timeout`).",
                m.LogPage,
                also={"text/event-stream": {"schema": {"type": "string"}}},
            ),
            **BAD,
            **AUTHED,
            **NO_JOB,
        },
        query=(
            _seq("after"),
            _limit("limit", MAX_LOG_PAGE),
            query("tail", {"type": "integer", "minimum": 0, "maximum": MAX_LOG_PAGE}, "The last N lines (instead of `after`)."),
            query("follow", {"type": "string"}, "`true`, `1` or `yes`: stream as Server-Sent Events, resuming after the `Last-Event-ID` header."),
        ),
    ),
    Route(
        "GET",
        "/jobs/{id}/events",
        H.job_events,
        {200: Answer("The job's timeline, oldest first.", m.EventList), **BAD, **AUTHED, **NO_JOB},
        query=(_seq("after"), _limit("limit", MAX_EVENT_PAGE)),
    ),
    Route(
        "GET",
        "/jobs/{id}/metrics",
        H.job_metrics,
        {200: Answer("Every PROGRESS point of the job, oldest first (nextAfter: the next page's after).", m.MetricList), **BAD, **AUTHED, **NO_JOB},
        query=(_seq("after"), _limit("limit", MAX_LOG_PAGE)),
    ),
    Route("GET", "/jobs/{id}/manifest", H.job_manifest, {200: Answer("What the launcher created or would create.", m.ManifestModel), **AUTHED, **NO_JOB}),
    Route(
        "GET",
        "/jobs/{id}/deliveries",
        H.job_deliveries,
        {200: Answer("The job's webhook delivery attempts and where each subscriber stands.", m.DeliveryList), **BAD, **AUTHED, **NO_JOB},
        query=(query("after", {"type": "string", "maxLength": 64}, "The last attempt id seen."), _limit("limit", MAX_EVENT_PAGE)),
    ),
    Route(
        "GET",
        "/submissions/{batch_id}",
        H.submission,
        {200: Answer("A batch's accepted jobs and rejected items.", m.Submission), **AUTHED, 404: Answer("No submissions with this batch id.")},
    ),
    Route("GET", "/openapi.json", H.openapi, {200: Answer("This document.", m.OpenApiDocument), **AUTHED}),
)


@dataclass(frozen=True)
class Match:
    route: Route | None  # the row for this method and path; None: 404 (`allowed` empty) or 405
    args: tuple[str, ...]  # the path's parameters, in order
    allowed: tuple[str, ...]  # the methods the path has (for a 405's Allow)
    token_needed: bool


class Router:
    """Matches a method and path against the table: static paths by dict, templated ones by regex."""

    def __init__(self, routes: tuple[Route, ...]):
        self.static: dict[str, list[Route]] = {}
        self.templated: list[tuple[re.Pattern[str], Route]] = []
        for route in routes:
            if route.path_params:
                self.templated.append((route.regex(), route))
            else:
                self.static.setdefault(route.path, []).append(route)

    def match(self, method: str, path: str) -> Match:
        candidates: list[tuple[Route, tuple[str, ...]]] = [(r, ()) for r in self.static.get(path, ())]
        if not candidates:
            for regex, route in self.templated:
                hit = regex.match(path)
                if hit:
                    candidates.append((route, hit.groups()))
        for route, args in candidates:
            if route.method == method:
                return Match(route, args, (), route.auth)
        # A path no row has needs a token (an unknown path says nothing to a caller without one).
        return Match(None, (), tuple(sorted(r.method for r, _ in candidates)), not candidates or any(r.auth for r, _ in candidates))


ROUTER = Router(ROUTES)
