"""Auth never turns itself off (issue 12, item 4).

`API_TOKENS` set to a value that names no token (`","`, `" , "`, blanks) or a token shorter than 16
characters is a configuration error: the embedded server refuses to start (non-zero exit, a clear
message), the deployed api refuses every route but `/health` (503 JSON naming API_TOKENS), never serves
unauthenticated; `/health` says whether auth is on and what is wrong. Unset is the one way to run
without auth.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from shared.ports import JobQuery
from shared.settings import MIN_TOKEN_CHARS, Settings

REPO = Path(__file__).resolve().parents[2]
GOOD = "tok-0123456789abcdef"  # 20 characters
BODY = {"dataset_file": "gs://bucket/data.jsonl", "output_dir": "/tmp/out"}

NO_TOKEN = [("comma", ","), ("spaced comma", " , "), ("blanks", "   "), ("empty", ""), ("commas and blanks", " ,, , ")]
TOO_SHORT = [("one short", "short-token"), ("one of two short", f"{GOOD},tok-15-chars-xx"), ("fifteen", "x" * (MIN_TOKEN_CHARS - 1))]
BAD = NO_TOKEN + TOO_SHORT


@pytest.mark.parametrize("value", [v for _, v in NO_TOKEN], ids=[n for n, _ in NO_TOKEN])
def test_a_value_naming_no_token_is_a_configuration_error(value: str) -> None:
    s = Settings(API_TOKENS=value)
    assert s.auth_problem is not None and "names no token" in s.auth_problem
    assert s.auth_problem in s.config_errors


@pytest.mark.parametrize("value", [v for _, v in TOO_SHORT], ids=[n for n, _ in TOO_SHORT])
def test_a_short_token_is_a_configuration_error(value: str) -> None:
    s = Settings(API_TOKENS=value)
    assert s.auth_problem is not None and f"shorter than {MIN_TOKEN_CHARS} characters" in s.auth_problem
    for token in value.split(","):
        assert token.strip() not in s.auth_problem  # the message never shows a token


@pytest.mark.parametrize("value", [GOOD, f" {GOOD} , {GOOD[::-1]} ,", "x" * MIN_TOKEN_CHARS])
def test_long_enough_tokens_are_fine(value: str) -> None:
    s = Settings(API_TOKENS=value)
    assert s.auth_problem is None and s.tokens and all(len(t) >= MIN_TOKEN_CHARS for t in s.tokens)


def test_unset_is_auth_off_and_says_so(api) -> None:
    url, _, _ = api()
    body = requests.get(f"{url}/health").json()
    assert body["auth"] == {"enabled": False, "problem": None} and body["status"] == "ok"
    assert requests.get(f"{url}/jobs").status_code == 200


def test_valid_tokens_are_on_and_say_so(api) -> None:
    url, _, _ = api(API_TOKENS=GOOD)
    body = requests.get(f"{url}/health").json()
    assert body["auth"] == {"enabled": True, "problem": None} and body["status"] == "ok"
    assert requests.get(f"{url}/jobs").status_code == 401
    assert requests.get(f"{url}/jobs", headers={"Authorization": f"Bearer {GOOD}"}).status_code == 200


def test_a_configured_token_header_takes_the_raw_token(api) -> None:
    """The studio's clusters configured with another header name send the raw token there (no `Bearer `)."""
    url, _, _ = api(API_TOKENS=GOOD, API_TOKEN_HEADER="X-Cluster-Token")
    assert requests.get(f"{url}/jobs", headers={"X-Cluster-Token": GOOD}).status_code == 200
    assert requests.get(f"{url}/jobs", headers={"Authorization": f"Bearer {GOOD}"}).status_code == 200
    for headers in ({"X-Cluster-Token": GOOD[::-1]}, {"X-Cluster-Token": ""}, {"X-Other": GOOD}, {"Authorization": GOOD}):
        assert requests.get(f"{url}/jobs", headers=headers).status_code == 401, headers
    # Without the setting, that header is not a way in.
    url, _, _ = api(API_TOKENS=GOOD)
    assert requests.get(f"{url}/jobs", headers={"X-Cluster-Token": GOOD}).status_code == 401


def test_a_token_header_name_is_checked() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        Settings(API_TOKEN_HEADER="X Bad: header")


@pytest.mark.parametrize("value", [v for _, v in BAD], ids=[n for n, _ in BAD])
def test_the_deployed_api_refuses_every_route_but_health(api, value: str) -> None:
    url, bus, container = api(API_TOKENS=value)
    for headers in ({}, {"Authorization": "Bearer "}, {"Authorization": f"Bearer {value.split(',')[0].strip() or 'x'}"}):
        for method, path in [("get", "/jobs"), ("post", "/train"), ("get", "/jobs/x"), ("get", "/openapi.json"), ("post", "/jobs/x/cancel")]:
            r = getattr(requests, method)(f"{url}{path}", json=BODY if method == "post" else None, headers=headers)
            assert r.status_code == 503, (path, r.text)
            assert r.headers["Content-Type"].startswith("application/json")
            body = r.json()
            assert "misconfigured" in body["error"] and body["errors"][0]["field"] == "API_TOKENS"
    assert bus.messages == [] and container.store.list(JobQuery(limit=5)).items == []
    health = requests.get(f"{url}/health")
    assert health.status_code == 200  # a configuration error is reported (degraded), as the others are
    body = health.json()
    assert body["status"] == "degraded"
    assert body["auth"]["enabled"] is True and body["auth"]["problem"] == Settings(API_TOKENS=value).auth_problem
    assert body["auth"]["problem"] in body["configErrors"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("value", [",", "   ", "short-token"], ids=["comma", "blanks", "short"])
def test_the_embedded_server_refuses_to_start(tmp_path: Path, value: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("API_", "K8S_", "VERTEX_"))}
    env.update(API_TOKENS=value, PORT=str(_free_port()), SQLITE_PATH=str(tmp_path / "e.db"), RECONCILE_INTERVAL_SECONDS="0")
    proc = subprocess.Popen([sys.executable, "-m", "functions.dev.embedded"], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        pytest.fail(f"the embedded server started with API_TOKENS={value!r}: {out[-2000:]}")
    assert proc.returncode == 2, out
    assert "not starting" in out and "API_TOKENS" in out
    assert not (tmp_path / "e.db").exists()  # it stopped before opening the store
