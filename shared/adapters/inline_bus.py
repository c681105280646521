"""In-process bus for the embedded default: the same delivery contract as Pub/Sub, in one process.

Handlers get a `Message` and either return (ack) or raise. Like a Pub/Sub subscription with a retry
policy and a dead-letter topic, a handler that raises is retried with exponential backoff up to
`max_attempts` deliveries, then the message goes to the topic's dead-letter handler (the launcher's
marks the job `failed` with the reason), so a blip never loses a job and a poison message never loops.
Messages with one ordering key are delivered in order, one at a time.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
import uuid
from typing import Any, Callable

from shared.messages import Message

log = logging.getLogger(__name__)

Handler = Callable[[Message], None]
DeadLetter = Callable[[Message, BaseException], None]


class InlineBus:
    kind = "inline"

    def __init__(self, *, max_attempts: int = 5, retry_base_seconds: float = 0.5, retry_max_seconds: float = 30.0):
        self.max_attempts = max_attempts
        self.retry_base_seconds = retry_base_seconds
        self.retry_max_seconds = retry_max_seconds
        self._handlers: dict[str, list[Handler]] = {}
        self._dead_letters: dict[str, DeadLetter] = {}
        self._heap: list[tuple[float, int, str, Handler, Message]] = []
        self._counter = itertools.count()
        self._busy_keys: set[str] = set()
        self._in_flight = 0
        self._cond = threading.Condition()
        self._stopped = False
        self._threads: list[threading.Thread] = []
        self.published: int = 0

    # ---- wiring ----------------------------------------------------------------------------------
    def subscribe(self, topic: str, handler: Handler, dead_letter: DeadLetter | None = None) -> None:
        self._handlers.setdefault(topic, []).append(handler)
        if dead_letter is not None:
            self._dead_letters[topic] = dead_letter

    def start(self, workers: int = 2) -> None:
        for i in range(workers):
            t = threading.Thread(target=self._run, name=f"inline-bus-{i}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        for t in self._threads:
            t.join(timeout)

    # ---- the Bus port ----------------------------------------------------------------------------
    def publish(
        self,
        topic: str,
        data: dict[str, Any],
        *,
        attributes: dict[str, str] | None = None,
        ordering_key: str | None = None,
    ) -> str:
        message_id = uuid.uuid4().hex
        handlers = self._handlers.get(topic, [])
        with self._cond:
            self.published += 1
            for handler in handlers:
                msg = Message(
                    id=message_id,
                    topic=topic,
                    data=data,
                    attributes=dict(attributes or {}),
                    ordering_key=ordering_key,
                    delivery_attempt=1,
                )
                heapq.heappush(self._heap, (time.monotonic(), next(self._counter), topic, handler, msg))
            self._cond.notify_all()
        return message_id

    # ---- delivery --------------------------------------------------------------------------------
    def _next(self) -> tuple[str, Handler, Message] | None:
        with self._cond:
            while not self._stopped:
                now = time.monotonic()
                ready_index = None
                wait = None
                for i, (due, _, _, _, msg) in enumerate(sorted(self._heap)):
                    if due > now:
                        wait = due - now
                        break
                    if msg.ordering_key and msg.ordering_key in self._busy_keys:
                        continue
                    ready_index = i
                    break
                if ready_index is not None:
                    ordered = sorted(self._heap)
                    _, _, topic, handler, msg = ordered.pop(ready_index)
                    self._heap = ordered
                    heapq.heapify(self._heap)
                    if msg.ordering_key:
                        self._busy_keys.add(msg.ordering_key)
                    self._in_flight += 1
                    return topic, handler, msg
                self._cond.wait(timeout=wait if wait is not None else 1.0)
            return None

    def _run(self) -> None:
        while True:
            item = self._next()
            if item is None:
                return
            topic, handler, msg = item
            retry_at: float | None = None
            try:
                handler(msg)
            except BaseException as exc:  # noqa: BLE001 - a handler failure is a nack, whatever it is
                if msg.delivery_attempt >= self.max_attempts:
                    log.error("message %s on %s dead-lettered after %d attempts: %s", msg.id, topic, msg.delivery_attempt, exc)
                    dead = self._dead_letters.get(topic)
                    if dead is not None:
                        try:
                            dead(msg, exc)
                        except Exception:  # noqa: BLE001
                            log.exception("dead-letter handler for %s failed", topic)
                else:
                    delay = min(self.retry_base_seconds * 2 ** (msg.delivery_attempt - 1), self.retry_max_seconds)
                    log.warning("message %s on %s failed (attempt %d), retry in %.2fs: %s", msg.id, topic, msg.delivery_attempt, delay, exc)
                    retry_at = time.monotonic() + delay
            with self._cond:
                self._in_flight -= 1
                if msg.ordering_key:
                    self._busy_keys.discard(msg.ordering_key)
                if retry_at is not None:
                    again = msg.redelivered()
                    heapq.heappush(self._heap, (retry_at, next(self._counter), topic, handler, again))
                self._cond.notify_all()

    def drain(self, timeout: float = 30.0) -> bool:
        """Wait until nothing is queued or in flight (tests and shutdown). True if drained."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._heap or self._in_flight:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(timeout=min(left, 0.05))
        return True
