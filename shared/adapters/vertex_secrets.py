"""The Vertex backend's per-job Secret Manager secrets (REST, through google-auth's AuthorizedSession:
no client library needed).

With per-job secrets (`VERTEX_JOB_SECRETS=1`, the default) the launcher puts the job's secret variables
(`HF_TOKEN`, `TRAINING_PLATFORM_CREDENTIALS`, `env` values), as one JSON object, in a Secret Manager
secret of the job's own (id derived from the job id, `job_secret_id`; labelled and annotated with it, a
TTL as a backstop), adds a version, and passes that version's resource name in one variable,
`TRAINING_PLATFORM_SECRET_REF`; the trainer (`trainer/job_secrets.py`) reads it at start and exports the
variables before anything reads them. The backend (`vertex_backend.py`) deletes the secret once the job
is final (`release`, called by status_sync; reconcile sweeps what `held` still lists), and at once when
the submit that created it is refused.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from shared.adapters.http_errors import error_for_status
from shared.adapters.vertex_errors import api_error
from shared.domain import naming
from shared.domain.status import FailureClass
from shared.errors import PermanentError, TransientError

# The one variable that names the job's own secret version (read by trainer/job_secrets.py: keep in step).
JOB_SECRET_ENV = "TRAINING_PLATFORM_SECRET_REF"
JOB_SECRET_ENDPOINT_ENV = "TRAINING_PLATFORM_SECRET_ENDPOINT"
JOB_SECRET_PLACEHOLDER = "[the job's own Secret Manager secret version, created at submit, holding {names}]"
SECRET_MANAGER_ENDPOINT = "https://secretmanager.googleapis.com"
# Secret Manager's limit on one version's payload.
MAX_SECRET_PAYLOAD_BYTES = 65536
JOB_ID_ANNOTATION = "training-platform/job-id"
_SECRET_ID_SAFE = re.compile(r"[A-Za-z0-9_-]{1,200}")


def job_secret_id(job_id: str) -> str:
    """The job's own secret: its id derives from the job id (so every attempt finds the same one)."""
    if _SECRET_ID_SAFE.fullmatch(job_id):
        return f"training-job-{job_id}"
    return "training-job-h-" + hashlib.sha256(job_id.encode()).hexdigest()[:40]


def job_secret_payload(values: dict[str, str]) -> bytes:
    """The secret variables as one JSON object; over Secret Manager's limit a PermanentError (user)."""
    payload = json.dumps(values, sort_keys=True, separators=(",", ":")).encode()
    if len(payload) > MAX_SECRET_PAYLOAD_BYTES:
        raise PermanentError(
            f"the job's secret variables ({', '.join(sorted(values))}) take {len(payload)} bytes; Secret Manager holds at most {MAX_SECRET_PAYLOAD_BYTES}",
            reason="SecretTooLarge",
            failure_class=FailureClass.USER.value,
        )
    return payload


def _authorized_session(endpoint: str = SECRET_MANAGER_ENDPOINT) -> Any:
    """Google credentials for the public endpoint; none for a plain-HTTP one (a local fake: a token is
    never sent in the clear)."""
    import requests

    if endpoint.startswith("http://"):
        return requests.Session()
    import google.auth
    from google.auth.transport.requests import AuthorizedSession

    credentials, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
    return AuthorizedSession(credentials)  # type: ignore[no-untyped-call]  # google-auth's transport is unannotated


@dataclass
class SecretManager:
    """The few Secret Manager calls the launcher makes: create a secret, add a version, delete, list ours.
    `session` (a `requests.Session`-like object; production: an AuthorizedSession) is built on first use.
    Every failure is wrapped once, here, through the status table (`http_errors.py`); a payload is never
    part of an error message."""

    parent: str  # projects/P
    endpoint: str = SECRET_MANAGER_ENDPOINT
    session: Any = None
    session_factory: Callable[[str], Any] = _authorized_session
    timeout: float = 30.0

    def _call(
        self, method: str, path: str, what: str, *, ok: tuple[int, ...] = (200,), secrets: tuple[str, ...] = (), **kwargs: Any
    ) -> tuple[int, dict[str, Any]]:
        try:
            if self.session is None:
                self.session = self.session_factory(self.endpoint)
            response = self.session.request(method, f"{self.endpoint.rstrip('/')}/v1/{path}", timeout=self.timeout, **kwargs)
        except Exception as exc:  # noqa: BLE001 - requests and google.auth errors
            raise api_error(exc, what) from exc
        try:
            body = response.json() if response.content else {}
        except ValueError:
            body = {}
        if response.status_code in ok:
            return response.status_code, body if isinstance(body, dict) else {}
        message = ((body.get("error") or {}).get("message") if isinstance(body, dict) else None) or response.text[:300]
        raise error_for_status(response.status_code, str(message), what=what, secrets=secrets)

    def create(self, secret_id: str, *, labels: dict[str, str], annotations: dict[str, str], ttl_seconds: int) -> bool:
        """Create the secret (no version yet). True: created; False: it existed (an earlier attempt's)."""
        body: dict[str, Any] = {"replication": {"automatic": {}}, "labels": labels, "annotations": annotations}
        if ttl_seconds > 0:
            body["ttl"] = f"{ttl_seconds}s"
        status, _ = self._call(
            "POST", f"{self.parent}/secrets", f"create secret {self.parent}/secrets/{secret_id}", ok=(200, 409), params={"secretId": secret_id}, json=body
        )
        return status == 200

    def add_version(self, secret_id: str, payload: bytes, secrets: tuple[str, ...] = ()) -> str:
        """Add a version holding `payload`; its resource name (what the trainer accesses)."""
        data = base64.b64encode(payload).decode()
        _, body = self._call(
            "POST", f"{self.parent}/secrets/{secret_id}:addVersion", f"add a version to secret {secret_id}", secrets=secrets, json={"payload": {"data": data}}
        )
        name = body.get("name")
        if not isinstance(name, str) or "/versions/" not in name:
            raise TransientError(f"add a version to secret {secret_id}: the answer names no version")
        return name

    def delete(self, secret_id: str) -> bool:
        """Delete the secret and its versions. False: there was none (already deleted: success)."""
        status, _ = self._call("DELETE", f"{self.parent}/secrets/{secret_id}", f"delete secret {self.parent}/secrets/{secret_id}", ok=(200, 404))
        return status == 200

    def list_ours(self) -> list[dict[str, Any]]:
        """The secrets this platform made (by label), every page."""
        out: list[dict[str, Any]] = []
        token = ""
        for _ in range(1000):  # bounded: 1000 pages of 250
            params = {"filter": f"labels.{naming.VERTEX_MANAGED_BY_LABEL}={naming.MANAGED_BY}", "pageSize": 250}
            if token:
                params["pageToken"] = token
            _, body = self._call("GET", f"{self.parent}/secrets", f"list secrets in {self.parent}", params=params)
            out += [s for s in body.get("secrets") or [] if isinstance(s, dict)]
            token = body.get("nextPageToken") or ""
            if not token:
                break
        return out
