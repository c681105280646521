"""`Client`: the api's routes as Python calls, typed with the api's own models.

Retries are safe by construction: `submit` always sends an `Idempotency-Key` (one per call, reused by
its retries), so a retry after a dropped connection or a 503 returns the first job instead of creating a
second; reads retry freely; `cancel` retries only when the request never reached the server.
`logs(follow=True)` reads the Server-Sent Events stream and, when the connection drops (a proxy, a
server restart), reconnects with `Last-Event-ID`, so no line is lost or repeated.
"""

from __future__ import annotations

import json
import os
import random
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx

from functions.client.errors import ApiError, ConnectionFailed, from_response
from functions.http.models import EventList, JobDetail, JobSummary, LogLineModel, LogPage, MetricList, MetricPointModel, TimelineEventModel

DEFAULT_URL = "http://127.0.0.1:4000"
FINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled"})
# Re-exported names for callers: the api's models, as the client returns them.
MetricPoint = MetricPointModel
TimelineEntry = TimelineEventModel
Job = JobSummary


def load_spec(source: Mapping[str, Any] | str | Path) -> dict[str, Any]:
    """A request body from a dict, or from a JSON / YAML file (by extension; JSON is tried first)."""
    if isinstance(source, Mapping):
        return dict(source)
    path = Path(source)
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        body = yaml.safe_load(text)
    else:
        body = json.loads(text)
    if not isinstance(body, dict):
        raise ValueError(f"{path}: a request body must be a JSON object, not {type(body).__name__}")
    return body


def parse_sse(lines: Iterator[str]) -> Iterator[tuple[str, str | None, str]]:
    """(event, id, data) for each Server-Sent Event; comments (`: keepalive`) and `retry:` are skipped."""
    event, event_id = "message", None
    data: list[str] = []
    for raw in lines:
        line = raw.rstrip("\r")
        if not line:
            if data:
                yield event, event_id, "\n".join(data)
            event, event_id, data = "message", None, []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)
        elif name == "id":
            event_id = value


