"""The api's route handlers: read the request, call the service or the store, shape the JSON answer.

Each handler is one row of the route table (`functions/http/routes.py`), which says its method, path,
models and auth; `Api` (`functions/http/api.py`) dispatches to it with the path's parameters, in order,
after the token check. A handler raises our errors (`ValidationFailed`, `NotFound`, `Conflict`,
`HttpError`, ...) and `Api` turns them into JSON answers.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

from functions.http.wire import MAX_SEQ, Request, Response, bounded_int, error, json_response, read_json, sse
from shared.domain.job import Job, iso
from shared.domain.manifest import manifest_view
from shared.domain.request import NormalisedRequest
from shared.domain.status import JobStatus
from shared.errors import FieldError, StoreUnavailable, ValidationFailed
from shared.ports import JobQuery, JobStore
from shared.settings import Settings
from shared.usecases.service import Submitted, TrainingService, iter_jobs

MAX_LIMIT = 500
DEFAULT_LIMIT = 50
MAX_LOG_PAGE = 5000
DEFAULT_LOG_PAGE = 1000
MAX_EVENT_PAGE = 1000
MAX_SUBMISSION_JOBS = 10_000
IDEMPOTENCY_KEY_MAX = 255


class Handlers:
    """The routes of the api; `Api` sets these attributes and supplies `document` (the OpenAPI JSON)."""

    settings: Settings
    service: TrainingService
    store: JobStore
    bus_kind: str
    auth_problem: str | None
    health_checks: dict[str, Callable[[], None]]
    follow_poll_seconds: float
    follow_max_seconds: float
    sleep: Callable[[float], None]
    clock_monotonic: Callable[[], float]

    def document(self) -> dict[str, Any]:
        raise NotImplementedError

    def _int_arg(self, request: Request, name: str, default: int, lo: int, hi: int) -> int:
        return bounded_int(request.args.get(name), name, default, lo, hi)

    def _job_or_404(self, job_id: str) -> Job:
        job = self.store.get(job_id)
        if job is None:
            raise error(404, f"Job {job_id} not found.")
        return job

    def health(self, request: Request) -> Response:
        checks: dict[str, str] = {}
        for name, check in {"store": self.store.ping, **self.health_checks}.items():
            try:
                check()
                checks[name] = "ok"
            except StoreUnavailable as exc:  # our own message: says why (a full disk), names no secret
                checks[name] = f"error: {exc.__class__.__name__}: {exc}"
            except Exception as exc:  # noqa: BLE001 - any failing check is reported by its class, never raised
                checks[name] = f"error: {exc.__class__.__name__}"
        errors = self.settings.config_errors
        reachable = all(v == "ok" for v in checks.values())
        body = {
            "status": "ok" if reachable and not errors else "degraded",
            "defaultBackend": str(self.settings.default_training_backend),
            # Each registered backend: configured or why not, and what its unit shows (shared/adapters/registry.py).
            "backends": self.settings.backend_health(),
            "store": self.store.kind,
            "bus": self.bus_kind,
            "checks": checks,
            "auth": {"enabled": self.settings.api_tokens is not None, "problem": self.auth_problem},
            "configErrors": errors,
        }
        # Bad configuration is reported (degraded) but answers 200; a dependency that is down answers 503.
        return json_response(200 if reachable else 503, body)

    def train(self, request: Request) -> Response:
        job, req, key = self.train_prepare(request)
        return self.train_answer(self.service.finish_submission(req, self.store.create(job, key)))

    def train_prepare(self, request: Request) -> tuple[Job, NormalisedRequest, str | None]:
        """Read and validate the body: the job to store, its normalised request and its Idempotency-Key."""
        # Any content type is read as JSON (curl's default form type included): the body decides.
        body = read_json(request, self.settings.max_body_bytes)
        key = request.headers.get("Idempotency-Key")
        if key is not None:
            key = key.strip()
            if not key or len(key) > IDEMPOTENCY_KEY_MAX or not key.isprintable():
                raise ValidationFailed([FieldError("Idempotency-Key", f"must be 1-{IDEMPOTENCY_KEY_MAX} printable characters")])
        job, req = self.service.prepare(body, idempotency_key=key)
        return job, req, job.idempotency_key  # the header's, or the body's (the studio's job_id)

    def train_answer(self, result: Submitted) -> Response:
        headers = {"Location": f"/jobs/{result.job.id}"}
        if not result.created:
            headers["Idempotent-Replayed"] = "true"
        return json_response(202, {"job": result.job.to_summary()}, headers)

    def list_jobs(self, request: Request) -> Response:
        limit = self._int_arg(request, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
        status = request.args.get("status") or None
        backend = request.args.get("backend") or None
        errors = []
        if status is not None and status not in JobStatus.__members__.values():
            errors.append(FieldError("status", f"must be one of {', '.join(s.value for s in JobStatus)}"))
        kinds = self.settings.backend_rules()  # every registered backend, by name
        if backend is not None and backend not in kinds:
            errors.append(FieldError("backend", f"must be one of {', '.join(kinds)}"))
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
        return json_response(200, {"jobs": [j.to_summary() for j in page.items], "nextCursor": page.next_cursor})

    def get_job(self, request: Request, job_id: str) -> Response:
        job = self._job_or_404(job_id)
        after = self._int_arg(request, "logs_after", 0, 0, MAX_SEQ)
        limit = self._int_arg(request, "logs_limit", DEFAULT_LOG_PAGE, 1, MAX_LOG_PAGE)
        lines = self.store.get_logs(job_id, after=after, limit=limit)
        body = job.to_summary()
        body["logs"] = [line.to_api() for line in lines]
        body["logsNextAfter"] = lines[-1].seq if lines and lines[-1].seq < job.log_count else None
        return json_response(200, {"job": body})

    def cancel_job(self, request: Request, job_id: str) -> Response:
        job = self.service.cancel(job_id)
        return json_response(202, {"job": job.to_summary()})

    def job_events(self, request: Request, job_id: str) -> Response:
        self._job_or_404(job_id)
        after = self._int_arg(request, "after", 0, 0, MAX_SEQ)
        limit = self._int_arg(request, "limit", 100, 1, MAX_EVENT_PAGE)
        events = self.store.list_events(job_id, after=after, limit=limit)
        body = [{"seq": e.seq, "at": iso(e.at), "kind": e.kind, "data": e.data} for e in events]
        return json_response(200, {"events": body, "nextAfter": events[-1].seq if len(events) == limit else None})

    def job_metrics(self, request: Request, job_id: str) -> Response:
        """Every PROGRESS point of the job (its loss curve), oldest first, paged by seq."""
        self._job_or_404(job_id)
        after = self._int_arg(request, "after", 0, 0, MAX_SEQ)
        limit = self._int_arg(request, "limit", 1000, 1, MAX_LOG_PAGE)
        points = self.store.get_metrics(job_id, after=after, limit=limit)
        return json_response(200, {"metrics": [p.to_api() for p in points], "nextAfter": points[-1].seq if len(points) == limit else None})

    def job_deliveries(self, request: Request, job_id: str) -> Response:
        """Every webhook delivery attempt of the job (status code, duration, error), and where each
        subscriber's channel stands; paged with `after` (an attempt id) and `limit`."""
        self._job_or_404(job_id)
        after = request.args.get("after") or ""
        if len(after) > 64:
            raise ValidationFailed([FieldError("after", "must be an attempt id this api returned")])
        limit = self._int_arg(request, "limit", 100, 1, MAX_EVENT_PAGE)
        attempts = self.store.list_attempts(job_id, after=after, limit=limit)
        subscribers = [
            {
                "subscriber": c.key,
                "url": c.url.split("?", 1)[0],
                "state": c.state,
                "deliveredThrough": c.cursor,
                "attempt": c.attempt,
                "nextAttemptAt": iso(c.next_at),
                "lastError": c.last_error,
            }
            for c in self.store.list_channels(job_id)
        ]
        return json_response(200, {"deliveries": attempts, "subscribers": subscribers, "nextAfter": attempts[-1]["id"] if len(attempts) == limit else None})

    def job_manifest(self, request: Request, job_id: str) -> Response:
        """What the launcher created, or would create on a dry run (secret values are never in it)."""
        job = self._job_or_404(job_id)
        return json_response(200, manifest_view(job, self.settings.backend_rules().get(job.backend)))

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
            return json_response(
                200,
                {
                    "logs": [line.to_api() for line in lines],
                    "nextAfter": lines[-1].seq if lines else after,
                    "status": job.status.value,
                    "final": job.is_final(),
                },
            )
        # A reconnecting EventSource resumes from the last id it saw: a cursor like `after`, bound alike
        # (an id past 2**63 would overflow the store's integer and end the stream with a 500).
        after = bounded_int(request.headers.get("Last-Event-ID"), "Last-Event-ID", after, 0, MAX_SEQ)
        return Response(200, self._follow(job_id, after), {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}, "text/event-stream")

    def _follow(self, job_id: str, after: int) -> Iterator[str]:
        """Server-Sent Events: one `log` event per line (id = seq, so a reconnect resumes with
        Last-Event-ID), `status` events on changes, and `end` once the job is final and drained."""
        deadline = self.clock_monotonic() + self.follow_max_seconds
        last_status = None
        yield "retry: 1000\n\n"
        while True:
            job = self.store.get(job_id)
            if job is None:
                yield sse("end", {"reason": "deleted"})
                return
            final = job.is_final()  # read before the lines: lines written before the final state are drained
            quiet = True
            while True:
                lines = self.store.get_logs(job_id, after=after, limit=MAX_LOG_PAGE)
                for line in lines:
                    yield sse("log", line.to_api(), event_id=str(line.seq))
                    after = line.seq
                    quiet = False
                if len(lines) < MAX_LOG_PAGE:
                    break
            if job.status.value != last_status:
                last_status = job.status.value
                quiet = False
                yield sse("status", {"status": last_status, "statusReason": job.status_reason, "progress": job.progress})
            if final:
                yield sse("end", {"status": job.status.value, "lastSeq": after})
                return
            if self.clock_monotonic() > deadline:
                yield sse("timeout", {"lastSeq": after, "hint": "reconnect with Last-Event-ID"})
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
            raise error(404, f"No submissions with batch id {batch_id}.")
        return json_response(200, {"batchId": batch_id, "accepted": accepted, "rejections": rejections})

    def openapi(self, request: Request) -> Response:
        return json_response(200, self.document())
