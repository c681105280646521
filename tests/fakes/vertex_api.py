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

And the Secret Manager routes the per-job secrets use (the same server stands for both APIs; point
`VERTEX_SECRET_MANAGER_ENDPOINT` at `url`):
- `POST /v1/projects/P/secrets?secretId=ID`: create (`labels`, `annotations`, `ttl` kept); 409
  `ALREADY_EXISTS` if it exists; 400 without `replication` or with a bad id;
- `POST /v1/projects/P/secrets/ID:addVersion`: `{"payload": {"data": base64}}` -> a version
  `projects/P/secrets/ID/versions/N` (N from 1); 404 for no such secret; 400 over 64 KiB;
- `GET /v1/projects/P/secrets/ID/versions/V:access` (V a number or `latest`): `{"name", "payload"}`;
- `DELETE /v1/projects/P/secrets/ID`: the secret and its versions; 404 if there is none;
- `GET /v1/projects/P/secrets?filter=labels.K=V&pageSize=&pageToken=`: list (filter terms as above).
`secrets` (name -> the secret's JSON plus `versions`: number -> payload bytes) and `deleted_secrets`
(names, in order) are there to look at.

Errors use Google's JSON shape `{"error": {"code", "message", "status"}}`, which `google.api_core`
turns into `GoogleAPICallError` subclasses. The REST transport sends enums as integers
(`$alt=json;enum-encoding=int`), so stored request fields like `acceleratorType` are numbers; states the
fake sets are names (the client parses both).

For tests: `jobs` (name -> JSON), `requests` / `calls()`, `inject()` (see `_server.py`),
`set_state(name, state, error=None)` to move a job along (the Vertex watcher's fixtures), `only_project`
and `forbidden` to answer 404/403 for unknown projects or parents.
"""

from __future__ import annotations

import base64
import binascii
import copy
import itertools
import re
from typing import Any

from tests.fakes._server import FakeServer, Request, Response, now_rfc3339

TERMINAL = {"JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_EXPIRED"}
_STATUS_NAME = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ALREADY_EXISTS",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}

_COLLECTION = re.compile(r"^/v1/projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)/customJobs$")
_ITEM = re.compile(r"^/v1/projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)/customJobs/(?P<id>[^/:]+)(?P<verb>:cancel)?$")
_SECRETS = re.compile(r"^/v1/projects/(?P<project>[^/]+)/secrets$")
_SECRET = re.compile(r"^/v1/projects/(?P<project>[^/]+)/secrets/(?P<id>[^/:]+)(?P<verb>:addVersion)?$")
_VERSION = re.compile(r"^/v1/projects/(?P<project>[^/]+)/secrets/(?P<id>[^/:]+)/versions/(?P<version>[^/:]+):access$")
_SECRET_ID = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
_TERM = re.compile(r"""^(?P<field>labels\.[a-z0-9_-]+|display_name|displayName|state)\s*(?P<op>=|!=|:)\s*(?P<value>"[^"]*"|[^\s"]+)$""")


def _match_term(job: dict[str, Any], field: str, op: str, value: str) -> bool:
    if field.startswith("labels."):
        labels = job.get("labels") or {}
        key = field[len("labels.") :]
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
        self.secrets: dict[str, dict[str, Any]] = {}
        self.deleted_secrets: list[str] = []

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
        if (m := _SECRETS.match(request.path)) or (m := _SECRET.match(request.path)) or (m := _VERSION.match(request.path)):
            return self._secret_manager(request, m)
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
            return self.error(
                403, f"Permission 'aiplatform.customJobs.create' denied on resource '//aiplatform.googleapis.com/projects/{project}/locations/{location}'"
            )
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

    # ---- Secret Manager ----------------------------------------------------------------------------
    def _secret_manager(self, request: Request, m: re.Match[str]) -> Response:
        if problem := self._check_parent(m["project"], "global"):
            return problem
        parent = f"projects/{m['project']}"
        groups = m.groupdict()
        with self.lock:
            if "version" in groups:
                return self._access(f"{parent}/secrets/{m['id']}", m["version"]) if request.method == "GET" else self.error(404, "no route")
            if "id" not in groups:
                if request.method == "POST":
                    return self._create_secret(parent, request)
                if request.method == "GET":
                    return self._list_secrets(parent, request)
                return self.error(404, "no route")
            name = f"{parent}/secrets/{m['id']}"
            if groups.get("verb") == ":addVersion" and request.method == "POST":
                return self._add_version(name, request.body)
            if not groups.get("verb") and request.method == "DELETE":
                if self.secrets.pop(name, None) is None:
                    return self.error(404, f"Secret [{name}] not found.")
                self.deleted_secrets.append(name)
                return Response(200, {})
            if not groups.get("verb") and request.method == "GET":
                secret = self.secrets.get(name)
                return Response(200, self._secret_view(secret)) if secret else self.error(404, f"Secret [{name}] not found.")
        return self.error(404, "no route")

    @staticmethod
    def _secret_view(secret: dict[str, Any]) -> dict[str, Any]:
        return {k: copy.deepcopy(v) for k, v in secret.items() if k != "versions"}

    def _create_secret(self, parent: str, request: Request) -> Response:
        secret_id = request.param("secretId") or ""
        body = request.body if isinstance(request.body, dict) else {}
        if not _SECRET_ID.match(secret_id):
            return self.error(400, f"Invalid secret id {secret_id!r}.")
        if not body.get("replication"):
            return self.error(400, "Secret.replication is required.")
        name = f"{parent}/secrets/{secret_id}"
        if name in self.secrets:
            return self.error(409, f"Secret [{name}] already exists.")
        secret = {
            "name": name,
            "createTime": now_rfc3339(),
            **{k: copy.deepcopy(body[k]) for k in ("replication", "labels", "annotations", "ttl") if k in body},
        }
        self.secrets[name] = {**secret, "versions": {}}
        return Response(200, copy.deepcopy(secret))

    def _add_version(self, name: str, body: Any) -> Response:
        secret = self.secrets.get(name)
        if secret is None:
            return self.error(404, f"Secret [{name}] not found or has no versions.")
        try:
            data = base64.b64decode(((body or {}).get("payload") or {})["data"], validate=True)
        except (KeyError, TypeError, ValueError, binascii.Error):
            return self.error(400, "SecretPayload.data is required.")
        if len(data) > 65536:
            return self.error(400, "Secret Payload cannot be larger than 64KiB.")
        number = len(secret["versions"]) + 1
        secret["versions"][number] = data
        return Response(200, {"name": f"{name}/versions/{number}", "state": "ENABLED", "createTime": now_rfc3339()})

    def _access(self, name: str, version: str) -> Response:
        secret = self.secrets.get(name)
        if secret is None or not secret["versions"]:
            return self.error(404, f"Secret [{name}] not found or has no versions.")
        number = max(secret["versions"]) if version == "latest" else int(version) if version.isdigit() else None
        if number not in secret["versions"]:
            return self.error(404, f"Secret Version [{name}/versions/{version}] not found.")
        data = base64.b64encode(secret["versions"][number]).decode()
        return Response(200, {"name": f"{name}/versions/{number}", "payload": {"data": data}})

    def _list_secrets(self, parent: str, request: Request) -> Response:
        try:
            terms = parse_filter(request.param("filter") or "")
        except ValueError as exc:
            return self.error(400, str(exc))
        size = int(request.param("pageSize") or 0) or 25
        offset = int(request.param("pageToken") or 0)
        found = [self._secret_view(s) for n, s in sorted(self.secrets.items()) if n.startswith(parent + "/") and all(_match_term(s, *t) for t in terms)]
        body: dict[str, Any] = {"secrets": found[offset : offset + size]} if found[offset : offset + size] else {}
        if offset + size < len(found):
            body["nextPageToken"] = str(offset + size)
        return Response(200, body)

    def _cancel(self, name: str) -> Response:
        with self.lock:
            job = self.jobs.get(name)
            if job is None:
                return self.error(404, f"CustomJob {name} not found.")
            if job["state"] in TERMINAL:
                return Response(
                    400, {"error": {"code": 400, "message": f"Cannot cancel CustomJob {name} in state {job['state']}.", "status": "FAILED_PRECONDITION"}}
                )
            job["state"] = "JOB_STATE_CANCELLING"
            job["updateTime"] = now_rfc3339()
            return Response(200, {})
