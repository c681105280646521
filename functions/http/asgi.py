"""The api over ASGI: how the embedded default serves HTTP (uvicorn, one process, one event loop).

The deployed `api` function runs under functions-framework's Flask/gunicorn server (`functions/main.py`);
the embedded default serves the same `Api.handle` through this adapter instead, because its store and bus
are in-process. A gunicorn thread pool spends more time handing requests between threads than our routes
take to answer, and the in-process launcher needs the same interpreter's time.

- Routes run on the event loop itself: the embedded store (SQLite) and bus (in-process queue) answer in
  microseconds, so there is nothing to wait for that a thread would hide. Do not serve an `Api` whose
  store or bus goes over the network through this adapter.
- Writes are where SQLite spends its time (each commit rewrites every page it touched), so `POST /train`
  stores its job through a group commit: the request waits for its batch without blocking the loop.
- A body over the limit is refused (413, `Connection: close`) from its Content-Length before a byte is
  read; a chunked body is read up to the limit + 1 byte, and the route refuses it.
- Connections are bounded by `functions/http/protocol.py` (keep-alive, header and body deadlines, a
  connection limit, JSON for the protocol's own errors), which `server_config` puts under uvicorn.
- Streams (`follow=true` Server-Sent Events) are generators that poll the store and sleep: they run on a
  thread pool of their own, a chunk at a time, and stop when the client goes away.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import parse_qsl

from functions.http.api import Api
from functions.http.protocol import HttpLimits, bounded_protocol
from functions.http.wire import Request, Response
from shared.domain.job import Job
from shared.ports import IdempotentCreate, JobStore

log = logging.getLogger(__name__)

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

_END = object()
# A job waiting for its batch: the job, its Idempotency-Key, what to run once stored, its request's future.
_Pending = tuple[Job, "str | None", Callable[[IdempotentCreate], Any], "asyncio.Future[Any]"]
_INTERNAL_ERROR = b'{"error":"Internal error."}'


class Headers:
    """Case-insensitive `get` over ASGI's raw header list; repeated headers are joined with ', '."""

    __slots__ = ("_values",)

    def __init__(self, raw: list[tuple[bytes, bytes]]):
        values: dict[str, str] = {}
        for name, value in raw:
            key = name.decode("latin-1").lower()
            text = value.decode("latin-1")
            values[key] = f"{values[key]}, {text}" if key in values else text
        self._values = values

    def get(self, key: str, default: Any = None) -> Any:
        return self._values.get(key.lower(), default)


class Args:
    """Query arguments: `get` gives the first value of a name, as Flask's `request.args` does."""

    __slots__ = ("_values",)

    def __init__(self, query_string: bytes):
        values: dict[str, str] = {}
        if query_string:
            for name, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
                values.setdefault(name, value)
        self._values = values

    def get(self, key: str, default: Any = None) -> Any:
        return self._values.get(key, default)


def _content_length(headers: Headers) -> int | None:
    raw = headers.get("content-length")
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        return None
    return value if value >= 0 else None


class GroupCommit:
    """New jobs from the event loop, stored together. A request's job joins the pending batch and the
    request waits without holding the loop; one thread writes a batch at a time (`create_many`: one
    transaction), and whatever arrived meanwhile is the next batch. Under load a commit carries dozens
    of jobs, so the api's throughput is not one commit per request.

    `then` runs on the loop as soon as its item is stored (the launch is published there), so an item
    that was committed is always followed up, even if its request is gone."""

    def __init__(self, store: JobStore, *, max_batch: int = 256):
        self.store = store
        self.max_batch = max_batch
        self._pending: list[_Pending] = []
        self._writing = False
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="group-commit")
        self.batches = 0
        self.items = 0

    async def create(self, job: Job, key: str | None, then: Callable[[IdempotentCreate], Any]) -> Any:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._pending.append((job, key, then, future))
        if not self._writing:
            self._writing = True
            # On the next turn of the loop: requests already read in this turn join the same batch.
            loop.call_soon(self._write, loop)
        return await future  # cancelled with its request: `then` still runs when the batch is written

    def _write(self, loop: asyncio.AbstractEventLoop) -> None:
        batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
        self.batches += 1
        self.items += len(batch)
        work = self._writer.submit(self.store.create_many, [(job, key) for job, key, _, _ in batch])
        work.add_done_callback(lambda done: loop.call_soon_threadsafe(self._written, loop, batch, done))

    def _written(self, loop: asyncio.AbstractEventLoop, batch: list[_Pending], done: Any) -> None:
        failed = done.exception()
        outcomes = done.result() if failed is None else [failed] * len(batch)
        for (_, _, then, future), outcome in zip(batch, outcomes):
            try:
                if isinstance(outcome, BaseException):
                    raise outcome
                value, error = then(outcome), None
            except Exception as exc:  # noqa: BLE001 - handed to the waiting request
                value, error = None, exc
            if future.cancelled():
                continue
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(value)
        if self._pending:
            self._write(loop)
        else:
            self._writing = False

    def close(self) -> None:
        self._writer.shutdown(wait=True)


