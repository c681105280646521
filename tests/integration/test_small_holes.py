"""Issue 12, item 7, over real HTTP under both servers: `Last-Event-ID` is bound like `after` (a 400 naming
it, not an OverflowError in the middle of the stream), and every answer says `Vary: Origin` when CORS is
configured (errors and refused origins too), none when it is not."""

from __future__ import annotations

import pytest
import requests

from shared.domain.status import JobStatus
from tests.fakes.api_client import submit

STUDIO = "https://studio.example.com"


@pytest.mark.parametrize("value", [str(2**63), str(2**64 + 5), str(2**53 + 1), "-1", "9" * 5000, "abc"])
def test_last_event_id_out_of_range_is_a_400_naming_it(api, value) -> None:
    url, _, _ = api()
    job_id = submit(url)
    r = requests.get(f"{url}/jobs/{job_id}/logs", params={"follow": "true"}, headers={"Last-Event-ID": value}, timeout=10)
    assert r.status_code == 400 and r.headers["Content-Type"].startswith("application/json")
    assert [e["field"] for e in r.json()["errors"]] == ["Last-Event-ID"]


def test_after_and_last_event_id_share_their_bound(api) -> None:
    url, _, c = api()
    job_id = submit(url)
    c.store.update(job_id, lambda j: j.replace(status=JobStatus.SUCCEEDED))
    top = str(2**53)
    a = requests.get(f"{url}/jobs/{job_id}/logs", params={"after": top}, timeout=10)
    b = requests.get(f"{url}/jobs/{job_id}/logs", params={"follow": "true"}, headers={"Last-Event-ID": top}, timeout=10)
    assert a.status_code == 200 and b.status_code == 200  # the bound itself is allowed for both
    assert "event: end" in b.text
    over = str(2**53 + 1)
    a = requests.get(f"{url}/jobs/{job_id}/logs", params={"after": over}, timeout=10)
    b = requests.get(f"{url}/jobs/{job_id}/logs", params={"follow": "true"}, headers={"Last-Event-ID": over}, timeout=10)
    assert a.status_code == b.status_code == 400
    assert a.json()["errors"][0]["message"] == b.json()["errors"][0]["message"]


@pytest.mark.parametrize(
    "method, path, origin, status",
    [
        ("GET", "/health", STUDIO, 200),
        ("GET", "/jobs", "https://evil.example.com", 200),
        ("GET", "/jobs", None, 200),
        ("GET", "/nowhere", STUDIO, 404),
        ("POST", "/train", "https://evil.example.com", 400),
        ("DELETE", "/train", None, 405),
        ("OPTIONS", "/train", "https://evil.example.com", 204),
    ],
)
def test_vary_origin_on_every_answer_when_cors_is_configured(api, method, path, origin, status) -> None:
    url, _, _ = api(CORS_ORIGINS=STUDIO)
    headers = {"Origin": origin} if origin else {}
    r = requests.request(method, f"{url}{path}", headers=headers, data=b"{" if method == "POST" else None, timeout=10)
    assert r.status_code == status
    assert "Origin" in [v.strip() for v in r.headers.get("Vary", "").split(",")]
    assert ("Access-Control-Allow-Origin" in r.headers) == (origin == STUDIO)


def test_no_vary_without_cors(api) -> None:
    url, _, _ = api()
    r = requests.get(f"{url}/jobs", headers={"Origin": STUDIO}, timeout=10)
    assert r.status_code == 200 and "Vary" not in r.headers and "Access-Control-Allow-Origin" not in r.headers
