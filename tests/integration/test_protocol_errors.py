"""Issue 12, item 6: every answer of the embedded server is JSON, the protocol-level ones too. Requests the
HTTP parser refuses (uvicorn's own `text/plain` "Invalid HTTP request received." before) get a JSON 400
(431 for oversized headers) with `Connection: close`, and the connection closes; the server goes on
serving. Raw bytes over a real socket against `AsgiApi` under uvicorn as the embedded server runs it."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from functions.http.asgi import AsgiApi
from tests.integration.conftest import make_container
from tests.integration.rawhttp import assert_json_error, closed_within, connect, read_answer

MALFORMED = [
    ("request line over 64 KB", b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\nHost: t\r\n\r\n", 400),
    ("request line over the setting", b"GET /jobs?name=" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: t\r\n\r\n", 400),
    ("headers over 64 KB", b"GET /health HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 200_000 + b"\r\n\r\n", 431),
    ("control byte in a header value", b"GET /health HTTP/1.1\r\nHost: t\r\nX-A: a\x01b\r\n\r\n", 400),
    ("control byte in a header name", b"GET /health HTTP/1.1\r\nHost: t\r\nX\x01A: b\r\n\r\n", 400),
    ("Content-Length: -1", b"POST /train HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n", 400),
    ("Content-Length not a number", b"POST /train HTTP/1.1\r\nHost: t\r\nContent-Length: ten\r\n\r\n", 400),
    (
        "Content-Length and Transfer-Encoding",
        b"POST /train HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{}\n\r\n0\r\n\r\n",
        400,
    ),
    ("two Content-Lengths", b"POST /train HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{} ", 400),
    ("two equal Content-Lengths", b"POST /train HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n{}", 400),
    ("a bad chunk size", b"POST /train HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
    ("an unknown transfer coding", b"POST /train HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n", 400),
    ("a bad method", b"G@T /health HTTP/1.1\r\nHost: t\r\n\r\n", 400),
    ("a space in the target", b"GET /a b HTTP/1.1\r\nHost: t\r\n\r\n", 400),
    ("a NUL in the target", b"GET /a\x00b HTTP/1.1\r\nHost: t\r\n\r\n", 400),
    ("bare LF line ends", b"GET /health HTTP/1.1\nHost: t\n\n", 400),
    ("obsolete line folding", b"GET /health HTTP/1.1\r\nHost: t\r\nX-A: a\r\n b\r\n\r\n", 400),
    ("TLS to a plain port", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 32, 400),
]


@pytest.fixture
def server(tmp_path: Path, serve):
    _, container = make_container(tmp_path, CORS_ORIGINS="https://studio.example.com")
    return serve(AsgiApi(container.api), asgi=True)


@pytest.mark.parametrize("name, raw, status", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_requests_get_a_json_error_and_the_connection_closes(server, name, raw, status) -> None:
    sock = connect(server.port)
    try:
        sock.sendall(raw)
    except (BrokenPipeError, ConnectionResetError):
        pass  # refused part-way through (an oversized head): the answer was written first
    answer = read_answer(sock)
    assert_json_error(answer, status)
    assert answer.headers.get("vary") == "Origin"  # CORS is configured: like every answer of the app
    assert closed_within(sock, 2) is not None
    # and the server is none the worse for it
    assert requests.get(f"{server.url}/health", timeout=5).status_code == 200


def test_a_malformed_request_after_a_good_one_on_the_same_connection(server) -> None:
    sock = connect(server.port)
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
    assert read_answer(sock).status == 200
    sock.sendall(b"POST /train HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n")
    assert_json_error(read_answer(sock), 400)
    assert closed_within(sock, 2) is not None


def test_well_formed_edge_requests_are_served(server) -> None:
    """What the parser accepts stays accepted: a long-ish target within the setting, a header near the
    bound, an HTTP/1.0 request."""
    for raw in (
        b"GET /jobs?name=" + b"a" * 8000 + b" HTTP/1.1\r\nHost: t\r\n\r\n",
        b"GET /health HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 60_000 + b"\r\n\r\n",
        b"GET /health HTTP/1.0\r\n\r\n",
    ):
        sock = connect(server.port)
        sock.sendall(raw)
        answer = read_answer(sock)
        assert answer is not None and answer.status == 200 and answer.headers["content-type"].startswith("application/json")
        sock.close()
