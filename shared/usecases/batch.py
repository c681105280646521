"""Batch submissions on Pub/Sub (`train-submissions`): the same contract as `POST /train`, without HTTP.

A message's data is one request body, a JSON array of them, or JSONL. Each item goes through the very
same `TrainingService.submit_training` the api calls (validation, rendering, storing, publishing), with
the idempotency key `<key>#<index>`, where `<key>` is the `idempotency_key` attribute or the message id —
so a redelivered message never creates a second job. `batch_id` (attribute, default: the message id) is
stored as the job label `batch_id`. An invalid item creates no job: it is recorded (same field errors a
400 carries) and published to `train-submissions-rejected`; the others go on. A message that is not
JSON at all is recorded, then raised as `PoisonMessage` so Pub/Sub retries it and dead-letters it.
Items are read as `POST /train` reads its body (`jsonutil.loads_strict`): a key repeated in one object
rejects that item, naming the key by its path in the item.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from shared import jsonutil
from shared.domain import studio
from shared.errors import Conflict, FieldError, PlatformError, ValidationFailed
from shared.messages import Message
from shared.ports import Bus, Clock, JobStore, Rejection, SystemClock
from shared.usecases.service import PublishFailed, TrainingService

log = logging.getLogger(__name__)

MAX_ITEMS = 1000
MAX_ATTRIBUTE_CHARS = 256


class PoisonMessage(PlatformError):
    """Not JSON at all: nack it, so the subscription's dead-letter policy takes it."""


@dataclass
class BatchResult:
    batch_id: str
    accepted: list[str] = field(default_factory=list)
    rejected: list[int] = field(default_factory=list)


def _clean_attribute(value: str | None) -> str | None:
    if value is None:
        return None
    value = "".join(ch for ch in value if ch.isprintable())[:MAX_ATTRIBUTE_CHARS].strip()
    return value or None


# An item: (body, None), or (None, errors saying why it can't be read).
Item = tuple[Any, "list[FieldError] | None"]


def _repeated_keys(locations: list[tuple[str | int, ...]]) -> list[FieldError]:
    return [FieldError(jsonutil.json_path(loc), "is given more than once") for loc in locations]


def parse_items(raw: bytes) -> list[Item]:
    """Items of a message. Raises ValueError when nothing in it is JSON."""
    text = raw.decode("utf-8")
    stripped = text.strip()
    if not stripped:
        raise ValueError("the message is empty")
    data = stripped.encode()
    try:
        value = jsonutil.loads_strict(data)
    except jsonutil.DuplicateKeyError as exc:
        if not data.startswith(b"["):
            return [(None, _repeated_keys(exc.locations))]
        # An array: only the items with a repeated key are refused, each naming it within the item.
        by_item: dict[int, list[tuple[str | int, ...]]] = {}
        for loc in exc.locations:
            by_item.setdefault(int(loc[0]), []).append(loc[1:])
        decoded: list[Any] = json.loads(data)  # valid JSON (the last repeated key wins); those items are dropped
        return [(None, _repeated_keys(by_item[i])) if i in by_item else (item, None) for i, item in enumerate(decoded)]
    except (ValueError, RecursionError):
        value = None
    else:
        if isinstance(value, list):
            return [(item, None) for item in value]
        return [(value, None)]
    items: list[Item] = []
    json_lines = 0
    for n, line in enumerate(stripped.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            items.append((jsonutil.loads_strict(line.encode()), None))
        except jsonutil.DuplicateKeyError as exc:
            items.append((None, _repeated_keys(exc.locations)))
        except (ValueError, RecursionError) as exc:
            items.append((None, [FieldError("body", f"line {n} is not valid JSON: {exc}")]))
            continue
        json_lines += 1
    if not json_lines:
        raise ValueError("the message is neither JSON nor JSONL")
    return items


class BatchSubmitter:
    def __init__(self, *, service: TrainingService, store: JobStore, bus: Bus, rejected_topic: str, clock: Clock | None = None):
        self.service = service
        self.store = store
        self.bus = bus
        self.rejected_topic = rejected_topic
        self.clock = clock or SystemClock()

    def handle(self, message: Message) -> BatchResult:
        attrs = message.attributes
        batch_id = _clean_attribute(attrs.get("batch_id")) or message.id
        base_key = _clean_attribute(attrs.get("idempotency_key")) or message.id
        result = BatchResult(batch_id)
        raw = message.raw if message.raw is not None else json.dumps(message.data).encode()
        try:
            items = parse_items(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            self._reject(base_key, batch_id, -1, message.id, [FieldError("message", f"is not JSON or JSONL: {exc}")])
            raise PoisonMessage(f"message {message.id} of batch {batch_id} is not JSON") from exc
        if len(items) > MAX_ITEMS:
            self._reject(base_key, batch_id, -1, message.id, [FieldError("message", f"has {len(items)} items; at most {MAX_ITEMS}")])
            return result
        for index, (body, unreadable) in enumerate(items):
            key = f"{base_key}#{index}"
            if unreadable is not None:
                self._reject(key, batch_id, index, message.id, unreadable)
                result.rejected.append(index)
                continue
            try:
                # A studio body carries its own key (its job_id): the same run in two messages is one job.
                own_key = studio.is_studio_body(body)
                submitted = self.service.submit_training(body, idempotency_key=None if own_key else key, extra_labels={"batch_id": batch_id})
            except ValidationFailed as exc:
                self._reject(key, batch_id, index, message.id, exc.errors)
                result.rejected.append(index)
                continue
            except Conflict as exc:
                self._reject(key, batch_id, index, message.id, [FieldError("idempotency_key", str(exc))])
                result.rejected.append(index)
                continue
            except PublishFailed as exc:
                # Stored and marked failed with the reason: visible in the batch, not lost.
                log.error("batch %s item %d: %s", batch_id, index, exc)
                result.accepted.append(exc.job.id)
                continue
            result.accepted.append(submitted.job.id)
        log.info("batch %s (message %s): %d accepted, %d rejected", batch_id, message.id, len(result.accepted), len(result.rejected))
        return result

    def _reject(self, key: str, batch_id: str, index: int, message_id: str, errors: list[FieldError]) -> None:
        body = ValidationFailed(list(errors)).to_body()
        rejection = Rejection(key=key, batch_id=batch_id, index=index, error=body["error"], errors=body["errors"], at=self.clock.now(), message_id=message_id)
        if self.store.record_rejection(rejection):
            self.bus.publish(self.rejected_topic, rejection.to_api(), attributes={"batch_id": batch_id}, ordering_key=None)
