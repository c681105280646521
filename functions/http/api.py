"""The HTTP function `api`: the studio's contract, dispatched by the route table.

Thin: the table (`functions/http/routes.py`) picks the handler (`functions/http/handlers.py`), which
calls the service or the store and shapes JSON. Every answer is JSON (never HTML, never a bare 500):
validation problems are 400 naming the field, bodies over the limit 413, a job that could not be queued
503 (and the job is marked failed, never left silently unlaunched), a store that is down 503 with
`Retry-After`.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from flask import Request as FlaskRequest
from flask import Response as FlaskResponse

from functions.http.handlers import Handlers
from functions.http.openapi import openapi_document
from functions.http.routes import ROUTER
from functions.http.wire import HttpError, Request, Response, error, json_response
from shared.domain.job import Job
from shared.errors import Conflict, NotFound, StoreUnavailable, TransientError, ValidationFailed
from shared.ports import IdempotentCreate, JobStore
from shared.settings import Settings
from shared.usecases.service import PublishFailed, TrainingService

log = logging.getLogger(__name__)

# A full disk or an unavailable database is not fixed within the second: ask clients to wait a little.
STORE_RETRY_AFTER = "5"

# Store a new job, then run the callback on the outcome on the loop: functions/http/asgi.py's group commit.
AsyncCreate = Callable[[Job, "str | None", Callable[[IdempotentCreate], Any]], Awaitable[Any]]


class Api(Handlers):
    def __init__(
        self,
        *,
        settings: Settings,
        service: TrainingService,
        store: JobStore,
        bus_kind: str,
        health_checks: dict[str, Callable[[], None]] | None = None,
        follow_poll_seconds: float = 0.5,
        follow_max_seconds: float = 900.0,
        sleep: Callable[[float], None] = time.sleep,
        clock_monotonic: Callable[[], float] = time.monotonic,
    ):
        self.settings = settings
        self.service = service
        self.store = store
        self.bus_kind = bus_kind
        self.tokens = tuple(t.encode() for t in settings.tokens)
        self.token_header = settings.api_token_header
        # API_TOKENS set but unusable: every route but /health is refused, never served unauthenticated.
        self.auth_problem = settings.auth_problem
        self.cors_origins = frozenset(settings.cors_origin_list)
        self.health_checks = health_checks or {}
        self.follow_poll_seconds = follow_poll_seconds
        self.follow_max_seconds = follow_max_seconds
        self.sleep = sleep
        self.clock_monotonic = clock_monotonic

    def document(self) -> dict[str, Any]:
        return openapi_document()

    # ---- plumbing --------------------------------------------------------------------------------
    def __call__(self, request: FlaskRequest) -> FlaskResponse:
        """The functions-framework (Flask) entry point."""
        return self.handle(Request.from_flask(request)).to_flask()

    def handle(self, request: Request) -> Response:
        try:
            resp = self._dispatch(request)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a JSON answer
            resp = self._failure(request, exc)
        self._cors(request, resp)
        return resp

    async def handle_async(self, request: Request, create: AsyncCreate) -> Response:
        """The embedded ASGI server's entry: `POST /train` stores its job through `create` (the group
        commit: the event loop goes on serving while the batch is written); every other route is
        `handle`, on the caller's thread."""
        if request.method.upper() != "POST" or (request.path.rstrip("/") or "/") != "/train":
            return self.handle(request)
        try:
            self._check_token(request)
            job, req, key = self.train_prepare(request)
            submitted = await create(job, key, lambda result: self.service.finish_submission(req, result))
            resp = self.train_answer(submitted)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a JSON answer
            resp = self._failure(request, exc)
        self._cors(request, resp)
        return resp

    def _failure(self, request: Request, exc: BaseException) -> Response:
        if isinstance(exc, HttpError):
            return json_response(exc.status, exc.body, exc.headers)
        if isinstance(exc, ValidationFailed):
            return json_response(400, exc.to_body())
        if isinstance(exc, PublishFailed):
            return json_response(
                503,
                {"error": "The job was recorded but could not be queued for launch; it is marked failed.", "job": exc.job.to_summary()},
                {"Retry-After": "1"},
            )
        if isinstance(exc, Conflict):
            return json_response(409, {"error": str(exc)})
        if isinstance(exc, NotFound):
            return json_response(404, {"error": str(exc)})
        if isinstance(exc, StoreUnavailable):
            log.warning("store unavailable on %s %s: %s", request.method, request.path, exc)
            return json_response(
                503,
                {"error": "The job store is unavailable right now (nothing was stored or changed); retry shortly.", "errors": []},
                {"Retry-After": STORE_RETRY_AFTER},
            )
        if isinstance(exc, TransientError):
            log.warning("transient failure on %s %s: %s", request.method, request.path, exc)
            return json_response(503, {"error": "The service is temporarily unavailable; retry shortly."}, {"Retry-After": "1"})
        log.error("unhandled error on %s %s", request.method, request.path, exc_info=exc)  # never an HTML 500
        return json_response(500, {"error": "Internal error."})

    def _cors(self, request: Request, resp: Response) -> None:
        if not self.cors_origins:
            return
        # Whether an answer carries Access-Control-Allow-Origin depends on the request's Origin, so every
        # answer says so (errors and refused origins too): a cache must not hand one origin's copy to another.
        resp.headers["Vary"] = "Origin"
        origin = request.headers.get("Origin")
        if origin and origin in self.cors_origins:
            resp.headers["Access-Control-Allow-Origin"] = origin
            resp.headers["Access-Control-Allow-Headers"] = ", ".join(
                ["Authorization", "Content-Type", "Idempotency-Key", "Last-Event-ID", *([self.token_header] if self.token_header else [])]
            )
            resp.headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
            resp.headers["Access-Control-Expose-Headers"] = "Location, Idempotent-Replayed, Retry-After"
            resp.headers["Access-Control-Max-Age"] = "600"

    def _authorised(self, request: Request) -> bool:
        if not self.tokens:
            return True
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() == "bearer" and token:
            given = token.strip().encode()
        elif self.token_header and request.headers.get(self.token_header):
            # The studio's other way: the raw token in the header its cluster is configured with.
            given = request.headers.get(self.token_header, "").strip().encode()
        else:
            return False
        ok = False
        for expected in self.tokens:  # compare with every token: time does not depend on which matched
            ok |= hmac.compare_digest(given, expected)
        return ok

    def _check_token(self, request: Request) -> None:
        if self.auth_problem is not None:
            raise HttpError(
                503,
                {
                    "error": "Authentication is misconfigured: every route but /health is refused until API_TOKENS is fixed.",
                    "errors": [{"field": "API_TOKENS", "message": self.auth_problem}],
                },
            )
        if not self._authorised(request):
            raise HttpError(401, {"error": "Missing or invalid bearer token."}, {"WWW-Authenticate": "Bearer"})

    def _dispatch(self, request: Request) -> Response:
        path = request.path.rstrip("/") or "/"
        method = request.method.upper()
        if method == "OPTIONS":  # the CORS preflight: browsers send it without credentials
            return Response(204, content_type=None)
        match = ROUTER.match(method, path)
        if match.token_needed:
            self._check_token(request)
        if match.route is not None:
            return match.route.handler(self, request, *match.args)
        if match.allowed:
            raise HttpError(405, {"error": f"{method} is not allowed on {path}"}, {"Allow": ", ".join(match.allowed)})
        raise error(404, f"No route {method} {path}.")
