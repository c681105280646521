"""What the routes read and write, whichever server parsed the request (Flask under functions-framework,
or the embedded ASGI server): `Request`, `Response`, `HttpError`, and the body and query-argument readers
with their limits (a 400 names the field, a body over the limit is a 413)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol, overload

from flask import Request as FlaskRequest
from flask import Response as FlaskResponse

from shared import jsonutil
from shared.errors import FieldError, ValidationFailed

MAX_JSON_DEPTH = 64
# Log and event cursors (`after`, `logs_after`, `Last-Event-ID`): sequence numbers, well inside the store's
# 64-bit integers and exact in a JSON number.
MAX_SEQ = 2**53


class Lookup(Protocol):
    """Headers or query arguments: werkzeug's (under Flask) or the ASGI adapter's."""

    @overload
    def get(self, key: str) -> str | None: ...
    @overload
    def get(self, key: str, default: str) -> str: ...


@dataclass
class Request:
    """What the routes read of an HTTP request. `headers.get` is case-insensitive; `read(n)` returns at
    most n bytes of the body."""

    method: str
    path: str
    headers: Lookup
    args: Lookup
    content_length: int | None
    read: Callable[[int], bytes]

    @classmethod
    def from_flask(cls, request: FlaskRequest) -> Request:
        read: Callable[[int], bytes]
        if request.content_length is None:
            read = request.stream.read
        else:

            def read(limit: int) -> bytes:
                return request.get_data(cache=True)[:limit]

        return cls(request.method, request.path, request.headers, request.args, request.content_length, read)


@dataclass
class Response:
    """An answer: JSON bytes, or an iterator of text chunks for a stream (Server-Sent Events)."""

    status: int
    body: bytes | Iterator[str] = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str | None = "application/json"

    def to_flask(self) -> FlaskResponse:
        resp = FlaskResponse(self.body, status=self.status, mimetype=self.content_type)
        for k, v in self.headers.items():
            resp.headers[k] = v
        return resp


class HttpError(Exception):
    def __init__(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None):
        super().__init__(body.get("error"))
        self.status = status
        self.body = body
        self.headers = headers or {}


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(status, jsonutil.dumps(body), headers or {})


def sse(event: str, data: Any, event_id: str | None = None) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'), ensure_ascii=False)}\n\n"


def error(status: int, message: str, errors: list[FieldError] | None = None) -> HttpError:
    body: dict[str, Any] = {"error": message}
    if errors is not None:
        body["errors"] = [e.to_dict() for e in errors]
    return HttpError(status, body)


def bounded_int(raw: str | None, name: str, default: int, lo: int, hi: int) -> int:
    """An integer query argument or header: `default` when absent or empty, else lo..hi or a 400 naming it."""
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValidationFailed([FieldError(name, "must be an integer")]) from None
    if not lo <= value <= hi:
        raise ValidationFailed([FieldError(name, f"must be between {lo} and {hi}")])
    return value


def _depth(value: Any, limit: int) -> int:
    """Nesting depth, iteratively (no recursion limit to trip on hostile bodies)."""
    stack = [(value, 1)]
    deepest = 0
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > limit:
            return deepest
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)
    return deepest


def read_json(request: Request, limit: int) -> Any:
    """The body as JSON (any content type: the body decides), at most `limit` bytes: a 413 above it, a
    400 naming `body` (or each duplicated key by its path) when it is empty, malformed or too deep."""
    if request.content_length is not None and request.content_length > limit:
        raise error(413, f"Request body is larger than {limit} bytes.")
    raw = request.read(limit + 1)
    if len(raw) > limit:
        raise error(413, f"Request body is larger than {limit} bytes.")
    if not raw.strip():
        raise error(400, "Request body is empty: send a JSON object.", [FieldError("body", "is required")])
    try:
        body = jsonutil.loads_strict(raw)
    except jsonutil.DuplicateKeyError as exc:  # `{"backend": "local", "backend": "kubernetes"}`
        raise ValidationFailed([FieldError(path, "is given more than once") for path in exc.paths]) from None
    except (ValueError, RecursionError) as exc:
        msg = str(exc) if not isinstance(exc, RecursionError) else "nested too deeply"
        raise error(400, f"Malformed JSON: {msg}", [FieldError("body", "is not valid JSON")]) from None
    # A body with no more brackets than the limit can't be nested deeper than it: skip the walk.
    if raw.count(b"{") + raw.count(b"[") > MAX_JSON_DEPTH and _depth(body, MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
        raise error(400, "JSON is nested too deeply.", [FieldError("body", f"must be nested at most {MAX_JSON_DEPTH} levels")])
    return body