class AsgiApi:
    def __init__(self, api: Api, *, stream_threads: int = 64):
        self.api = api
        self.max_body_bytes = api.settings.max_body_bytes
        self.group_commit = GroupCommit(api.store)
        # How uvicorn bounds this app's connections (functions/http/protocol.py; `server_config` reads it).
        self.http_limits = HttpLimits.from_settings(api.settings)
        self._streams = ThreadPoolExecutor(max_workers=stream_threads, thread_name_prefix="sse")

    def close(self) -> None:
        self._streams.shutdown(wait=False, cancel_futures=True)
        self.group_commit.close()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        headers = Headers(scope["headers"])
        length = _content_length(headers)
        body = b""
        if length is None or length <= self.max_body_bytes:
            body = await self._read_body(receive)
        request = Request(
            method=scope["method"],
            path=scope["path"],  # already percent-decoded, as Flask's request.path
            headers=headers,
            args=Args(scope.get("query_string", b"")),
            content_length=length,
            read=lambda n: body[:n],
        )
        try:
            response = await self.api.handle_async(request, self.group_commit.create)
        except Exception:  # noqa: BLE001 - Api.handle answers every error itself; this is the last guard
            log.exception("unhandled error on %s %s", request.method, request.path)
            await _send_bytes(send, 500, _INTERNAL_ERROR, {"Vary": "Origin"} if self.api.cors_origins else {}, "application/json")
            return
        if isinstance(response.body, (bytes, bytearray)):
            answer_headers = response.headers
            if response.status == 413:
                # The body it refused may still be coming: close rather than read it to find the next request.
                answer_headers = {**answer_headers, "Connection": "close"}
            await _send_bytes(send, response.status, bytes(response.body), answer_headers, response.content_type)
        else:
            await self._stream(response, response.body, receive, send)

    async def _read_body(self, receive: Receive) -> bytes:
        """The body, up to the limit + 1 byte (enough for the route to see it is too large)."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            chunks.append(chunk)
            size += len(chunk)
            if size > self.max_body_bytes or not message.get("more_body", False):
                break  # past the limit, stop: the route answers 413 and the connection closes
        return b"".join(chunks)

    async def _stream(self, response: Response, iterator: Iterator[str], receive: Receive, send: Send) -> None:
        gone = asyncio.Event()

        async def watch() -> None:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    gone.set()
                    return

        watcher = asyncio.ensure_future(watch())
        loop = asyncio.get_running_loop()
        await send({"type": "http.response.start", "status": response.status, "headers": _header_list(response.headers, response.content_type)})
        try:
            while not gone.is_set():
                chunk = await loop.run_in_executor(self._streams, next, iterator, _END)
                if not isinstance(chunk, str) or gone.is_set():  # `_END`: the stream is over
                    break
                await send({"type": "http.response.body", "body": chunk.encode(), "more_body": True})
            if not gone.is_set():
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            watcher.cancel()
            close = getattr(iterator, "close", None)
            if close is not None:
                await loop.run_in_executor(self._streams, close)


def _header_list(headers: dict[str, str], content_type: str | None) -> list[tuple[bytes, bytes]]:
    out = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    if content_type is not None:
        if content_type.startswith("text/"):
            content_type += "; charset=utf-8"
        out.append((b"content-type", content_type.encode("latin-1")))
    return out


async def _send_bytes(send: Send, status: int, body: bytes, headers: dict[str, str], content_type: str | None) -> None:
    header_list = _header_list(headers, content_type)
    if status >= 200 and status not in (204, 304):  # RFC 9110 8.6: never a Content-Length on 1xx / 204
        header_list.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": header_list})
    await send({"type": "http.response.body", "body": body})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def server_config(app: Any, host: str = "127.0.0.1", port: int = 0, **overrides: Any) -> Any:
    """How the embedded server runs uvicorn (uvloop, and httptools under our bounded protocol, with the
    app's `http_limits`: keep-alive, header and body deadlines, connection and size bounds, JSON for
    every protocol error); tests use the same."""
    import uvicorn

    limits = getattr(app, "http_limits", None) or HttpLimits()
    options: dict[str, Any] = {
        "http": bounded_protocol(limits),
        "ws": "none",  # no websocket routes: an upgrade request is served as plain HTTP
        "timeout_keep_alive": limits.keepalive_seconds,
        "lifespan": "off",
        "access_log": False,
        "log_level": "warning",
        "timeout_graceful_shutdown": 5,
        "server_header": False,
        "proxy_headers": False,  # nothing sits in front of the embedded server
    }
    options.update(overrides)
    return uvicorn.Config(app, host=host, port=port, **options)


def serve(app: AsgiApi, host: str, port: int) -> None:
    """Serve until SIGINT/SIGTERM (uvicorn's graceful stop)."""
    import uvicorn

    uvicorn.Server(server_config(app, host, port)).run()
