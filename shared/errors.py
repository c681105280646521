"""Our own error types. Vendor exceptions are wrapped once, at the adapter, into one of these.

Retry semantics live in the type: a `TransientError` means "try again later" (the Pub/Sub handler
raises so the message is redelivered with backoff; the inline bus retries with backoff); a
`PermanentError` means "retrying cannot help" (ack the message, mark the job failed with a reason).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class PlatformError(Exception):
    """Base class of every error this package raises on purpose."""


class TransientError(PlatformError):
    """A failure that may succeed if retried (5xx, timeouts, 429, a lost connection)."""


class StoreUnavailable(TransientError):
    """The job store can't be read or written right now: its disk is full, an I/O error, the database
    can't be opened (SQLite), or the service is unavailable, past its deadline or out of quota
    (Firestore). The call that raised it stored nothing. The api answers 503 with `Retry-After`; the
    launcher retries the launch until the store takes it (never `failed` for a storage hiccup)."""


class PermanentError(PlatformError):
    """A failure that retrying will not fix (400/403/422, an invalid spec)."""

    def __init__(self, message: str, *, reason: str = "PermanentError", failure_class: str | None = None):
        super().__init__(message)
        self.reason = reason
        self.failure_class = failure_class


class NotFound(PlatformError):
    pass


class Conflict(PlatformError):
    """The operation contradicts the current state (terminal job, idempotency key reused with another body)."""


class ConfigError(PlatformError):
    """The service's own configuration is wrong (bad JSON in an environment variable, missing setting)."""


@dataclass(frozen=True)
class FieldError:
    field: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


@dataclass
class ValidationFailed(PlatformError):
    """A request that can't be accepted: becomes a 400 naming every offending field."""

    errors: list[FieldError] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__(self.summary())

    def summary(self) -> str:
        if not self.errors:
            return "Invalid request."
        first = self.errors[0]
        more = f" (and {len(self.errors) - 1} more)" if len(self.errors) > 1 else ""
        return f"Invalid request: {first.field}: {first.message}{more}"

    def to_body(self) -> dict[str, Any]:
        return {"error": self.summary(), "errors": [e.to_dict() for e in self.errors]}
