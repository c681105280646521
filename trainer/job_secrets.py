"""The job's secret variables on Vertex: resolved from Secret Manager at start, before anything reads them.

The platform never puts a secret value in a CustomJob spec. It passes references instead, and this module
(called first thing by `trainer/launch.py`) turns them into the variables the trainer reads:
- `TRAINING_PLATFORM_SECRET_REF=projects/P/secrets/S/versions/V`: the job's own secret (created by the
  launcher, deleted when the job ends), whose payload is one JSON object of variables
  (`{"HF_TOKEN": "...", "TRAINING_PLATFORM_CREDENTIALS": "..."}`): each is exported;
- `<NAME>_SECRET=projects/P/secrets/S/versions/V` (an operator's per-name reference, e.g.
  `HF_TOKEN_SECRET` from `VERTEX_HF_TOKEN_SECRET`): the payload is the value of `NAME`.
The job's own secret wins over a per-name reference for the same variable (it holds what the request
gave). The reference variables are removed once resolved; the workers see only the values.

Secret Manager's REST API (`GET v1/{name}:access`) with google-auth's default credentials (the job's
service account on Vertex). `TRAINING_PLATFORM_SECRET_ENDPOINT` overrides the endpoint (the launcher
passes `VERTEX_SECRET_MANAGER_ENDPOINT` on when it is not the public one); a plain `http://` endpoint
is a local fake and is called without credentials (a token is never sent over plain HTTP). Server
errors and lost connections are retried a few times; any other failure is a `SecretError` whose text
never holds a payload.

Named `job_secrets`, not `secrets`: this folder is on sys.path when one of its scripts runs, and a
`secrets.py` here would shadow the standard library's module of that name.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import time
from collections.abc import Callable, MutableMapping
from typing import Any

JOB_SECRET_ENV = "TRAINING_PLATFORM_SECRET_REF"
ENDPOINT_ENV = "TRAINING_PLATFORM_SECRET_ENDPOINT"
DEFAULT_ENDPOINT = "https://secretmanager.googleapis.com"
REF_SUFFIX = "_SECRET"
VERSION_NAME = re.compile(r"^projects/[^/\s]+/secrets/[^/\s]+/versions/[^/\s]+$")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
ATTEMPTS = 5
TIMEOUT_SECONDS = 30.0


class SecretError(RuntimeError):
    """The job's secrets could not be read (the trainer can't run without them)."""


def references(environ: MutableMapping[str, str]) -> dict[str, str]:
    """Per-name references in the environment: variable -> secret version (values shaped like one)."""
    out = {}
    for key, value in environ.items():
        if key != JOB_SECRET_ENV and key.endswith(REF_SUFFIX) and _NAME.match(key[: -len(REF_SUFFIX)] or "-") and VERSION_NAME.match(value or ""):
            out[key[: -len(REF_SUFFIX)]] = value
    return out


def _session(endpoint: str) -> Any:
    if endpoint.startswith("http://"):
        import requests

        return requests.Session()
    import google.auth
    from google.auth.transport.requests import AuthorizedSession

    credentials, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
    return AuthorizedSession(credentials)


def access(name: str, session: Any, endpoint: str, *, sleep: Callable[[float], None] = time.sleep) -> bytes:
    """The payload of a secret version."""
    url = f"{endpoint.rstrip('/')}/v1/{name}:access"
    for attempt in range(ATTEMPTS):
        try:
            response = session.get(url, timeout=TIMEOUT_SECONDS)
        except Exception as exc:  # noqa: BLE001 - connection errors: retried; the text names no payload
            problem = f"{type(exc).__name__}"
        else:
            if response.status_code == 200:
                try:
                    return base64.b64decode(response.json()["payload"]["data"], validate=True)
                except (ValueError, KeyError, TypeError, binascii.Error):
                    raise SecretError(f"Secret Manager's answer for {name} holds no payload") from None
            problem = f"HTTP {response.status_code}"
            if response.status_code < 500 and response.status_code not in (408, 429):
                raise SecretError(f"could not read {name} from Secret Manager: {problem}")
        if attempt + 1 < ATTEMPTS:
            sleep(min(2.0**attempt, 8.0))
    raise SecretError(f"could not read {name} from Secret Manager after {ATTEMPTS} attempts: {problem}")


def resolve(environ: MutableMapping[str, str] | None = None, *, session: Any = None, sleep: Callable[[float], None] = time.sleep) -> list[str]:
    """Export the job's secret variables into `environ` (default: this process's) and drop the
    references; the names exported. Nothing to resolve: nothing is imported or called."""
    env = os.environ if environ is None else environ
    job_ref = env.get(JOB_SECRET_ENV) or ""
    per_name = references(env)
    if not job_ref and not per_name:
        return []
    endpoint = env.get(ENDPOINT_ENV) or DEFAULT_ENDPOINT
    try:
        session = session or _session(endpoint)
    except Exception as exc:  # noqa: BLE001 - google.auth's DefaultCredentialsError and friends
        raise SecretError(f"no credentials to read the job's secrets from Secret Manager: {type(exc).__name__}") from None
    values: dict[str, str] = {}
    for variable, ref in sorted(per_name.items()):
        values[variable] = access(ref, session, endpoint, sleep=sleep).decode("utf-8")
    if job_ref:
        if not VERSION_NAME.match(job_ref):
            raise SecretError(f"{JOB_SECRET_ENV} is not a secret version name (projects/P/secrets/S/versions/V)")
        try:
            payload = json.loads(access(job_ref, session, endpoint, sleep=sleep))
        except ValueError:
            raise SecretError(f"the job's secret {job_ref} is not a JSON object") from None
        if not isinstance(payload, dict) or not all(isinstance(k, str) and _NAME.match(k) and isinstance(v, str) for k, v in payload.items()):
            raise SecretError(f"the job's secret {job_ref} is not a JSON object of variable names to strings")
        values.update(payload)
    for variable in per_name:
        env.pop(variable + REF_SUFFIX, None)
    env.pop(JOB_SECRET_ENV, None)
    env.pop(ENDPOINT_ENV, None)
    env.update(values)
    return sorted(values)
