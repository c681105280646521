"""Runs a message handler for a Pub/Sub-triggered CloudEvent with our retry semantics.

Returning acks; raising nacks (Pub/Sub redelivers with the subscription's backoff, then dead-letters).
A `PermanentError` is logged and acked: retrying can't help and the handler has recorded the outcome.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from shared.errors import PermanentError
from shared.messages import Message, from_push

log = logging.getLogger(__name__)


def handle_cloud_event(event: Any, handler: Callable[[Message], object], *, strict_json: bool = True) -> None:
    try:
        source = event.get("source") if hasattr(event, "get") else None
        message = from_push(event.data, source=source, strict_json=strict_json)
        handler(message)
    except PermanentError as exc:
        log.error("message dropped (permanent): %s: %s", exc.reason, exc)
