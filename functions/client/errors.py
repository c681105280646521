"""The client's own error types: what went wrong, in the api's words (its `error` and field `errors`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class ClientError(Exception):
    """Anything the client could not do."""


class ConnectionFailed(ClientError):
    """The server could not be reached (after the client's retries)."""


@dataclass(frozen=True)
class FieldProblem:
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class ApiError(ClientError):
    """The api answered with an error status; `errors` are its field errors (JSON paths and messages)."""

    def __init__(self, status: int, message: str, errors: list[FieldProblem] | None = None, body: Any = None):
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message
        self.errors = errors or []
        self.body = body

    def lines(self) -> list[str]:
        """The error as a person reads it: the sentence, then one line per field."""
        return [self.message, *(str(e) for e in self.errors)]


class BadRequest(ApiError):
    """400 (and other 4xx the api uses for bad input, such as 413)."""


class Unauthorized(ApiError):
    """401: a missing or wrong token."""


class NotFound(ApiError):
    """404: no such job (or route)."""


class Conflict(ApiError):
    """409: an idempotency key reused with another body, or a cancel of a final job."""


class ServerError(ApiError):
    """5xx after the client's retries."""


def from_response(status: int, body: Any) -> ApiError:
    message = "HTTP error"
    errors: list[FieldProblem] = []
    if isinstance(body, dict):
        message = str(body.get("error") or message)
        for item in body.get("errors") or []:
            if isinstance(item, dict):
                errors.append(FieldProblem(str(item.get("field", "")), str(item.get("message", ""))))
    cls: type[ApiError]
    if status == 401:
        cls = Unauthorized
    elif status == 404:
        cls = NotFound
    elif status == 409:
        cls = Conflict
    elif status >= 500:
        cls = ServerError
    elif status >= 400:
        cls = BadRequest
    else:
        cls = ApiError
    return cls(status, message, errors, body)
