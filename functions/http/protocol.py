"""The embedded server's HTTP/1.1 connections, bounded: uvicorn's httptools protocol with our limits.

uvicorn on its own never closes a connection that is idle before its first request, has no deadline for
headers or bodies (half-sent ones hold a socket for ever), takes any number of connections (enough idle
sockets exhaust the process's file limit and `/health` stops answering), keeps reading a body the app
has stopped reading (a chunked upload runs on without end), and answers a request it cannot parse with
a `text/plain` 400 of its own. This subclass keeps uvicorn's request cycle and adds, per connection:

- keep-alive: a connection with no request in progress, fresh or between requests, is closed after
  `HTTP_KEEPALIVE_SECONDS` (uvicorn's timer, armed at connect too);
- a header deadline: a request whose line and headers have begun must complete them within
  `HTTP_HEADER_TIMEOUT_SECONDS`, and they may take at most `HTTP_MAX_REQUEST_LINE_BYTES` (the line) and
  `HTTP_MAX_HEADER_BYTES` (line and headers);
- a body deadline: once the headers are in, the body must arrive within `HTTP_BODY_TIMEOUT_SECONDS`;
- a body bound: reading stops at `MAX_BODY_BYTES` + 1 byte, chunked or not: 413, and the connection
  closes (if the app has answered already, it only closes);
- a connection bound: above `HTTP_MAX_CONNECTIONS` a new connection is answered 503 and closed at once,
  so the sockets held stay well below the file limit.

Every answer written here is JSON like the app's (`{"error": ..., "errors": []}`) with `Connection:
close`: after a protocol error the stream can't be trusted to be in step. Timers are armed only when a
request stays incomplete past the bytes at hand, so a request that arrives whole costs none.
SSE followers are not touched: a response in progress has no deadline (keep-alive counts only between
requests).
"""

from __future__ import annotations

import http
import json
import logging
from asyncio import TimerHandle
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from shared.settings import Settings

log = logging.getLogger(__name__)

_IDLE, _HEAD, _BODY = 0, 1, 2  # where the current request is: none begun, in its headers, in its body


@dataclass(frozen=True)
class HttpLimits:
    keepalive_seconds: float = 5.0
    header_timeout_seconds: float = 10.0
    body_timeout_seconds: float = 30.0
    max_connections: int = 512
    max_request_line_bytes: int = 16_384
    max_header_bytes: int = 65_536
    max_body_bytes: int = 1_048_576
    # Added to every answer written here (`Vary: Origin` when CORS is configured, as the app does).
    extra_headers: tuple[tuple[bytes, bytes], ...] = ()

    @classmethod
    def from_settings(cls, settings: Settings) -> HttpLimits:
        return cls(
            keepalive_seconds=settings.http_keepalive_seconds,
            header_timeout_seconds=settings.http_header_timeout_seconds,
            body_timeout_seconds=settings.http_body_timeout_seconds,
            max_connections=settings.http_max_connections,
            max_request_line_bytes=settings.http_max_request_line_bytes,
            max_header_bytes=settings.http_max_header_bytes,
            max_body_bytes=settings.max_body_bytes,
            extra_headers=((b"vary", b"Origin"),) if settings.cors_origin_list else (),
        )


