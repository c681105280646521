"""A fake Vertex AI CustomJob REST API, for `aiplatform_v1.JobServiceClient(transport="rest")`.

    with FakeVertexAPI() as vertex:
        client = aiplatform_v1.JobServiceClient(
            transport="rest",
            client_options={"api_endpoint": vertex.url},
            credentials=AnonymousCredentials(),
        )

Routes (the ones the REST transport calls; see `rest_base.py` in the client):
- `POST /v1/projects/P/locations/L/customJobs`: create; assigns `name`
  (`projects/P/locations/L/customJobs/<number>`), `state: JOB_STATE_PENDING`, `createTime`,
  `updateTime`; 400 `INVALID_ARGUMENT` without `displayName` or `jobSpec.workerPoolSpecs`;
- `GET .../customJobs/ID`: read, 404 `NOT_FOUND`;
- `GET .../customJobs?filter=...&pageSize=&pageToken=`: list, newest first; filters are terms joined by
  `AND`: `labels.KEY="VALUE"` (or unquoted), `labels.KEY:*`, `display_name="..."` / `displayName`,
  `state=JOB_STATE_X` / `state!=...`; anything else is 400 `INVALID_ARGUMENT`;
- `POST .../customJobs/ID:cancel`: `JOB_STATE_CANCELLING` (terminal jobs: 400 `FAILED_PRECONDITION`).

Errors use Google's JSON shape `{"error": {"code", "message", "status"}}`, which `google.api_core`
turns into `GoogleAPICallError` subclasses. The REST transport sends enums as integers
(`$alt=json;enum-encoding=int`), so stored request fields like `acceleratorType` are numbers; states the
fake sets are names (the client parses both).

For tests: `jobs` (name -> JSON), `requests` / `calls()`, `inject()` (see `_server.py`),
`set_state(name, state, error=None)` to move a job along (the Vertex watcher's fixtures), `only_project`
and `forbidden` to answer 404/403 for unknown projects or parents.
"""

from __future__ import annotations

import copy
import itertools
import re
from typing import Any

from tests.fakes._server import FakeServer, Request, Response, now_rfc3339

TERMINAL = {"JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_EXPIRED"}
_STATUS_NAME = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND", 409: "ALREADY_EXISTS", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}

_COLLECTION = re.compile(r"^/v1/projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)/customJobs$")
_ITEM = re.compile(r"^/v1/projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)/customJobs/(?P<id>[^/:]+)(?P<verb>:cancel)?$")
_TERM = re.compile(
    r"""^(?P<field>labels\.[a-z0-9_-]+|display_name|displayName|state)\s*(?P<op>=|!=|:)\s*(?P<value>"[^"]*"|[^\s"]+)$"""
)


def _match_term(job: dict[str, Any], field: str, op: str, value: str) -> bool:
    if field.startswith("labels."):
        labels = job.get("labels") or {}
        key = field[len("labels."):]
        if op == ":":
            return key in labels if value == "*" else labels.get(key) == value
        return (labels.get(key) == value) if op == "=" else (labels.get(key) != value)
    actual = job.get("displayName") if field in ("display_name", "displayName") else job.get("state")
    return (actual == value) if op in ("=", ":") else (actual != value)


def parse_filter(text: str) -> list[tuple[str, str, str]]:
    terms = []
    for part in [p.strip() for p in re.split(r"\s+AND\s+", text.strip(), flags=re.IGNORECASE) if p.strip()]:
        m = _TERM.match(part)
        if not m:
            raise ValueError(f"Unsupported filter term: {part!r}")
        value = m["value"][1:-1] if m["value"].startswith('"') else m["value"]
        terms.append((m["field"], m["op"], value))
    return terms


