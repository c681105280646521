"""Delivery channels, pure: one per (job, subscriber), each a queue over the job's notifications.

A channel delivers its job's notifications to one subscriber strictly in order: `cursor` is the seq of
the last notification it finished with (delivered, refused for good, or out of retries); the next one
waits until then. A subscriber that is slow or down holds back only its own channel. `step` decides,
from one attempt's outcome, what the channel does next; the notifier runs it and the store keeps the
channel with a compare-and-set (`version`), so two notifiers never move one channel twice.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from shared.domain.job import iso
from shared.domain.webhooks import Schedule, Verdict

IDLE = "idle"  # nothing to deliver until the next notification wakes it
ACTIVE = "active"  # a notification waits: attempt it at `next_at`
STOPPED = "stopped"  # the subscriber answered 410: nothing more of this job goes to it

WEBHOOK = "webhook"
STUDIO = "studio"


def subscriber_key(kind: str, url: str) -> str:
    """A short stable name for a subscriber of a job (the URL itself may be long, or carry a token)."""
    return hashlib.sha256(f"{kind}\x00{url}".encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Subscriber:
    kind: str  # WEBHOOK: Standard Webhooks, signed; STUDIO: the studio's `{"status", "log"}` callback
    url: str

    @property
    def key(self) -> str:
        return subscriber_key(self.kind, self.url)


@dataclass(frozen=True)
class Channel:
    job_id: str
    key: str
    kind: str
    url: str
    state: str = ACTIVE
    cursor: int = 0  # seq of the last notification finished with
    attempt: int = 0  # attempts made at the notification after the cursor
    next_at: datetime | None = None  # when to attempt next (None: idle or stopped)
    last_error: str | None = None
    version: int = 0

    def to_doc(self) -> dict[str, Any]:
        return {
            "jobId": self.job_id,
            "key": self.key,
            "kind": self.kind,
            "url": self.url,
            "state": self.state,
            "cursor": self.cursor,
            "attempt": self.attempt,
            "nextAt": iso(self.next_at),
            "lastError": self.last_error,
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any], version: int) -> Channel:
        nxt = doc.get("nextAt")
        return cls(
            job_id=doc["jobId"],
            key=doc["key"],
            kind=doc["kind"],
            url=doc["url"],
            state=doc["state"],
            cursor=int(doc["cursor"]),
            attempt=int(doc["attempt"]),
            next_at=_parse(nxt) if nxt else None,
            last_error=doc.get("lastError"),
            version=version,
        )


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def new_channel(job_id: str, subscriber: Subscriber, now: datetime) -> Channel:
    return Channel(job_id=job_id, key=subscriber.key, kind=subscriber.kind, url=subscriber.url, state=ACTIVE, next_at=now)


def wake(channel: Channel, now: datetime) -> Channel | None:
    """A new notification for an idle channel: attempt it now. An active one keeps its schedule (its head
    is waiting for a retry); a stopped one stays stopped."""
    if channel.state != IDLE:
        return None
    return replace(channel, state=ACTIVE, next_at=now, attempt=0)


def lease(channel: Channel, now: datetime, seconds: float) -> Channel:
    """Claim the channel for one attempt: others see it due only after the lease (a notifier that died
    mid-attempt is retried then, with the same webhook-id)."""
    return replace(channel, next_at=now + timedelta(seconds=seconds))


def idle(channel: Channel) -> Channel:
    return replace(channel, state=IDLE, next_at=None, attempt=0)


@dataclass(frozen=True)
class Attempt:
    """One delivery attempt, as `GET /jobs/{id}/deliveries` shows it."""

    job_id: str
    notification_id: str
    notification_seq: int
    subscriber: str  # the channel key
    url: str
    attempt: int
    at: datetime
    verdict: str
    status_code: int | None
    duration_ms: float
    error: str | None

    @property
    def id(self) -> str:
        """Sortable within a job: notification, subscriber, attempt."""
        return f"{self.notification_seq:012d}.{self.subscriber}.{self.attempt:04d}"

    def to_doc(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "jobId": self.job_id,
            "notificationId": self.notification_id,
            "notificationSeq": self.notification_seq,
            "subscriber": self.subscriber,
            "url": self.url,
            "attempt": self.attempt,
            "at": iso(self.at),
            "verdict": self.verdict,
            "statusCode": self.status_code,
            "durationMs": round(self.duration_ms, 1),
            "error": self.error,
        }


def skip(channel: Channel, notification_seq: int, now: datetime) -> Channel:
    """Done with a notification this subscriber doesn't get (not its kind, or nothing new for it): no
    call, no attempt recorded, the next one goes now. Only the cursor moves, so order is kept."""
    return replace(channel, cursor=notification_seq, attempt=0, next_at=now, state=ACTIVE)


def step(channel: Channel, notification_seq: int, verdict: Verdict, error: str | None, now: datetime, schedule: Schedule, rand: Callable[[], float]) -> Channel:
    """The channel after one attempt at the notification `notification_seq`."""
    attempt = channel.attempt + 1
    if verdict is Verdict.DELIVERED or verdict is Verdict.FAILED:
        # Done with this one (a refusal is recorded, not retried): the next notification goes now.
        return replace(channel, cursor=notification_seq, attempt=0, next_at=now, state=ACTIVE, last_error=error)
    if verdict is Verdict.GONE:
        return replace(channel, cursor=notification_seq, attempt=0, next_at=None, state=STOPPED, last_error=error)
    delay = schedule.delay_before(attempt + 1, rand)
    if delay is None:  # out of retries: give this one up, go on with the next
        return replace(channel, cursor=notification_seq, attempt=0, next_at=now, state=ACTIVE, last_error=f"gave up after {attempt} attempts: {error}")
    return replace(channel, attempt=attempt, next_at=now + timedelta(seconds=delay), state=ACTIVE, last_error=error)
