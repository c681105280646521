"""A tiny threaded HTTP server the fakes build on: free port, request log, injectable faults.

Each fake (`FakeKubernetesAPI`, `FakeVertexAPI`) subclasses `FakeServer` and implements
`route(request) -> Response`. The server runs `http.server.ThreadingHTTPServer` in a daemon thread on
127.0.0.1 and a free port, speaks HTTP/1.1 with keep-alive (the official clients pool connections), and
records every request in `requests` (method, path, query, parsed body, status answered).

Faults (`inject`) are matched in order against each request before it is routed:
- `status=503`: answer that status instead (in the fake's own error format), without doing the work;
- `delay=0.5`: sleep before answering, so a client with a shorter read timeout times out;
- `apply=True` with either: do the work anyway, then fail or stall: "the server created it but the
  answer was lost", the case exactly-once logic must survive;
- `times=n` requests are affected (`times=None`: all of them).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any
    raw: bytes = b""
    status: int | None = None  # what was answered; None while in flight or when the client gave up first
    fault: Fault | None = None

    def param(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else default


@dataclass
class Response:
    status: int = 200
    body: Any = None  # JSON-serialisable, or bytes/str sent as is
    headers: dict[str, str] = field(default_factory=dict)
    # A streaming answer (watch): an iterator of byte chunks; the connection is closed at its end.
    stream: Iterator[bytes] | None = None


@dataclass
class Fault:
    method: str | None = None  # None: any method
    path: str = ""  # regex, `re.search`ed against the path (no query string)
    status: int | None = None
    delay: float = 0.0
    apply: bool = False
    times: int | None = 1
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        if self.times is not None and self.hits >= self.times:
            return False
        if self.method and self.method.upper() != method:
            return False
        return re.search(self.path, path) is not None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body leave in one segment: without these, Nagle + delayed ACK add ~40 ms per request.
    disable_nagle_algorithm = True
    wbufsize = 1 << 16
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:  # quiet: the fake keeps its own log
        pass

    def _handle(self) -> None:
        self.server.owner._serve(self)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: FakeServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that timed out and hung up is expected here


class FakeServer:
    """Base class: `start()` / `stop()` (or use as a context manager), `url`, `requests`, `inject()`."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.faults: list[Fault] = []
        self.lock = threading.RLock()
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle -------------------------------------------------------------------------------
    def start(self) -> FakeServer:
        httpd = _HTTPServer(("127.0.0.1", 0), _Handler)
        httpd.owner = self
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True, name=type(self).__name__)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> FakeServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._httpd is not None, "not started"
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # ---- faults and the log ----------------------------------------------------------------------
    def inject(
        self,
        method: str | None = None,
        path: str = "",
        *,
        status: int | None = None,
        delay: float = 0.0,
        apply: bool = False,
        times: int | None = 1,
    ) -> Fault:
        fault = Fault(method=method, path=path, status=status, delay=delay, apply=apply, times=times)
        with self.lock:
            self.faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self.lock:
            self.faults.clear()

    def calls(self, method: str | None = None, path: str = "") -> list[Request]:
        """Logged requests, filtered by method and a path regex."""
        with self.lock:
            return [r for r in self.requests if (method is None or r.method == method.upper()) and re.search(path, r.path)]

    def reset_log(self) -> None:
        with self.lock:
            self.requests.clear()

    # ---- for subclasses --------------------------------------------------------------------------
    def route(self, request: Request) -> Response:  # pragma: no cover - abstract
        raise NotImplementedError

    def error(self, status: int, message: str, reason: str = "") -> Response:
        """The fake's error body for an injected status; subclasses speak their API's format."""
        return Response(status, {"error": {"code": status, "message": message, "status": reason}})

    def sleep(self, seconds: float) -> None:
        self._stopping.wait(seconds)

    # ---- the handler's work ----------------------------------------------------------------------
    def _serve(self, h: _Handler) -> None:
        split = urlsplit(h.path)
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except (UnicodeDecodeError, json.JSONDecodeError):
                body = raw
        request = Request(
            method=h.command,
            path=unquote(split.path),
            query=parse_qs(split.query, keep_blank_values=True),
            headers={k.lower(): v for k, v in h.headers.items()},
            body=body,
            raw=raw,
        )
        with self.lock:
            self.requests.append(request)
            fault = next((f for f in self.faults if f.matches(request.method, request.path)), None)
            if fault is not None:
                fault.hits += 1
                request.fault = fault
        if fault is None:
            response = self._route(request)
        else:
            response = self._route(request) if fault.apply else None
            if fault.delay:
                self.sleep(fault.delay)
            if fault.status is not None:
                response = self.error(fault.status, f"injected fault: HTTP {fault.status}", "InjectedFault")
            elif response is None:
                response = self._route(request)
        request.status = response.status
        try:
            self._send(h, response)
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, OSError):
            request.status = None
            h.close_connection = True

    def _route(self, request: Request) -> Response:
        try:
            # The log keeps the body as sent; the fake works on its own copy.
            return self.route(dataclasses.replace(request, body=copy.deepcopy(request.body)))
        except Exception as exc:  # noqa: BLE001 - a bug in the fake must show as a 500, not a hang
            return self.error(500, f"fake server error: {type(exc).__name__}: {exc}", "InternalError")

    @staticmethod
    def _send(h: _Handler, response: Response) -> None:
        if response.stream is not None:
            h.send_response(response.status)
            h.send_header("Content-Type", response.headers.get("Content-Type", "application/json"))
            h.send_header("Connection", "close")
            h.end_headers()
            h.close_connection = True
            for chunk in response.stream:
                h.wfile.write(chunk)
                h.wfile.flush()
            return
        if isinstance(response.body, (bytes, str)):
            payload = response.body.encode() if isinstance(response.body, str) else response.body
            ctype = response.headers.get("Content-Type", "text/plain")
        else:
            payload = json.dumps(response.body if response.body is not None else {}).encode()
            ctype = response.headers.get("Content-Type", "application/json")
        h.send_response(response.status)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(payload)))
        for key, value in response.headers.items():
            if key.lower() not in ("content-type", "content-length"):
                h.send_header(key, value)
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(payload)
        h.wfile.flush()


def now_rfc3339() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


Route = Callable[[Request], Response]
