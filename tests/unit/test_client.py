"""The client's retry and resume rules, over httpx's own test transport (no server): a submit retried after
a failed connection and a 503 carries one Idempotency-Key throughout; a dropped log stream resumes with
Last-Event-ID and yields each line once; cancel is not retried once the request may have arrived."""

from __future__ import annotations

import json

import httpx
import pytest

from functions.client import Client, ConnectionFailed
from functions.client.api_client import parse_sse
from functions.client.errors import BadRequest

JOB = {
    "id": "j1",
    "name": "n",
    "backend": "local",
    "externalId": None,
    "status": "queued",
    "statusReason": None,
    "failureClass": None,
    "createdAt": "2026-12-01T10:00:00.000Z",
    "updatedAt": "2026-12-01T10:00:00.000Z",
    "startedAt": None,
    "finishedAt": None,
    "exitCode": None,
    "command": None,
    "args": [],
    "modelId": None,
    "outputDir": "/tmp/o",
    "datasetFile": "/tmp/d",
    "uploadOutputTo": None,
    "env": {},
    "labels": {},
    "error": None,
    "logTail": "",
    "logCount": 0,
    "progress": None,
    "dryRun": False,
    "cancelRequested": False,
}


def client(handler) -> Client:
    return Client("http://test", transport=httpx.MockTransport(handler), retries=3, sleep=lambda s: None)


def test_submit_retries_with_one_idempotency_key() -> None:
    keys: list[str] = []
    answers = iter(["connect", 503, 202])

    def handler(request: httpx.Request) -> httpx.Response:
        keys.append(request.headers["Idempotency-Key"])
        answer = next(answers)
        if answer == "connect":
            raise httpx.ConnectError("refused", request=request)
        if answer == 503:
            return httpx.Response(503, json={"error": "busy"}, headers={"Retry-After": "0"})
        return httpx.Response(202, json={"job": JOB})

    job = client(handler).submit({"dataset_file": "/tmp/d"})
    assert job.id == "j1" and len(keys) == 3 and len(set(keys)) == 1 and keys[0]


def test_field_errors_are_typed() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"error": "Invalid request.", "errors": [{"field": "max_steps", "message": "must be >= -1"}]})

    with pytest.raises(BadRequest) as err:
        client(handler).submit({})
    assert err.value.lines() == ["Invalid request.", "max_steps: must be >= -1"]


def test_cancel_is_not_retried_after_the_request_may_have_arrived() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        raise httpx.ReadTimeout("no answer", request=request)

    with pytest.raises(ConnectionFailed):
        client(handler).cancel("j1")
    assert len(calls) == 1


def sse(*events: tuple[str, int | None, dict]) -> bytes:
    out = "retry: 1000\n\n: keepalive\n\n"
    for event, seq, data in events:
        out += (f"id: {seq}\n" if seq is not None else "") + f"event: {event}\ndata: {json.dumps(data)}\n\n"
    return out.encode()


def line(seq: int) -> dict:
    return {"seq": seq, "timestamp": "2026-12-01T10:00:00.000Z", "stream": "stdout", "message": f"line {seq}"}


class Dropping(httpx.SyncByteStream):
    """A stream that sends its bytes, then breaks like a dropped connection."""

    def __init__(self, data: bytes):
        self.data = data

    def __iter__(self):
        yield self.data
        raise httpx.ReadError("connection reset")


def test_follow_resumes_with_last_event_id_and_yields_each_line_once() -> None:
    seen_ids: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen_ids.append(request.headers.get("Last-Event-ID"))
        if len(seen_ids) == 1:
            return httpx.Response(200, stream=Dropping(sse(("log", 1, line(1)), ("log", 2, line(2)), ("log", 3, line(3)))))
        if len(seen_ids) == 2:
            raise httpx.ConnectError("server restarting", request=request)
        # The server replays from its own idea of the cursor: a line already seen comes again.
        return httpx.Response(200, content=sse(("log", 3, line(3)), ("log", 4, line(4)), ("status", None, {"status": "succeeded"}), ("end", None, {})))

    got = [l.seq for l in client(handler).logs("j1", follow=True)]
    assert got == [1, 2, 3, 4]
    assert seen_ids == ["0", "3", "3"]


def test_parse_sse_multiline_data_and_comments() -> None:
    events = list(parse_sse(iter(["retry: 5", "", ": comment", "id: 7", "event: log", "data: a", "data: b", "", "data: c", ""])))
    assert events == [("log", "7", "a\nb"), ("message", None, "c")]
