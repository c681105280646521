"""Issue 13, item 4: one route table builds both the dispatcher and `GET /openapi.json`, and one model
(`JobSummary`) is both `Job.to_summary()` and its OpenAPI schema.

- every route of the README's API table is in the document, with a JSON schema for each answer it has;
- the document and the dispatcher are the same table: every row is one operation, and each one
  dispatches to its handler (with the path's parameters), or is a 405 naming the methods it does have;
- no documented status is one the api never answers (the old 415), and the ones it does are there;
- the summary's keys, the client model's fields and the schema's properties are one list.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from functions.http.models import JobSummary
from functions.http.openapi import openapi_document
from functions.http.routes import ROUTER, ROUTES
from shared.domain.backends.local import LOCAL
from shared.domain.job import Job
from shared.domain.status import JobStatus

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_routes() -> set[tuple[str, str]]:
    """`(method, path)` of each row of the README's API table (`| `GET /jobs/{id}` | ...`)."""
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## API", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(GET|POST) (/[^`]*)` \|", section, flags=re.M)
    assert len(rows) >= 12, rows
    return {(method.lower(), path) for method, path in rows}


def test_every_readme_route_is_documented_with_its_answers() -> None:
    doc = openapi_document()
    schemas = doc["components"]["schemas"]
    for method, path in readme_routes():
        assert method in doc["paths"].get(path, {}), f"{method.upper()} {path} is not in the OpenAPI document"
        responses = doc["paths"][path][method]["responses"]
        success = [s for s in responses if s.startswith("2")]
        assert success, f"{method.upper()} {path} documents no success"
        for status, answer in responses.items():
            schema = answer["content"]["application/json"]["schema"]
            name = schema["$ref"].rsplit("/", 1)[1]
            assert name in schemas, f"{method.upper()} {path} {status}: no schema {name}"


def test_document_and_dispatcher_are_the_same_table() -> None:
    doc = openapi_document()
    operations = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    assert operations == {(r.method.lower(), r.path) for r in ROUTES}
    assert len(ROUTES) == len(operations), "two rows for one operation"
    for route in ROUTES:
        concrete = re.sub(r"\{\w+\}", "job-1", route.path)
        hit = ROUTER.match(route.method, concrete)
        assert hit.route is route and hit.args == ("job-1",) * len(route.path_params), route.path
        assert hit.token_needed is route.auth
        other = "GET" if route.method == "POST" else "POST"
        miss = ROUTER.match(other, concrete)
        if miss.route is None:
            assert route.method in miss.allowed  # a 405 whose Allow names it
    assert ROUTER.match("GET", "/nowhere").allowed == () and ROUTER.match("GET", "/nowhere").token_needed
    assert not ROUTER.match("POST", "/health").token_needed  # /health never needs a token, whatever the method


def test_documented_statuses_are_the_answered_ones() -> None:
    doc = openapi_document()
    train = doc["paths"]["/train"]["post"]["responses"]
    assert "415" not in train  # any content type is read as JSON: the api never answers 415
    assert {"202", "400", "401", "409", "413", "503"} == set(train)
    manifest = doc["paths"]["/jobs/{id}/manifest"]["get"]["responses"]
    assert "400" not in manifest  # no query argument: nothing to refuse
    assert {"404", "401", "503"} <= set(manifest)
    assert set(doc["paths"]["/health"]["get"]["responses"]) == {"200", "503"}
    assert doc["paths"]["/health"]["get"]["security"] == []
    logs = doc["paths"]["/jobs/{id}/logs"]["get"]["responses"]["200"]["content"]
    assert set(logs) == {"application/json", "text/event-stream"}


def job(**changes: object) -> Job:
    t = datetime(2026, 1, 1, tzinfo=UTC)
    base = Job(id="j1", name="n", backend=LOCAL, status=JobStatus.QUEUED, created_at=t, updated_at=t, dataset_file="gs://b/d", output_dir="/o")
    return base.replace(**changes)


@pytest.mark.parametrize("changes", [{}, {"env_names": ("HF_TOKEN",), "webhooks": ("https://h/x?token=s",), "args": ("--dataset_file=a", "--dataset_file=b")}])
def test_one_model_is_the_summary_and_its_schema(changes: dict[str, object]) -> None:
    summary = job(**changes).to_summary()
    assert list(summary) == list(JobSummary.model_fields)
    schema = openapi_document()["components"]["schemas"]["JobSummary"]
    assert set(schema["properties"]) == set(summary)
    # The client's model reads the api's answer back unchanged.
    assert JobSummary.model_validate(summary).model_dump(mode="json") == summary
