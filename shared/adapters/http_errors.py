"""One table from HTTP status codes to our error types, shared by the Kubernetes and Vertex adapters.

Each adapter has an `api_error(exc)` that pulls the status code and the server's own message out of its
vendor exception and calls `error_for_status` here, so the retry policy ("is this worth retrying?")
exists once. The adapter raises the result `from` the vendor exception: wrapped once, at the edge.

- Transient (nack, redelivered with backoff): 408, 409 (a write conflict: someone else changed the
  object), 425, 429, every 5xx but 501, and no status at all (connection refused, reset, timed out).
- Permanent (ack, the job fails with `reason` and `failure_class`): every other 4xx, and 501.

`AlreadyExists` (409 on a create) is not an error for us: the adapters test for it before they get
here and adopt the existing object. A 404 on delete/cancel is likewise success (already gone).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from shared.domain.redaction import redact_cut
from shared.domain.status import FailureClass
from shared.errors import PermanentError, PlatformError, TransientError

MAX_MESSAGE_CHARS = 500


@dataclass(frozen=True)
class Rule:
    transient: bool
    reason: str
    failure_class: FailureClass | None = None


# status -> how we treat it. Failure classes: a rejected spec or missing permission is the platform's
# configuration (infra), not something the user of the studio can change.
TABLE: dict[int, Rule] = {
    400: Rule(False, "InvalidSpec", FailureClass.INFRA),
    401: Rule(False, "Unauthorized", FailureClass.INFRA),
    403: Rule(False, "Forbidden", FailureClass.INFRA),
    404: Rule(False, "NotFound", FailureClass.INFRA),
    405: Rule(False, "MethodNotAllowed", FailureClass.INFRA),
    408: Rule(True, "RequestTimeout"),
    409: Rule(True, "Conflict"),
    410: Rule(True, "Gone"),
    413: Rule(False, "RequestTooLarge", FailureClass.INFRA),
    415: Rule(False, "UnsupportedMediaType", FailureClass.INFRA),
    422: Rule(False, "InvalidSpec", FailureClass.INFRA),
    425: Rule(True, "TooEarly"),
    429: Rule(True, "TooManyRequests"),
    501: Rule(False, "NotImplemented", FailureClass.INFRA),
}
CONNECTION = Rule(True, "ConnectionError")
SERVER = Rule(True, "ServerError")
CLIENT = Rule(False, "Rejected", FailureClass.INFRA)


def rule_for(status: int | None) -> Rule:
    if not status:
        return CONNECTION
    if status in TABLE:
        return TABLE[status]
    if 500 <= status <= 599:
        return SERVER
    if 400 <= status <= 499:
        return CLIENT
    return SERVER  # a 1xx/3xx where an answer was expected: the server misbehaved; try again


def error_for_status(
    status: int | None,
    message: str,
    *,
    what: str,
    reason: str | None = None,
    secrets: Iterable[object] = (),
) -> PlatformError:
    """The error to raise for a failed call. `what` names the call ("create Job default/x"); `reason`
    overrides the table's (e.g. the server's own `Forbidden`/`PERMISSION_DENIED`)."""
    rule = rule_for(status)
    text = redact_cut(" ".join(message.split()), secrets, MAX_MESSAGE_CHARS)
    code = f"HTTP {status}" if status else "no response"
    full = f"{what}: {code}: {text}" if text else f"{what}: {code}"
    if rule.transient:
        return TransientError(full)
    fc = rule.failure_class.value if rule.failure_class else None
    return PermanentError(full, reason=reason or rule.reason, failure_class=fc)
