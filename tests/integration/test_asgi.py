"""The ASGI adapter (`functions/http/asgi.py`) over real HTTP, under uvicorn: what it does on its own, beyond
`Api.handle` (whose contract the `api` fixture already runs under both servers).

- A Content-Length over the limit is refused (413 JSON) before a byte of the body is read; a chunked body
  is read up to the limit + 1 byte and refused by the route; at the limit it is accepted.
- Query arguments and headers read as Flask reads them: a repeated name gives its first value, header
  names are case-insensitive.
- `follow=true` streams Server-Sent Events through the adapter's thread pool and ends with `end`; a
  follower that goes away makes the adapter close the generator (the store is no longer polled).
- Every answer is JSON with a correct length, including 404 and the adapter's own last-guard 500, and a
  204 carries no Content-Length (RFC 9110 8.6).
"""

from __future__ import annotations

import http.client
import inspect
import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from functions.http.asgi import AsgiApi
from functions.wiring import Container
from shared.domain.status import JobStatus
from shared.ports import JobQuery
from tests.fakes.api_client import lines, read_sse, set_status, submit
from tests.integration.conftest import RecordingBus, make_container

LIMIT = 2048  # MAX_BODY_BYTES for these tests (the settings' minimum is 1024)
HEAD = b'{"dataset_file":"gs://b/d.jsonl","output_dir":"/o"'


@dataclass
class Served:
    url: str
    port: int
    bus: RecordingBus
    container: Container
    app: AsgiApi
    server: Any  # uvicorn.Server

    def stored(self) -> list:
        return self.container.store.list(JobQuery(limit=500)).items


@pytest.fixture
def asgi(tmp_path: Path, serve) -> Callable[..., Served]:
    def _make(**env: Any) -> Served:
        bus, container = make_container(tmp_path, **env)
        app = AsgiApi(container.api)
        served = serve(app, asgi=True)
        return Served(served.url, served.port, bus, container, app, served.server)

    return _make


def body_of_size(size: int) -> bytes:
    """A valid train request of exactly `size` bytes (whitespace before the closing brace)."""
    pad = size - len(HEAD) - 1
    assert pad >= 0
    return HEAD + b" " * pad + b"}"


def chunks(data: bytes, size: int = 100):
    for i in range(0, len(data), size):
        yield data[i : i + size]


