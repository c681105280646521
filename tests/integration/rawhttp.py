"""Raw-socket HTTP for the connection tests: send exactly the bytes a test means (half a header, a
malformed line, an endless chunked body) and read back exactly what the server wrote, and when it closed."""

from __future__ import annotations

import json
import socket
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Answer:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    def json(self) -> Any:
        return json.loads(self.body)


def connect(port: int, timeout: float = 5.0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_answer(sock: socket.socket, timeout: float = 5.0) -> Answer | None:
    """One response (by its Content-Length), or None when the server closed without one."""
    sock.settimeout(timeout)
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                return None
            data += chunk
    except ConnectionResetError:
        return None
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return Answer(status, headers, body[:length])


def closed_within(sock: socket.socket, seconds: float) -> float | None:
    """Seconds until the server closed the connection (reading and dropping anything it sends), or
    None if it was still open after `seconds`."""
    start = time.monotonic()
    sock.settimeout(0.05)
    while time.monotonic() - start < seconds:
        try:
            if not sock.recv(65536):
                return time.monotonic() - start
        except TimeoutError:
            continue
        except (ConnectionResetError, BrokenPipeError):
            return time.monotonic() - start
    return None


def assert_json_error(answer: Answer | None, status: int, *, protocol: bool = True) -> dict:
    """A JSON error in the app's shape, with Connection: close (`protocol`: written by the server's
    protocol, which always says `errors`, empty)."""
    assert answer is not None, "the server closed without an answer"
    assert answer.status == status, (answer.status, answer.body[:200])
    assert answer.headers["content-type"].startswith("application/json"), answer.headers
    assert answer.headers.get("connection") == "close", answer.headers
    body = answer.json()
    assert isinstance(body["error"], str) and body["error"]
    if protocol:
        assert body["errors"] == []
    return body