class FakeVertexAPI(FakeServer):
    def __init__(self, *, only_project: str | None = None, forbidden: tuple[str, ...] = ()):
        super().__init__()
        self.jobs: dict[str, dict[str, Any]] = {}
        self.only_project = only_project
        self.forbidden = set(forbidden)
        self._ids = itertools.count(1000000000000000001)

    def error(self, status: int, message: str, reason: str = "") -> Response:
        return Response(status, {"error": {"code": status, "message": message, "status": _STATUS_NAME.get(status, "UNKNOWN")}})

    def set_state(self, name: str, state: str, error: dict[str, Any] | None = None) -> dict[str, Any]:
        with self.lock:
            job = self.jobs[name]
            job["state"] = state
            job["updateTime"] = now_rfc3339()
            if state == "JOB_STATE_RUNNING":
                job.setdefault("startTime", job["updateTime"])
            if state in TERMINAL:
                job["endTime"] = job["updateTime"]
            if error:
                job["error"] = error
            return copy.deepcopy(job)

    def route(self, request: Request) -> Response:
        if m := _COLLECTION.match(request.path):
            if problem := self._check_parent(m["project"], m["location"]):
                return problem
            parent = f"projects/{m['project']}/locations/{m['location']}"
            if request.method == "POST":
                return self._create(parent, request.body)
            if request.method == "GET":
                return self._list(parent, request)
        elif m := _ITEM.match(request.path):
            if problem := self._check_parent(m["project"], m["location"]):
                return problem
            name = f"projects/{m['project']}/locations/{m['location']}/customJobs/{m['id']}"
            if m["verb"] == ":cancel" and request.method == "POST":
                return self._cancel(name)
            if not m["verb"] and request.method == "GET":
                with self.lock:
                    job = self.jobs.get(name)
                    return Response(200, copy.deepcopy(job)) if job else self.error(404, f"CustomJob {name} not found.")
        return self.error(404, f"The fake has no route for {request.method} {request.path}")

    def _check_parent(self, project: str, location: str) -> Response | None:
        if project in self.forbidden:
            return self.error(403, f"Permission 'aiplatform.customJobs.create' denied on resource '//aiplatform.googleapis.com/projects/{project}/locations/{location}'")
        if self.only_project and project != self.only_project:
            return self.error(404, f"Project {project} not found.")
        return None

    def _create(self, parent: str, body: Any) -> Response:
        if not isinstance(body, dict):
            return self.error(400, "Invalid JSON payload received.")
        if not body.get("displayName"):
            return self.error(400, "List of found errors:\t1.Field: custom_job.display_name; Message: Required field is not set.")
        pools = (body.get("jobSpec") or {}).get("workerPoolSpecs") or []
        if not pools:
            return self.error(400, "List of found errors:\t1.Field: custom_job.job_spec.worker_pool_specs; Message: Required field is not set.")
        for i, pool in enumerate(pools):
            if not ((pool.get("containerSpec") or {}).get("imageUri")):
                return self.error(400, f"Field: custom_job.job_spec.worker_pool_specs[{i}].container_spec.image_uri; Message: Required field is not set.")
        if str(pools[0].get("replicaCount", "1")) != "1":
            return self.error(400, "The first worker pool (the chief) must have exactly one replica.")
        with self.lock:
            name = f"{parent}/customJobs/{next(self._ids)}"
            now = now_rfc3339()
            job = copy.deepcopy(body)
            job.update({"name": name, "state": "JOB_STATE_PENDING", "createTime": now, "updateTime": now})
            self.jobs[name] = job
            return Response(200, copy.deepcopy(job))

    def _list(self, parent: str, request: Request) -> Response:
        try:
            terms = parse_filter(request.param("filter") or "")
        except ValueError as exc:
            return self.error(400, str(exc))
        size = int(request.param("pageSize") or 0) or 100
        offset = int(request.param("pageToken") or 0)
        with self.lock:
            found = [
                copy.deepcopy(j)
                for n, j in sorted(self.jobs.items(), key=lambda kv: kv[0], reverse=True)
                if n.startswith(parent + "/") and all(_match_term(j, *t) for t in terms)
            ]
        page = found[offset : offset + size]
        body: dict[str, Any] = {"customJobs": page} if page else {}
        if offset + size < len(found):
            body["nextPageToken"] = str(offset + size)
        return Response(200, body)

    def _cancel(self, name: str) -> Response:
        with self.lock:
            job = self.jobs.get(name)
            if job is None:
                return self.error(404, f"CustomJob {name} not found.")
            if job["state"] in TERMINAL:
                return Response(400, {"error": {"code": 400, "message": f"Cannot cancel CustomJob {name} in state {job['state']}.", "status": "FAILED_PRECONDITION"}})
            job["state"] = "JOB_STATE_CANCELLING"
            job["updateTime"] = now_rfc3339()
            return Response(200, {})
