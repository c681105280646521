"""The studio's status-callback route, as a fake over real HTTP: `POST /api/training/webhooks/{job_id}`.

It applies the studio's acceptance rules (../shared/reference/studio-contract.md) exactly, in the
studio's order, written out here independently of the platform's code:
1. no token — neither `X-Cluster-Token` nor `Authorization` (a `Bearer ` prefix is optional) — 401;
2. an unknown job id (the last path segment) — 404;
3. a token that is neither that job's own token nor the cluster's — 403;
4. a body that is not `{"status": one of five, "log"?: string}` — 400 (other keys are dropped);
5. else 200 with the studio's job, its `log` appended and a history entry added.
It enforces no order and no deduplication, as the studio doesn't: the tests assert on what it got.
Every request and answer is in `requests` (from `FakeServer`); `inject(status=500, times=n)` makes it fail.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

from tests.fakes._server import FakeServer, Request, Response

STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
ROUTE = re.compile(r"^/api/training/webhooks/([^/]+)$")


@dataclass
class StudioJob:
    id: str
    token: str
    status: str = "queued"
    log: str = ""
    history: list[dict[str, Any]] = field(default_factory=list)

    def to_api(self) -> dict[str, Any]:
        return {"id": self.id, "status": self.status, "log": self.log, "history": list(self.history)}


class StudioReceiver(FakeServer):
    def __init__(self, cluster_token: str = "cluster-token") -> None:
        super().__init__()
        self.cluster_token = cluster_token
        self.jobs: dict[str, StudioJob] = {}

    def add_job(self, job_id: str, token: str) -> str:
        """A run the studio launched, with its per-job token; returns its callback URL."""
        with self.lock:
            self.jobs[job_id] = StudioJob(job_id, token)
        return self.callback_url(job_id)

    def callback_url(self, job_id: str) -> str:
        return f"{self.url}/api/training/webhooks/{job_id}"

    def error(self, status: int, message: str, reason: str = "") -> Response:
        return Response(status, {"error": message})

    def route(self, request: Request) -> Response:
        match = ROUTE.match(request.path)
        if request.method != "POST" or match is None:
            return Response(404, {"error": "Not found"})
        token = self._token(request.headers)
        if not token:
            return Response(401, {"error": "Unauthorized"})
        with self.lock:
            job = self.jobs.get(match.group(1))
            if job is None:
                return Response(404, {"error": "Job not found"})
            if token not in (job.token, self.cluster_token):
                return Response(403, {"error": "Forbidden"})
            body = request.body
            if not (isinstance(body, dict) and body.get("status") in STATUSES and ("log" not in body or body["log"] is None or isinstance(body["log"], str))):
                return Response(400, {"error": "Invalid body"})
            job.status = body["status"]
            entry = body.get("log")
            if entry:
                job.log += entry if entry.endswith("\n") else entry + "\n"
            job.history.append({"status": body["status"], "log": entry, "at": time.time()})
            return Response(200, {"job": job.to_api()})

    @staticmethod
    def _token(headers: dict[str, str]) -> str | None:
        raw = headers.get("x-cluster-token") or headers.get("authorization")
        if not raw:
            return None
        raw = raw.strip()
        return raw[len("Bearer ") :].strip() if raw.startswith("Bearer ") else raw

    # ---- what the tests read --------------------------------------------------------------------
    def answers(self, job_id: str | None = None) -> list[tuple[int | None, Any]]:
        """(status answered, body sent) per request to the route, in arrival order."""
        with self.lock:
            return [(r.status, r.body) for r in self.requests if r.method == "POST" and (job_id is None or r.path.rsplit("/", 1)[-1] == job_id)]

    def accepted(self, job_id: str) -> list[dict[str, Any]]:
        """The bodies it answered 200, in arrival order (the studio's history of the run)."""
        return [body for status, body in self.answers(job_id) if status == 200]
