"""Messages on the bus, and the Pub/Sub push envelope they arrive in.

One shape for every transport: the inline bus builds `Message` directly; a Pub/Sub-triggered function
gets a CloudEvent whose data is the push envelope `{"message": {"data": b64, "attributes", "messageId",
"orderingKey", ...}, "subscription", "deliveryAttempt"}` and decodes it with `from_push`.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from shared.errors import PermanentError


@dataclass(frozen=True)
class Message:
    id: str
    topic: str
    data: Any  # decoded JSON (dict for our own messages; anything for batch submissions)
    attributes: dict[str, str] = field(default_factory=dict)
    ordering_key: str | None = None
    delivery_attempt: int = 1
    raw: bytes | None = None

    def redelivered(self) -> Message:
        return dataclasses.replace(self, delivery_attempt=self.delivery_attempt + 1)


def topic_from_source(source: str | None) -> str:
    """`//pubsub.googleapis.com/projects/P/topics/T` (or a push path ending in /topics/T) -> `T`."""
    if source and "/topics/" in source:
        return source.rsplit("/topics/", 1)[1].split("/")[0]
    return ""


def from_push(envelope: dict[str, Any], *, source: str | None = None, strict_json: bool = True) -> Message:
    """Decode a Pub/Sub push envelope (what a CloudEvent `google.cloud.pubsub.topic.v1.messagePublished`
    carries as data). A payload that is not JSON raises PermanentError when `strict_json`."""
    if not isinstance(envelope, dict) or not isinstance(envelope.get("message"), dict):
        raise PermanentError("not a Pub/Sub push envelope", reason="MalformedMessage")
    msg = envelope["message"]
    try:
        raw = base64.b64decode(msg.get("data") or "", validate=False)
    except (binascii.Error, ValueError) as exc:
        raise PermanentError("message data is not base64", reason="MalformedMessage") from exc
    data: Any = None
    if raw:
        try:
            data = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            if strict_json:
                raise PermanentError("message data is not JSON", reason="MalformedMessage") from exc
    attempt = envelope.get("deliveryAttempt") or msg.get("deliveryAttempt") or 1
    return Message(
        id=str(msg.get("messageId") or msg.get("message_id") or ""),
        topic=topic_from_source(source) or topic_from_source(envelope.get("subscription")),
        data=data,
        attributes={str(k): str(v) for k, v in (msg.get("attributes") or {}).items()},
        ordering_key=msg.get("orderingKey") or None,
        delivery_attempt=int(attempt),
        raw=raw,
    )


def to_push(message: Message, subscription: str = "projects/p/subscriptions/s") -> dict[str, Any]:
    """The push envelope Pub/Sub would deliver for `message` (tests and the embedded bridge)."""
    raw = message.raw if message.raw is not None else json.dumps(message.data).encode()
    body: dict[str, Any] = {
        "data": base64.b64encode(raw).decode(),
        "attributes": message.attributes,
        "messageId": message.id,
    }
    if message.ordering_key:
        body["orderingKey"] = message.ordering_key
    return {"message": body, "subscription": subscription, "deliveryAttempt": message.delivery_attempt}