def raw_exchange(port: int, request: bytes, timeout: float = 5.0) -> tuple[str, dict[str, str], bytes]:
    """Send `request` as is, read one response: its first line, headers (lower-case) and body."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        buf = b""
        while b"\r\n\r\n" not in buf:
            data = sock.recv(65536)
            assert data, f"connection closed before the response head: {buf!r}"
            buf += data
        head, _, body = buf.partition(b"\r\n\r\n")
        first, *header_lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in header_lines)}
        length = int(headers["content-length"])
        while len(body) < length:
            data = sock.recv(65536)
            assert data, "connection closed before the end of the body"
            body += data
        return first, headers, body


def assert_json_error(r: requests.Response, status: int) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["Content-Type"] == "application/json"
    assert int(r.headers["Content-Length"]) == len(r.content)
    body = r.json()
    assert isinstance(body["error"], str) and body["error"]
    return body


# ---- bodies ----------------------------------------------------------------------------------------


def test_content_length_over_the_limit_is_413_before_the_body_is_read(asgi) -> None:
    s = asgi(MAX_BODY_BYTES=str(LIMIT))
    # Headers only: 10 GB announced, not one byte sent. An adapter that waited for the body would time out;
    # and with `Expect: 100-continue` it must not invite the client to send it either.
    request = b"POST /train HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: 10000000000\r\n\r\n"
    first, headers, body = raw_exchange(s.port, request)
    assert first.startswith("HTTP/1.1 413 "), first
    assert headers["content-type"] == "application/json"
    assert json.loads(body) == {"error": f"Request body is larger than {LIMIT} bytes."}
    assert s.stored() == [] and s.bus.messages == []


@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "content-length"])
@pytest.mark.parametrize("size,status", [(LIMIT, 202), (LIMIT + 1, 413), (LIMIT * 8, 413)], ids=["at-limit", "one-over", "far-over"])
def test_body_at_the_limit_is_accepted_and_over_it_is_413(asgi, chunked: bool, size: int, status: int) -> None:
    s = asgi(MAX_BODY_BYTES=str(LIMIT))
    data = body_of_size(size)
    # A generator makes requests send `Transfer-Encoding: chunked`, 100 bytes a chunk (many ASGI messages).
    r = requests.post(f"{s.url}/train", data=chunks(data) if chunked else data, headers={"Content-Type": "application/json"}, timeout=10)
    if chunked:
        assert r.request.headers.get("Transfer-Encoding") == "chunked" and "Content-Length" not in r.request.headers
    else:
        assert r.request.headers["Content-Length"] == str(size)
    if status == 202:
        assert r.status_code == 202, r.text
        job = r.json()["job"]
        assert [j.id for j in s.stored()] == [job["id"]] and len(s.bus.messages) == 1
    else:
        assert assert_json_error(r, 413)["error"] == f"Request body is larger than {LIMIT} bytes."
        assert s.stored() == [] and s.bus.messages == []


def test_connection_is_reusable_after_a_413(asgi) -> None:
    """The refused body is drained by the server, not parsed as the next request."""
    s = asgi(MAX_BODY_BYTES=str(LIMIT))
    conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=5)
    try:
        conn.request("POST", "/train", body=body_of_size(LIMIT + 500), headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        assert r.status == 413 and json.loads(r.read())["error"].startswith("Request body is larger")
        conn.request("GET", "/health")
        r = conn.getresponse()
        assert r.status == 200 and json.loads(r.read())["status"] == "ok"
    finally:
        conn.close()


# ---- query arguments and headers -------------------------------------------------------------------


def test_repeated_query_argument_gives_its_first_value(asgi) -> None:
    s = asgi()
    ids = [submit(s.url) for _ in range(3)]
    r = requests.get(f"{s.url}/jobs?limit=2&limit=oops")
    assert r.status_code == 200, r.text
    assert [j["id"] for j in r.json()["jobs"]] == [ids[2], ids[1]]
    r = requests.get(f"{s.url}/jobs?limit=oops&limit=2")
    assert assert_json_error(r, 400)["errors"][0]["field"] == "limit"
    # Percent-encoded names and values are decoded; a blank first value counts as given (and blank).
    r = requests.get(f"{s.url}/jobs?%6Cimit=1&status=&status=failed")
    assert r.status_code == 200 and [j["id"] for j in r.json()["jobs"]] == [ids[2]]


def test_header_names_are_case_insensitive(asgi) -> None:
    s = asgi(API_TOKENS="tok-1-0123456789abcdef")
    body = json.dumps({"dataset_file": "gs://b/d.jsonl", "output_dir": "/o"})
    answers = []
    for name in ("idempotency-key", "IDEMPOTENCY-KEY", "Idempotency-Key"):
        conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=5)
        try:
            # http.client sends header names exactly as given.
            conn.request(
                "POST", "/train", body=body, headers={name: "key-1", "authorization": "Bearer tok-1-0123456789abcdef", "content-type": "application/json"}
            )
            r = conn.getresponse()
            answers.append((r.status, r.getheader("Idempotent-Replayed"), json.loads(r.read())["job"]["id"]))
        finally:
            conn.close()
    job_id = answers[0][2]
    assert answers == [(202, None, job_id), (202, "true", job_id), (202, "true", job_id)]
    assert len(s.bus.messages) == 1 and [j.id for j in s.stored()] == [job_id]
    assert s.stored()[0].idempotency_key == "key-1"
    assert requests.get(f"{s.url}/jobs", headers={"AUTHORIZATION": "Bearer tok-1-0123456789abcdef"}).status_code == 200
    assert requests.get(f"{s.url}/jobs", headers={"authorization": "Bearer nope"}).status_code == 401


# ---- Server-Sent Events ----------------------------------------------------------------------------


def test_follow_delivers_the_lines_then_end_for_a_finished_job(asgi) -> None:
    s = asgi()
    job_id = submit(s.url)
    s.container.store.append_logs(job_id, lines(5), 10_000)
    set_status(s.container.store, job_id, JobStatus.SUCCEEDED)
    r = requests.get(f"{s.url}/jobs/{job_id}/logs", params={"follow": "true"}, stream=True, timeout=10)
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "text/event-stream; charset=utf-8"
    assert r.headers["Cache-Control"] == "no-cache" and r.headers["X-Accel-Buffering"] == "no"
    assert "Content-Length" not in r.headers and r.headers["Transfer-Encoding"] == "chunked"
    events = read_sse(r)
    assert [(e[0], e[1]) for e in events] == [(str(i), "log") for i in range(1, 6)] + [(None, "status"), (None, "end")]
    assert [json.loads(e[2])["message"] for e in events[:5]] == [f"line {i}" for i in range(5)]
    assert json.loads(events[-1][2]) == {"status": "succeeded", "lastSeq": 5}
    # Resuming after the last line gives no line again, only the end.
    r = requests.get(f"{s.url}/jobs/{job_id}/logs", params={"follow": "1"}, headers={"Last-Event-ID": "5"}, stream=True, timeout=10)
    assert [e[1] for e in read_sse(r)] == ["status", "end"]


class FollowProbe:
    """Captures the `_follow` generators the api hands the adapter, and counts the polls they make."""

    def __init__(self, api) -> None:
        self.generators: list = []
        self.polls = 0
        original = api._follow

        def follow(*args):
            gen = original(*args)
            self.generators.append(gen)
            return gen

        def sleep(seconds: float) -> None:
            self.polls += 1
            time.sleep(seconds)

        api._follow = follow
        api.sleep = sleep
        api.follow_poll_seconds = 0.01
        api.follow_max_seconds = 20  # a backstop: a generator left running can't outlive the test by much

    def closed(self) -> bool:
        return len(self.generators) == 1 and inspect.getgeneratorstate(self.generators[0]) == inspect.GEN_CLOSED


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def follow_then_disconnect(s: Served, job_id: str, n_logs: int) -> list:
    r = requests.get(f"{s.url}/jobs/{job_id}/logs", params={"follow": "true"}, stream=True, timeout=10)
    events = read_sse(r, stop_after_logs=n_logs)  # closes the response: the client goes away mid-stream
    # The server has seen the connection go (the POST's connection closed long before).
    assert wait_until(lambda: not s.server.server_state.connections), "the server still holds the connection"
    return events


def test_follower_that_disconnects_makes_the_adapter_close_the_generator(asgi) -> None:
    s = asgi()
    probe = FollowProbe(s.container.api)
    job_id = submit(s.url)
    set_status(s.container.store, job_id, JobStatus.RUNNING)
    s.container.store.append_logs(job_id, lines(10), 10_000)
    events = follow_then_disconnect(s, job_id, 3)
    assert [e[0] for e in events if e[1] == "log"] == ["1", "2", "3"]
    assert len(probe.generators) == 1
    # The job keeps logging: the next chunk the generator makes is the adapter's cue to stop and close it.
    n = 10
    while not probe.closed() and n < 500:
        s.container.store.append_logs(job_id, lines(1, n), 10_000)
        n += 1
        time.sleep(0.02)
    assert probe.closed(), inspect.getgeneratorstate(probe.generators[0])
    # Closed: the store is polled no more, though the job is still running and still logging.
    polls = probe.polls
    s.container.store.append_logs(job_id, lines(1, n), 10_000)
    time.sleep(0.2)  # 20 poll intervals
    assert probe.polls == polls
    assert s.container.store.get(job_id).status == JobStatus.RUNNING


def test_follower_of_a_quiet_job_that_disconnects_closes_the_generator(asgi) -> None:
    """A running job that writes nothing: the api's keepalive comment on a quiet poll is the adapter's
    chance to see the follower gone, so no stream thread keeps polling the store for it (up to
    follow_max_seconds) nor holds the interpreter at exit."""
    s = asgi()
    probe = FollowProbe(s.container.api)
    job_id = submit(s.url)
    set_status(s.container.store, job_id, JobStatus.RUNNING)
    s.container.store.append_logs(job_id, lines(3), 10_000)
    try:
        follow_then_disconnect(s, job_id, 3)
        assert wait_until(probe.closed, timeout=2.0), "the generator still polls the store after the client left"
        polls = probe.polls
        time.sleep(0.2)  # 20 poll intervals
        assert probe.polls == polls
    finally:
        # Let a generator that is still running end (the job is final), so that no stream thread outlives the test.
        set_status(s.container.store, job_id, JobStatus.SUCCEEDED)
        assert wait_until(probe.closed)


# ---- routing and framing ---------------------------------------------------------------------------


@pytest.mark.parametrize("method,path", [("GET", "/nope"), ("POST", "/jobs/x/y/z"), ("PUT", "/submissions"), ("GET", "/%E2%9C%93")])
def test_unknown_routes_are_404_json(asgi, method: str, path: str) -> None:
    s = asgi()
    r = requests.request(method, f"{s.url}{path}")
    body = assert_json_error(r, 404)
    # The path is percent-decoded, as Flask's request.path is.
    assert body["error"] == f"No route {method} {requests.utils.unquote(path)}."


def test_204_has_no_content_length_and_keeps_the_connection(asgi) -> None:
    s = asgi(CORS_ORIGINS="https://studio.example.com")
    conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=5)
    try:
        conn.request("OPTIONS", "/train", headers={"Origin": "https://studio.example.com", "Access-Control-Request-Method": "POST"})
        r = conn.getresponse()
        assert r.status == 204 and r.read() == b""
        assert r.getheader("Content-Length") is None and r.getheader("Transfer-Encoding") is None
        assert r.getheader("Access-Control-Allow-Origin") == "https://studio.example.com"
        conn.request("GET", "/health")  # same connection: the 204 was framed right
        r = conn.getresponse()
        assert r.status == 200 and json.loads(r.read())["status"] == "ok"
    finally:
        conn.close()


def test_an_error_escaping_the_api_is_a_500_json(asgi, monkeypatch) -> None:
    s = asgi()

    def broken(request):
        raise RuntimeError("boom")

    monkeypatch.setattr(s.container.api, "handle", broken)
    r = requests.get(f"{s.url}/health")
    assert assert_json_error(r, 500) == {"error": "Internal error."}
    # The server survives it.
    monkeypatch.undo()
    assert requests.get(f"{s.url}/health").status_code == 200


def test_concurrent_followers_each_get_their_own_stream(asgi) -> None:
    """Streams run on the adapter's thread pool, not on the event loop: many at once, and plain requests
    are answered while they run."""
    s = asgi()
    s.container.api.follow_poll_seconds = 0.01
    job_id = submit(s.url)
    set_status(s.container.store, job_id, JobStatus.RUNNING)
    results: list[list] = []

    def follow() -> None:
        results.append(read_sse(requests.get(f"{s.url}/jobs/{job_id}/logs", params={"follow": "true"}, stream=True, timeout=10)))

    threads = [threading.Thread(target=follow) for _ in range(8)]
    for t in threads:
        t.start()
    assert wait_until(lambda: len(s.server.server_state.connections) >= 8)
    assert requests.get(f"{s.url}/health", timeout=5).status_code == 200
    s.container.store.append_logs(job_id, lines(4), 10_000)
    set_status(s.container.store, job_id, JobStatus.FAILED)
    for t in threads:
        t.join(10)
    assert len(results) == 8
    for events in results:
        assert [e[0] for e in events if e[1] == "log"] == ["1", "2", "3", "4"]
        assert events[-1][1] == "end" and json.loads(events[-1][2])["status"] == "failed"
