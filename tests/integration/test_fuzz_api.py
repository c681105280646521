"""Schemathesis against `GET /openapi.json` of the api served by functions-framework (SQLite in tmp,
RecordingBus, tokens on).

For every documented operation (every row of the route table, `functions/http/routes.py`: all the routes
of the README's API table), schema-valid and schema-invalid requests (positive and negative modes,
a fixed seed, derandomized, bounded examples) are sent over real HTTP with a bearer token, and:
- never a 5xx (`not_a_server_error`), the status is documented, the body is the documented JSON shape
  (`status_code_conformance`, `content_type_conformance`, `response_schema_conformance`), and data the
  schema forbids is refused (`negative_data_rejection`);
- every 4xx is JSON with `error`; every 400 names each field in `errors[*].field`;
- the same request without a token is 401 (but `/health`);
- `POST /train`: a non-202 stores nothing and publishes nothing; a 202 stores exactly that job and
  publishes exactly one launch. After the whole run the store holds exactly the jobs answered 202.

Generated job ids name no stored job (404s), so each route is also called for a job that exists (and a
batch that does), and its answers are held to the same checks. `GET /jobs/{id}/logs?follow=true` (the
`text/event-stream` answer) is documented but left to tests/integration/test_api_jobs.py: the stream of a
job that is not final runs until the job ends (or 15 minutes), and schemathesis reads a whole body.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import functions_framework
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.config import SchemathesisConfig

from functions.http.openapi import openapi_document
from functions.http.routes import ROUTES, TRAIN_EXAMPLE
from functions.wiring import Container, set_container
from shared.adapters.sqlite_store import SqliteJobStore
from shared.ports import JobQuery
from tests.conftest import ServedApp
from tests.integration.conftest import RecordingBus, make_settings

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]

TOKEN = "fuzz-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SEED = 20240611
MAX_EXAMPLES = 100
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance, negative_data_rejection]


class Served:
    def __init__(self, tmp: Path) -> None:
        self.bus = RecordingBus()
        self.container = Container(
            settings=make_settings(API_TOKENS=TOKEN, LOCAL_ALLOWED_ROOTS=str(tmp)),
            store=SqliteJobStore(tmp / f"{uuid.uuid4().hex}.db"),
            bus=self.bus,
        )
        # The production HTTP surface: functions-framework's app for `functions/main.py:api` (every method
        # routed to the api, its after-request hook included), over the container built here.
        set_container(self.container)
        self.app = ServedApp(functions_framework.create_app(target="api", source=str(REPO / "functions" / "main.py")))
        self.url = self.app.url
        self.accepted: set[str] = set()
        self.session = requests.Session()

    def stored_ids(self) -> set[str]:
        ids: set[str] = set()
        cursor = None
        while True:
            page = self.container.store.list(JobQuery(limit=500, cursor=cursor))
            ids |= {j.id for j in page.items}
            if not page.next_cursor:
                return ids
            cursor = page.next_cursor


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    s = Served(tmp_path_factory.mktemp("fuzz"))
    yield s
    s.app.close()
    set_container(None)


# The schema is loaded eagerly from the same function that serves `/openapi.json` (a test below checks
# the served document is this one): schemathesis 4.32's `pytest.from_fixture` loader sets
# `request.node._nodeid`, which pytest 9 no longer has. The base URL is the served app's, per call.
schema = schemathesis.openapi.from_dict(
    openapi_document(),
    config=SchemathesisConfig.from_dict(
        {
            "seed": SEED,
            # The token through the document's own `bearer` scheme, so negative cases can also leave it out.
            "auth": {"openapi": {"bearer": {"bearer": TOKEN}}},
            # Unknown query parameters are ignored (not refused) by design: don't count them as negative data.
            "generation": {
                "max-examples": MAX_EXAMPLES,
                "deterministic": True,
                "mode": "all",
                "database": "none",
                "allow-extra-parameters": False,
            },
        }
    ),
)


def header(response: Any, name: str) -> str:
    """A header of a requests or schemathesis response (the latter keeps a list per lower-case name)."""
    value = response.headers.get(name.lower(), response.headers.get(name))
    if isinstance(value, list):
        return value[0] if value else ""
    return value or ""


def assert_error_shape(response: Any) -> None:
    assert header(response, "Content-Type").startswith("application/json"), response.text[:200]
    body = response.json()
    assert isinstance(body.get("error"), str) and body["error"], body
    if response.status_code == 400:
        errors = body.get("errors")
        assert isinstance(errors, list) and errors, f"400 without errors[]: {body}"
        for err in errors:
            assert isinstance(err.get("field"), str) and err["field"], f"400 error without a field: {body}"
            assert isinstance(err.get("message"), str) and err["message"], body


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, derandomize=True, deadline=None, database=None, suppress_health_check=list(HealthCheck))
def test_api_conforms(case: Any, served: Served) -> None:
    is_train = case.method.upper() == "POST" and case.path == "/train"
    before_ids = served.stored_ids() if is_train else set()
    before_msgs = len(served.bus.messages)

    response = case.call(base_url=served.url, session=served.session)
    case.validate_response(response, checks=CHECKS)
    if 400 <= response.status_code < 500:
        assert_error_shape(response)

    if is_train:
        after_ids = served.stored_ids()
        new = after_ids - before_ids
        if response.status_code == 202:
            job_id = response.json()["job"]["id"]
            replayed = header(response, "Idempotent-Replayed") == "true"
            assert new == (set() if replayed else {job_id})
            assert len(served.bus.messages) == before_msgs + (0 if replayed else 1)
            served.accepted.add(job_id)
        else:
            assert new == set(), f"{response.status_code} stored {new}"
            assert len(served.bus.messages) == before_msgs, "a rejected request published a launch"
    else:
        assert len(served.bus.messages) == before_msgs

    if case.path != "/health" and case.method.upper() != "OPTIONS":
        # The same request without a token: 401 JSON, and (for /train) nothing stored. (OPTIONS is the
        # CORS preflight, which browsers send without credentials: an empty 204, no data.)
        count = len(served.stored_ids()) if is_train else 0
        bare = case.call(base_url=served.url, session=requests.Session(), headers={"Authorization": ""})
        assert bare.status_code == 401, (case.method, case.path, bare.status_code, bare.text[:200])
        assert header(bare, "WWW-Authenticate") == "Bearer"
        assert_error_shape(bare)
        if is_train:
            assert len(served.stored_ids()) == count


def test_every_route_is_fuzzed() -> None:
    fuzzed = {(r.ok().method.upper(), r.ok().path) for r in schema.get_all_operations()}
    assert fuzzed == {(route.method, route.path) for route in ROUTES}


def test_every_route_answers_as_documented_for_a_stored_job(served: Served) -> None:
    """The answers generated ids never reach: each route for a job and a batch that exist, twice for a
    cancel (202, then 409 on the now final job)."""

    def call(method: str, path: str, **kwargs: Any) -> Any:
        case = schema[path][method].Case(**kwargs)
        response = case.call(base_url=served.url, session=served.session, headers=AUTH)
        case.validate_response(response, checks=CHECKS)
        return response

    created = call("POST", "/train", body={**TRAIN_EXAMPLE, "labels": {"batch_id": "fuzz-batch"}})
    assert created.status_code == 202, created.text
    job_id = created.json()["job"]["id"]
    served.accepted.add(job_id)
    seen = {("POST", "/train"): created.status_code}
    for route in ROUTES:
        if route.path_params == ["id"] and route.method == "GET":
            seen[(route.method, route.path)] = call("GET", route.path, path_parameters={"id": job_id}).status_code
    seen[("GET", "/submissions/{batch_id}")] = call("GET", "/submissions/{batch_id}", path_parameters={"batch_id": "fuzz-batch"}).status_code
    for method, path in [("GET", "/health"), ("GET", "/jobs"), ("GET", "/openapi.json")]:
        seen[(method, path)] = call(method, path).status_code
    cancelled = call("POST", "/jobs/{id}/cancel", path_parameters={"id": job_id})
    again = call("POST", "/jobs/{id}/cancel", path_parameters={"id": job_id})
    seen[("POST", "/jobs/{id}/cancel")] = cancelled.status_code
    assert (cancelled.status_code, again.status_code) == (202, 409), (cancelled.text, again.text)
    assert set(seen) == {(route.method, route.path) for route in ROUTES}
    assert all(status < 300 for status in seen.values()), seen


def test_served_document_is_the_fuzzed_one(served: Served) -> None:
    r = served.session.get(f"{served.url}/openapi.json", headers=AUTH)
    assert r.status_code == 200 and r.json() == openapi_document()


def test_store_holds_only_the_jobs_answered_202(served: Served) -> None:
    """Runs after the fuzzing above (same module-scoped server): nothing but 202s left a job."""
    assert served.stored_ids() == served.accepted
    assert served.accepted, "no request was accepted: the documented example must reach the store"
    assert {m[1]["job_id"] for m in served.bus.messages if m[1]["op"] == "submit"} == served.accepted
