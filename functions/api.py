"""The HTTP function `api`: the studio's contract, routed on the path.

Thin: parse HTTP, call the service or the store, shape JSON. Every answer is JSON (never HTML, never a
bare 500): validation problems are 400 naming the field, bodies over the limit 413, a job that could
not be queued 503 (and the job is marked failed, never left silently unlaunched).
"""

from __future__ import annotations

import hmac
import itertools
import json
import logging
import re
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Iterator, Mapping, Protocol

from flask import Request as FlaskRequest
from flask import Response as FlaskResponse

from functions.openapi import openapi_document
from shared import jsonutil
from shared.domain.job import Backend, Job, iso
from shared.domain.manifest import manifest_view
from shared.domain.status import JobStatus
from shared.domain.request import NormalisedRequest
from shared.errors import Conflict, FieldError, NotFound, PlatformError, StoreUnavailable, TransientError, ValidationFailed
from shared.ports import IdempotentCreate, JobQuery, JobStore
from shared.usecases.service import PublishFailed, Submitted, TrainingService, iter_jobs
from shared.settings import Settings

log = logging.getLogger(__name__)

SUBMISSION_PATH = re.compile(r"^/submissions/(?P<id>[^/]{1,256})$")
JOB_PATH = re.compile(r"^/jobs/(?P<id>[A-Za-z0-9_.\-]{1,128})(?P<sub>/cancel|/logs|/events|/metrics|/manifest|/deliveries)?$")
MAX_LIMIT = 500
DEFAULT_LIMIT = 50
MAX_LOG_PAGE = 5000
DEFAULT_LOG_PAGE = 1000
MAX_JSON_DEPTH = 64
MAX_SUBMISSION_JOBS = 10_000
IDEMPOTENCY_KEY_MAX = 255
# A full disk or an unavailable database is not fixed within the second: ask clients to wait a little.
STORE_RETRY_AFTER = "5"
# Log and event cursors (`after`, `logs_after`, `Last-Event-ID`): sequence numbers, well inside the store's
# 64-bit integers and exact in a JSON number.
MAX_SEQ = 2**53


def bounded_int(raw: str | None, name: str, default: int, lo: int, hi: int) -> int:
    """An integer query argument or header: `default` when absent or empty, else lo..hi or a 400 naming it."""
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValidationFailed([FieldError(name, "must be an integer")]) from None
    if not lo <= value <= hi:
        raise ValidationFailed([FieldError(name, f"must be between {lo} and {hi}")])
    return value


def _depth(value: Any, limit: int) -> int:
    """Nesting depth, iteratively (no recursion limit to trip on hostile bodies)."""
    stack = [(value, 1)]
    deepest = 0
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > limit:
            return deepest
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)
    return deepest


# Store a new job, then run the callback on the outcome on the loop: functions/asgi.py's group commit.
AsyncCreate = Callable[[Job, "str | None", Callable[[IdempotentCreate], Any]], Awaitable[Any]]


class Lookup(Protocol):
    def get(self, key: str, default: Any = None) -> Any: ...


@dataclass
class Request:
    """What the routes read of an HTTP request, whichever server parsed it (Flask under
    functions-framework, or the embedded ASGI server). `headers.get` is case-insensitive; `read(n)`
    returns at most n bytes of the body."""

    method: str
    path: str
    headers: Lookup
    args: Lookup
    content_length: int | None
    read: Callable[[int], bytes]

    @classmethod
    def from_flask(cls, request: FlaskRequest) -> "Request":
        if request.content_length is None:
            read = request.stream.read
        else:
            read = lambda limit: request.get_data(cache=True)[:limit]  # noqa: E731
        return cls(request.method, request.path, request.headers, request.args, request.content_length, read)


@dataclass
class Response:
    """An answer: JSON bytes, or an iterator of text chunks for a stream (Server-Sent Events)."""

    status: int
    body: bytes | Iterator[str] = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str | None = "application/json"

    def to_flask(self) -> FlaskResponse:
        resp = FlaskResponse(self.body, status=self.status, mimetype=self.content_type)
        for k, v in self.headers.items():
            resp.headers[k] = v
        return resp


class HttpError(Exception):
    def __init__(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None):
        super().__init__(body.get("error"))
        self.status = status
        self.body = body
        self.headers = headers or {}


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(status, jsonutil.dumps(body), headers or {})