class Client:
    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        retries: int = 5,
        backoff_seconds: float = 0.5,
        reconnect_seconds: float = 120.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.url = (url or os.environ.get("TRAINCTL_URL") or DEFAULT_URL).rstrip("/")
        token = token if token is not None else os.environ.get("TRAINCTL_TOKEN")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.retries = retries
        self.backoff_seconds = backoff_seconds
        self.reconnect_seconds = reconnect_seconds
        self.sleep = sleep
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout, transport=transport, follow_redirects=False)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- plumbing --------------------------------------------------------------------------------
    def _delay(self, attempt: int, retry_after: str | None = None) -> float:
        if retry_after is not None:
            try:
                return min(max(float(retry_after), 0.0), 30.0)
            except ValueError:
                pass
        return float(min(self.backoff_seconds * (2**attempt), 10.0) * (0.5 + random.random() / 2))

    def _request(self, method: str, path: str, *, safe: bool = True, **kw: Any) -> Any:
        """Send, retrying connection failures (any, if `safe`; only failed connects otherwise) and 503s
        (if `safe`), then return the JSON body or raise the api's error as our own type."""
        last: Exception | None = None
        for attempt in range(self.retries + 1):
            try:
                resp = self._http.request(method, path, **kw)
            except httpx.ConnectError as exc:  # never reached the server: always safe to retry
                last = exc
            except httpx.TransportError as exc:
                if not safe:
                    raise ConnectionFailed(f"{method} {path}: {exc}") from exc
                last = exc
            else:
                if resp.status_code == 503 and safe and attempt < self.retries:
                    self.sleep(self._delay(attempt, resp.headers.get("Retry-After")))
                    continue
                try:
                    body = resp.json()
                except ValueError:
                    body = {"error": resp.text[:500] or f"HTTP {resp.status_code}"}
                if resp.status_code >= 400:
                    raise from_response(resp.status_code, body)
                return body
            if attempt < self.retries:
                self.sleep(self._delay(attempt))
        raise ConnectionFailed(f"{method} {self.url}{path}: {last}") from last

    # ---- jobs ------------------------------------------------------------------------------------
    def submit(self, spec: Mapping[str, Any] | str | Path, *, idempotency_key: str | None = None) -> JobSummary:
        """Submit a request body (either shape: a dict or a JSON/YAML file). Retries are idempotent."""
        body = load_spec(spec)
        key = idempotency_key or str(uuid.uuid4())
        data = self._request("POST", "/train", json=body, headers={"Idempotency-Key": key})
        return JobSummary.model_validate(data["job"])

    def jobs(
        self,
        *,
        status: str | None = None,
        backend: str | None = None,
        label: str | tuple[str, str] | None = None,
        name: str | None = None,
        limit: int | None = None,
        page_size: int = 100,
    ) -> Iterator[JobSummary]:
        """Every job matching the filters, newest first, page after page (at most `limit`)."""
        if isinstance(label, tuple):
            label = f"{label[0]}={label[1]}"
        params: dict[str, Any] = {k: v for k, v in {"status": status, "backend": backend, "label": label, "name": name}.items() if v}
        seen = 0
        cursor: str | None = None
        while True:
            size = page_size if limit is None else max(1, min(page_size, limit - seen))
            page = self._request("GET", "/jobs", params={**params, "limit": size, **({"cursor": cursor} if cursor else {})})
            for item in page["jobs"]:
                yield JobSummary.model_validate(item)
                seen += 1
                if limit is not None and seen >= limit:
                    return
            cursor = page.get("nextCursor")
            if not cursor:
                return

    def get(self, job_id: str, *, logs_after: int = 0, logs_limit: int = 1000) -> JobDetail:
        data = self._request("GET", f"/jobs/{job_id}", params={"logs_after": logs_after, "logs_limit": logs_limit})
        return JobDetail.model_validate(data["job"])

    def summary(self, job_id: str) -> JobSummary:
        """The job without its logs (one log line is the least the route sends)."""
        return JobSummary.model_validate(self._request("GET", f"/jobs/{job_id}", params={"logs_limit": 1})["job"])

    def cancel(self, job_id: str) -> JobSummary:
        return JobSummary.model_validate(self._request("POST", f"/jobs/{job_id}/cancel", safe=False)["job"])

    def manifest(self, job_id: str) -> dict[str, Any]:
        """What the launcher created or would create for the job: `{backend, dryRun, objects}`."""
        data = self._request("GET", f"/jobs/{job_id}/manifest")
        return dict(data)

    def events(self, job_id: str, *, after: int = 0, page_size: int = 1000) -> Iterator[TimelineEventModel]:
        """The job's timeline, oldest first."""
        for page in self._pages(f"/jobs/{job_id}/events", EventList, after, page_size):
            yield from page.events

    def metrics(self, job_id: str, *, after: int = 0, page_size: int = 1000) -> Iterator[MetricPointModel]:
        """Every `PROGRESS` point of the job, oldest first (its loss curve)."""
        for page in self._pages(f"/jobs/{job_id}/metrics", MetricList, after, page_size):
            yield from page.metrics

    def _pages(self, path: str, model: type[EventList] | type[MetricList], after: int, page_size: int) -> Iterator[Any]:
        """Pages of a route paged by seq (`after` / `limit`, `nextAfter`), until it has no more."""
        while True:
            page = model.model_validate(self._request("GET", path, params={"after": after, "limit": page_size}))
            yield page
            if page.nextAfter is None:
                return
            after = page.nextAfter

    # ---- logs ------------------------------------------------------------------------------------
    def logs(self, job_id: str, *, follow: bool = False, after: int = 0, tail: int | None = None) -> Iterator[LogLineModel]:
        """The job's log lines in order. `tail`: start with the last N lines. `follow`: keep reading the
        live stream until the job is final, reconnecting (with `Last-Event-ID`) when the connection
        drops; each line is yielded exactly once."""
        if tail is not None:
            page = LogPage.model_validate(self._request("GET", f"/jobs/{job_id}/logs", params={"tail": tail}))
            yield from page.logs
            after = page.nextAfter
            if not follow:
                return
        if not follow:
            while True:
                page = LogPage.model_validate(self._request("GET", f"/jobs/{job_id}/logs", params={"after": after, "limit": 5000}))
                yield from page.logs
                if not page.logs:
                    return
                after = page.nextAfter
        yield from self._follow(job_id, after)

    def _follow(self, job_id: str, after: int) -> Iterator[LogLineModel]:
        failing_since: float | None = None
        attempt = 0
        while True:
            try:
                with self._http.stream(
                    "GET", f"/jobs/{job_id}/logs", params={"follow": "true"}, headers={"Last-Event-ID": str(after)}, timeout=httpx.Timeout(30.0, read=60.0)
                ) as resp:
                    if resp.status_code >= 400:
                        resp.read()
                        if resp.status_code == 503:
                            raise httpx.RemoteProtocolError("503")
                        try:
                            body = resp.json()
                        except ValueError:
                            body = {"error": resp.text[:500]}
                        raise from_response(resp.status_code, body)
                    failing_since, attempt = None, 0
                    for event, _event_id, data in parse_sse(resp.iter_lines()):
                        if event == "log":
                            line = LogLineModel.model_validate_json(data)
                            if line.seq > after:  # a replayed line after a reconnect is skipped
                                after = line.seq
                                yield line
                        elif event == "end":
                            return
                        # `status`, `timeout` (reconnect): nothing to yield; a timeout ends the stream
            except ApiError:
                raise
            except httpx.TransportError as exc:
                now = time.monotonic()
                failing_since = failing_since or now
                if now - failing_since > self.reconnect_seconds:
                    raise ConnectionFailed(f"log stream of {job_id}: {exc}") from exc
            self.sleep(self._delay(min(attempt, 3)))
            attempt += 1

    # ---- waiting ---------------------------------------------------------------------------------
    def wait(
        self,
        job_id: str,
        *,
        on_change: Callable[[JobSummary], None] | None = None,
        poll_seconds: float = 1.0,
        timeout: float | None = None,
    ) -> JobSummary:
        """Poll until the job is final (`succeeded`, `failed`, `cancelled`, or a final dry run) and return
        it. `on_change` is called with the job whenever its status, reason or progress changes."""
        deadline = None if timeout is None else time.monotonic() + timeout
        last: tuple[Any, ...] | None = None
        while True:
            job = self.summary(job_id)
            seen = (job.status, job.statusReason, json.dumps(job.progress, sort_keys=True))
            if seen != last:
                last = seen
                if on_change is not None:
                    on_change(job)
            if is_final(job):
                return job
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} is still {job.status.value} after {timeout} s")
            self.sleep(poll_seconds)


def is_final(job: JobSummary) -> bool:
    """Terminal, or a dry run (`submitted` and final)."""
    return job.status.value in FINAL_STATUSES or (job.dryRun and job.status.value == "submitted")
