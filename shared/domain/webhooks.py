"""Webhooks, pure: the Standard Webhooks signature, the message a transition becomes, the retry schedule and
what an attempt's outcome means for the next one.

Signature (https://www.standardwebhooks.com): the secret is `whsec_` + base64 of the key; the signed
content is `"{webhook-id}.{webhook-timestamp}.{body}"`; the header `webhook-signature` is `v1,` + base64 of
its HMAC-SHA256 (several space-separated signatures are allowed while a secret rotates). The
`webhook-id` is the notification's own id, so every retry of one message carries the same id and a
receiver can drop duplicates.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import random
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

SECRET_PREFIX = "whsec_"
TIMESTAMP_TOLERANCE_SECONDS = 5 * 60
# Immediately, 5 s, 30 s, 2 min, 10 min, 1 h, 4 h, then about once a day up to 3 days after the first.
DEFAULT_SCHEDULE: tuple[float, ...] = (0, 5, 30, 120, 600, 3600, 4 * 3600, 24 * 3600, 24 * 3600, 24 * 3600)
ATTEMPT_TIMEOUT_SECONDS = 10.0


class SecretError(ValueError):
    pass


def parse_secret(secret: str) -> bytes:
    """`whsec_<base64>` -> the key bytes (a bare base64 key is accepted too)."""
    raw = secret[len(SECRET_PREFIX) :] if secret.startswith(SECRET_PREFIX) else secret
    try:
        key = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SecretError("the webhook signing secret must be whsec_ followed by base64") from exc
    if len(key) < 16:
        raise SecretError("the webhook signing secret must hold at least 16 bytes of key")
    return key


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    content = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()


def verify(key: bytes, headers: dict[str, str], body: bytes, now: float, tolerance: int = TIMESTAMP_TOLERANCE_SECONDS) -> bool:
    """What a receiver does: the timestamp is recent and one of the `v1` signatures matches."""
    lower = {k.lower(): v for k, v in headers.items()}
    msg_id, ts, sigs = lower.get("webhook-id"), lower.get("webhook-timestamp"), lower.get("webhook-signature", "")
    if not msg_id or not ts or not ts.isdigit() or abs(now - int(ts)) > tolerance:
        return False
    expected = sign(key, msg_id, int(ts), body)
    return any(hmac.compare_digest(expected, s) for s in sigs.split() if s.startswith("v1,"))


def headers_for(key: bytes, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(key, msg_id, timestamp, body),
    }


def event_body(status: str, previous: str | None, at_iso: str, summary: dict[str, Any]) -> dict[str, Any]:
    """The message of one transition: `{"type": "job.<status>", "timestamp", "data": {job, previousStatus}}`."""
    return {"type": f"job.{status}", "timestamp": at_iso, "data": {"job": summary, "previousStatus": previous}}


# ---- attempts -------------------------------------------------------------------------------------
class Verdict(StrEnum):
    DELIVERED = "delivered"  # 2xx
    RETRY = "retry"  # a timeout, a connection failure, 5xx, 429, 3xx: try again on the schedule
    GONE = "gone"  # 410: the subscriber wants no more of this job
    FAILED = "failed"  # any other 4xx, or a URL the SSRF guard refuses: recorded, not retried


def judge(status_code: int | None, error: str | None = None, refused: bool = False) -> Verdict:
    if refused:
        return Verdict.FAILED
    if status_code is None:
        return Verdict.RETRY  # no answer: timeout or connection error
    if 200 <= status_code < 300:
        return Verdict.DELIVERED
    if status_code == 410:
        return Verdict.GONE
    if status_code == 429 or status_code >= 500 or 300 <= status_code < 400:
        return Verdict.RETRY
    return Verdict.FAILED


@dataclass(frozen=True)
class Schedule:
    """Delays before each attempt, counted from the previous one; jittered by up to ±`jitter`."""

    delays: tuple[float, ...] = DEFAULT_SCHEDULE
    jitter: float = 0.1

    @property
    def max_attempts(self) -> int:
        return len(self.delays)

    def delay_before(self, attempt: int, rand: Callable[[], float] = random.random) -> float | None:
        """Seconds to wait before attempt number `attempt` (1-based); None once the schedule is spent."""
        if attempt < 1 or attempt > len(self.delays):
            return None
        base = self.delays[attempt - 1]
        return max(0.0, base * (1 + self.jitter * (2 * rand() - 1)))

    @classmethod
    def parse(cls, text: str) -> Schedule:
        """`"0,5,30,120"` (seconds) -> a schedule; the first attempt is the first number."""
        delays = tuple(float(part) for part in text.split(",") if part.strip())
        if not delays or any(d < 0 for d in delays):
            raise ValueError("a webhook retry schedule is a comma-separated list of non-negative seconds")
        return cls(delays)