class _Refuse(Exception):
    """Raised from a parser callback to stop the parser; the answer is in `status`/`message`."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def json_answer(status: int, message: str, headers: Sequence[tuple[bytes, bytes]] = ()) -> bytes:
    """A complete HTTP/1.1 answer: the app's error shape, and the connection closes after it."""
    body = json.dumps({"error": message, "errors": []}).encode()
    lines = [f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}\r\n".encode()]
    lines += [name + b": " + value + b"\r\n" for name, value in headers]
    lines += [
        b"content-type: application/json\r\n",
        b"content-length: " + str(len(body)).encode() + b"\r\n",
        b"connection: close\r\n\r\n",
        body,
    ]
    return b"".join(lines)


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    limits: HttpLimits = HttpLimits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._phase = _IDLE
        self._head_bytes = 0
        self._heads = 0  # requests whose headers completed on this connection
        self._body_bytes = 0
        self._refused = False
        self._header_timer: TimerHandle | None = None
        self._body_timer: TimerHandle | None = None

    # ---- connection ------------------------------------------------------------------------------
    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            log.warning("refusing a connection: %d open (HTTP_MAX_CONNECTIONS)", len(self.connections) - 1)
            self._refuse(503, "Too many connections; retry shortly.", ((b"retry-after", b"1"),))
            return
        # uvicorn arms keep-alive only after a response: a connection that never sends is closed too.
        self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive, self.timeout_keep_alive_handler)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        self._unset_keepalive_if_required()
        in_head, heads = self._phase == _HEAD, self._heads
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
        except httptools.HttpParserError as exc:
            refusal = exc.__context__ if isinstance(exc.__context__, _Refuse) else None
            if refusal is not None:
                self._refuse(refusal.status, refusal.message)
            else:
                log.info("malformed HTTP request from %s: %s", self.client, exc)
                self._refuse(400, f"Malformed HTTP request: {exc}.")
            return
        if self._refused:
            return
        if self._phase == _HEAD:
            # What this request's head has taken so far. A chunk in which an earlier request's headers
            # completed is not counted (it held that request too); one read is bounded by the loop.
            if heads == self._heads:
                self._head_bytes = (self._head_bytes if in_head else 0) + len(data)
            else:
                self._head_bytes = 0
            if self._head_bytes > self.limits.max_header_bytes:
                self._refuse(431, f"Request line and headers are larger than {self.limits.max_header_bytes} bytes.")
            elif self._header_timer is None:
                self._header_timer = self.loop.call_later(self.limits.header_timeout_seconds, self._header_timeout)
        elif self._phase == _BODY and self._body_timer is None:
            self._body_timer = self.loop.call_later(self.limits.body_timeout_seconds, self._body_timeout)

    # ---- parser callbacks ------------------------------------------------------------------------
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._phase = _HEAD
        self._head_bytes = 0

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        if len(self.url) > self.limits.max_request_line_bytes:
            raise _Refuse(400, f"Request line is longer than {self.limits.max_request_line_bytes} bytes.")

    def on_headers_complete(self) -> None:
        self._heads += 1
        self._phase = _BODY
        self._body_bytes = 0
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        if self._body_bytes > self.limits.max_body_bytes:
            # Stop here, at the limit + 1 byte: the rest is never read.
            raise _Refuse(413, f"Request body is larger than {self.limits.max_body_bytes} bytes.")
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._phase = _IDLE
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        super().on_message_complete()

    # ---- deadlines -------------------------------------------------------------------------------
    def _header_timeout(self) -> None:
        self._header_timer = None
        if self._phase == _HEAD:
            self._refuse(408, f"Request headers were not received within {self.limits.header_timeout_seconds:g} seconds.")

    def _body_timeout(self) -> None:
        self._body_timer = None
        if self._phase == _BODY:
            self._refuse(408, f"Request body was not received within {self.limits.body_timeout_seconds:g} seconds.")

    def _cancel_timers(self) -> None:
        for timer in (self._header_timer, self._body_timer):
            if timer is not None:
                timer.cancel()
        self._header_timer = self._body_timer = None

    def _refuse(self, status: int, message: str, headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
        """Answer `status` (unless the app has begun its own answer) and close; nothing more is read."""
        self._refused = True
        self._cancel_timers()
        self._unset_keepalive_if_required()
        if self.transport.is_closing():
            return
        cycle = self.cycle
        # In a request's body, `cycle` is that request's: answer unless the app has begun to. Elsewhere it
        # is the previous request's (or none): answer unless that one is still being answered.
        app_answering = cycle is not None and cycle.response_started and (self._phase == _BODY or not cycle.response_complete)
        if not app_answering:
            self.transport.write(json_answer(status, message, [*self.server_state.default_headers, *headers, *self.limits.extra_headers]))
        if cycle is not None and not cycle.response_complete:
            # The app's request ends here: its receive() says disconnect, its sends go nowhere.
            cycle.disconnected = True
            cycle.message_event.set()
        self.transport.close()


def bounded_protocol(limits: HttpLimits) -> type[BoundedHttpToolsProtocol]:
    """The protocol class uvicorn builds per connection (`Config(http=...)`), carrying these limits."""
    return type("BoundedHttpToolsProtocol", (BoundedHttpToolsProtocol,), {"limits": limits})