def _sse(event: str, data: Any, event_id: str | None = None) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'), ensure_ascii=False)}\n\n"


def _error(status: int, message: str, errors: list[FieldError] | None = None) -> HttpError:
    body: dict[str, Any] = {"error": message}
    if errors is not None:
        body["errors"] = [e.to_dict() for e in errors]
    return HttpError(status, body)


class Api:
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
        self.routes: dict[tuple[str, str], Callable[[Request], Response]] = {
            ("GET", "/health"): self.health,
            ("POST", "/train"): self.train,
            ("GET", "/jobs"): self.list_jobs,
            ("GET", "/openapi.json"): self.openapi,
        }

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
            job, req, key = self._train_prepare(request)
            submitted = await create(job, key, lambda result: self.service.finish_submission(req, result))
            resp = self._train_answer(submitted)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a JSON answer
            resp = self._failure(request, exc)
        self._cors(request, resp)
        return resp

    def _failure(self, request: Request, exc: BaseException) -> Response:
        if isinstance(exc, HttpError):
            return _json(exc.status, exc.body, exc.headers)
        if isinstance(exc, ValidationFailed):
            return _json(400, exc.to_body())
        if isinstance(exc, PublishFailed):
            return _json(
                503,
                {"error": "The job was recorded but could not be queued for launch; it is marked failed.", "job": exc.job.to_summary()},
                {"Retry-After": "1"},
            )
        if isinstance(exc, Conflict):
            return _json(409, {"error": str(exc)})
        if isinstance(exc, NotFound):
            return _json(404, {"error": str(exc)})
        if isinstance(exc, StoreUnavailable):
            log.warning("store unavailable on %s %s: %s", request.method, request.path, exc)
            return _json(
                503,
                {"error": "The job store is unavailable right now (nothing was stored or changed); retry shortly.", "errors": []},
                {"Retry-After": STORE_RETRY_AFTER},
            )
        if isinstance(exc, TransientError):
            log.warning("transient failure on %s %s: %s", request.method, request.path, exc)
            return _json(503, {"error": "The service is temporarily unavailable; retry shortly."}, {"Retry-After": "1"})
        log.error("unhandled error on %s %s", request.method, request.path, exc_info=exc)  # never an HTML 500
        return _json(500, {"error": "Internal error."})

    def _cors(self, request: Request, resp: Response) -> None:
        if not self.cors_origins:
            return
        # Whether an answer carries Access-Control-Allow-Origin depends on the request's Origin, so every
        # answer says so (errors and refused origins too): a cache must not hand one origin's copy to another.
        resp.headers["Vary"] = "Origin"
        origin = request.headers.get("Origin")
        if origin and origin in self.cors_origins:
            resp.headers["Access-Control-Allow-Origin"] = origin
            resp.headers["Access-Control-Allow-Headers"] = ", ".join(["Authorization", "Content-Type", "Idempotency-Key", "Last-Event-ID", *([self.token_header] if self.token_header else [])])
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
                {"error": "Authentication is misconfigured: every route but /health is refused until API_TOKENS is fixed.",
                 "errors": [{"field": "API_TOKENS", "message": self.auth_problem}]},
            )
        if not self._authorised(request):
            raise HttpError(401, {"error": "Missing or invalid bearer token."}, {"WWW-Authenticate": "Bearer"})

    def _dispatch(self, request: Request) -> Response:
        path = request.path.rstrip("/") or "/"
        method = request.method.upper()
        if method == "OPTIONS":
            return Response(204, content_type=None)
        if path != "/health":
            self._check_token(request)
        handler = self.routes.get((method, path))
        if handler is not None:
            return handler(request)
        match = JOB_PATH.match(path)
        if match:
            job_id, sub = match.group("id"), match.group("sub") or ""
            want = "POST" if sub == "/cancel" else "GET"
            if method != want:
                raise HttpError(405, {"error": f"{method} is not allowed on {path}"}, {"Allow": want})
            handler = {"": self.get_job, "/cancel": self.cancel_job, "/logs": self.job_logs, "/events": self.job_events, "/metrics": self.job_metrics, "/manifest": self.job_manifest,
                       "/deliveries": self.job_deliveries}[sub]
            return handler(request, job_id)
        match = SUBMISSION_PATH.match(path)
        if match:
            if method != "GET":
                raise HttpError(405, {"error": f"{method} is not allowed on {path}"}, {"Allow": "GET"})
            return self.submission(request, match.group("id"))
        if any(p == path for (_, p) in self.routes):
            allowed = ", ".join(sorted(m for (m, p) in self.routes if p == path))
            raise HttpError(405, {"error": f"{method} is not allowed on {path}"}, {"Allow": allowed})
        raise _error(404, f"No route {method} {path}.")

    def _read_json(self, request: Request) -> Any:
        limit = self.settings.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            raise _error(413, f"Request body is larger than {limit} bytes.")
        raw = request.read(limit + 1)
        if len(raw) > limit:
            raise _error(413, f"Request body is larger than {limit} bytes.")
        if not raw.strip():
            raise _error(400, "Request body is empty: send a JSON object.", [FieldError("body", "is required")])
        try:
            body = jsonutil.loads_strict(raw)
        except jsonutil.DuplicateKeyError as exc:  # `{"backend": "local", "backend": "kubernetes"}`
            raise ValidationFailed([FieldError(path, "is given more than once") for path in exc.paths]) from None
        except (ValueError, RecursionError) as exc:
            msg = str(exc) if not isinstance(exc, RecursionError) else "nested too deeply"
            raise _error(400, f"Malformed JSON: {msg}", [FieldError("body", "is not valid JSON")]) from None
        # A body with no more brackets than the limit can't be nested deeper than it: skip the walk.
        if raw.count(b"{") + raw.count(b"[") > MAX_JSON_DEPTH and _depth(body, MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
            raise _error(400, "JSON is nested too deeply.", [FieldError("body", f"must be nested at most {MAX_JSON_DEPTH} levels")])
        return body

    # ---- routes ----------------------------------------------------------------------------------
    def health(self, request: Request) -> Response:
        problems = self.settings.backend_problems()
        checks: dict[str, str] = {}
        for name, check in {"store": self.store.ping, **self.health_checks}.items():
            try:
                check()
                checks[name] = "ok"
            except StoreUnavailable as exc:  # our own message: says why (a full disk), names no secret
                checks[name] = f"error: {exc.__class__.__name__}: {exc}"
            except Exception as exc:  # noqa: BLE001
                checks[name] = f"error: {exc.__class__.__name__}"
        errors = self.settings.config_errors
        reachable = all(v == "ok" for v in checks.values())
        body = {
            "status": "ok" if reachable and not errors else "degraded",
            "defaultBackend": self.settings.default_training_backend.value,
            "backends": {
                Backend.KUBERNETES.value: {
                    "configured": problems[Backend.KUBERNETES] is None,
                    "problem": problems[Backend.KUBERNETES],
                    "apply": self.settings.k8s_apply,
                    "namespace": self.settings.k8s_namespace,
                    # What `resources.gpu_type` can name here (K8S_GPU_NODE_SELECTORS), any count each.
                    "gpuTypes": list(self.settings.gpu_node_selectors),
                },
                Backend.VERTEX.value: {
                    "configured": problems[Backend.VERTEX] is None,
                    "problem": problems[Backend.VERTEX],
                    "submit": self.settings.vertex_submit,
                    "region": self.settings.vertex_region,
                    # GPU type -> the GPU counts per node its machine types come in (the machine table).
                    "gpuTypes": {t: sorted(int(n) for n in row["machines"]) for t, row in self.settings.vertex_machine_table.items()},
                },
                Backend.LOCAL.value: {"configured": problems[Backend.LOCAL] is None, "problem": problems[Backend.LOCAL]},
            },
            "store": self.store.kind,
            "bus": self.bus_kind,
            "checks": checks,
            "auth": {"enabled": self.settings.api_tokens is not None, "problem": self.auth_problem},
            "configErrors": errors,
        }
        # Bad configuration is reported (degraded) but answers 200; a dependency that is down answers 503.
        return _json(200 if reachable else 503, body)

    def train(self, request: Request) -> Response:
        job, req, key = self._train_prepare(request)
        return self._train_answer(self.service.finish_submission(req, self.store.create(job, key)))

    def _train_prepare(self, request: Request) -> tuple[Job, NormalisedRequest, str | None]:
        """Read and validate the body: the job to store, its normalised request and its Idempotency-Key."""
        # Any content type is read as JSON (curl's default form type included): the body decides.
        body = self._read_json(request)
        key = request.headers.get("Idempotency-Key")
        if key is not None:
            key = key.strip()
            if not key or len(key) > IDEMPOTENCY_KEY_MAX or not key.isprintable():
                raise ValidationFailed([FieldError("Idempotency-Key", f"must be 1-{IDEMPOTENCY_KEY_MAX} printable characters")])
        job, req = self.service.prepare(body, idempotency_key=key)
        return job, req, job.idempotency_key  # the header's, or the body's (the studio's job_id)

    def _train_answer(self, result: Submitted) -> Response:
        headers = {"Location": f"/jobs/{result.job.id}"}
        if not result.created:
            headers["Idempotent-Replayed"] = "true"
        return _json(202, {"job": result.job.to_summary()}, headers)

    def _int_arg(self, request: Request, name: str, default: int, lo: int, hi: int) -> int:
        return bounded_int(request.args.get(name), name, default, lo, hi)

    def list_jobs(self, request: Request) -> Response:
        limit = self._int_arg(request, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
        status = request.args.get("status") or None
        backend = request.args.get("backend") or None
        errors = []
        if status is not None and status not in JobStatus.__members__.values():
            errors.append(FieldError("status", f"must be one of {', '.join(s.value for s in JobStatus)}"))
        if backend is not None and backend not in Backend.__members__.values():
            errors.append(FieldError("backend", f"must be one of {', '.join(b.value for b in Backend)}"))
        label = None
        raw_label = request.args.get("label")
        if raw_label:
            k, sep, v = raw_label.partition("=")
            if not sep or not k:
                errors.append(FieldError("label", "must be key=value"))
            else:
                label = (k, v)
        if errors:
            raise ValidationFailed(errors)
        page = self.store.list(
            JobQuery(limit=limit, cursor=request.args.get("cursor") or None, status=status, backend=backend, name=request.args.get("name") or None, label=label)
        )
        return _json(200, {"jobs": [j.to_summary() for j in page.items], "nextCursor": page.next_cursor})

    def get_job(self, request: Request, job_id: str) -> Response:
        job = self.store.get(job_id)
        if job is None:
            raise _error(404, f"Job {job_id} not found.")
        after = self._int_arg(request, "logs_after", 0, 0, MAX_SEQ)
        limit = self._int_arg(request, "logs_limit", DEFAULT_LOG_PAGE, 1, MAX_LOG_PAGE)
        lines = self.store.get_logs(job_id, after=after, limit=limit)
        body = job.to_summary()
        body["logs"] = [l.to_api() for l in lines]
        body["logsNextAfter"] = lines[-1].seq if lines and lines[-1].seq < job.log_count else None
        return _json(200, {"job": body})

    def _job_or_404(self, job_id: str):
        job = self.store.get(job_id)
        if job is None:
            raise _error(404, f"Job {job_id} not found.")
        return job

    def cancel_job(self, request: Request, job_id: str) -> Response:
        job = self.service.cancel(job_id)
        return _json(202, {"job": job.to_summary()})

    def job_events(self, request: Request, job_id: str) -> Response:
        self._job_or_404(job_id)
        after = self._int_arg(request, "after", 0, 0, MAX_SEQ)
        limit = self._int_arg(request, "limit", 100, 1, 1000)
        events = self.store.list_events(job_id, after=after, limit=limit)
        body = [{"seq": e.seq, "at": iso(e.at), "kind": e.kind, "data": e.data} for e in events]
        return _json(200, {"events": body, "nextAfter": events[-1].seq if len(events) == limit else None})

    def job_metrics(self, request: Request, job_id: str) -> Response:
        """Every PROGRESS point of the job (its loss curve), oldest first, paged by seq."""
        self._job_or_404(job_id)
        after = self._int_arg(request, "after", 0, 0, MAX_SEQ)
        limit = self._int_arg(request, "limit", 1000, 1, MAX_LOG_PAGE)
        points = self.store.get_metrics(job_id, after=after, limit=limit)
        return _json(200, {"metrics": [p.to_api() for p in points], "nextAfter": points[-1].seq if len(points) == limit else None})

    def job_deliveries(self, request: Request, job_id: str) -> Response:
        """Every webhook delivery attempt of the job (status code, duration, error), and where each
        subscriber's channel stands; paged with `after` (an attempt id) and `limit`."""
        self._job_or_404(job_id)
        after = request.args.get("after") or ""
        if len(after) > 64:
            raise ValidationFailed([FieldError("after", "must be an attempt id this api returned")])
        limit = self._int_arg(request, "limit", 100, 1, 1000)
        attempts = self.store.list_attempts(job_id, after=after, limit=limit)
        subscribers = [
            {"subscriber": c.key, "url": c.url.split("?", 1)[0], "state": c.state, "deliveredThrough": c.cursor, "attempt": c.attempt,
             "nextAttemptAt": iso(c.next_at), "lastError": c.last_error}
            for c in self.store.list_channels(job_id)
        ]
        return _json(200, {"deliveries": attempts, "subscribers": subscribers, "nextAfter": attempts[-1]["id"] if len(attempts) == limit else None})

    def job_manifest(self, request: Request, job_id: str) -> Response:
        """What the launcher created, or would create on a dry run (secret values are never in it)."""
        return _json(200, manifest_view(self._job_or_404(job_id)))

    def job_logs(self, request: Request, job_id: str) -> Response:
        """Logs by cursor (`after` = last seq seen), the last `tail` lines, or `follow=true` as SSE."""
        job = self._job_or_404(job_id)
        limit = self._int_arg(request, "limit", DEFAULT_LOG_PAGE, 1, MAX_LOG_PAGE)
        after = self._int_arg(request, "after", 0, 0, MAX_SEQ)
        tail = request.args.get("tail")
        if tail is not None:
            n = self._int_arg(request, "tail", 100, 0, MAX_LOG_PAGE)
            after = max(0, job.log_count - n)
        follow = (request.args.get("follow") or "").lower() in ("1", "true", "yes")
        if not follow:
            lines = self.store.get_logs(job_id, after=after, limit=limit)
            return _json(200, {
                "logs": [l.to_api() for l in lines],
                "nextAfter": lines[-1].seq if lines else after,
                "status": job.status.value,
                "final": job.is_final(),
            })
        # A reconnecting EventSource resumes from the last id it saw: a cursor like `after`, bound alike
        # (an id past 2**63 would overflow the store's integer and end the stream with a 500).
        after = bounded_int(request.headers.get("Last-Event-ID"), "Last-Event-ID", after, 0, MAX_SEQ)
        return Response(
            200, self._follow(job_id, after), {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}, "text/event-stream"
        )

    def _follow(self, job_id: str, after: int):
        """Server-Sent Events: one `log` event per line (id = seq, so a reconnect resumes with
        Last-Event-ID), `status` events on changes, and `end` once the job is final and drained."""
        deadline = self.clock_monotonic() + self.follow_max_seconds
        last_status = None
        yield "retry: 1000\n\n"
        while True:
            job = self.store.get(job_id)
            if job is None:
                yield _sse("end", {"reason": "deleted"})
                return
            final = job.is_final()  # read before the lines: lines written before the final state are drained
            quiet = True
            while True:
                lines = self.store.get_logs(job_id, after=after, limit=MAX_LOG_PAGE)
                for line in lines:
                    yield _sse("log", line.to_api(), event_id=str(line.seq))
                    after = line.seq
                    quiet = False
                if len(lines) < MAX_LOG_PAGE:
                    break
            if job.status.value != last_status:
                last_status = job.status.value
                quiet = False
                yield _sse("status", {"status": last_status, "statusReason": job.status_reason, "progress": job.progress})
            if final:
                yield _sse("end", {"status": job.status.value, "lastSeq": after})
                return
            if self.clock_monotonic() > deadline:
                yield _sse("timeout", {"lastSeq": after, "hint": "reconnect with Last-Event-ID"})
                return
            if quiet:
                # A comment line (ignored by EventSource): keeps proxies from timing the stream out, and
                # lets the server notice a follower that went away while the job is quiet.
                yield ": keepalive\n\n"
            self.sleep(self.follow_poll_seconds)

    def submission(self, request: Request, batch_id: str) -> Response:
        """A batch: the jobs it created (label batch_id) and the items it rejected, with their reasons."""
        jobs = iter_jobs(self.store, label=("batch_id", batch_id), page_size=MAX_LIMIT)
        accepted = [{"id": j.id, "name": j.name, "status": j.status.value} for j in itertools.islice(jobs, MAX_SUBMISSION_JOBS)]
        rejections = [r.to_api() for r in self.store.list_rejections(batch_id)]
        if not accepted and not rejections:
            raise _error(404, f"No submissions with batch id {batch_id}.")
        return _json(200, {"batchId": batch_id, "accepted": accepted, "rejections": rejections})

    def openapi(self, request: Request) -> Response:
        return _json(200, openapi_document())
