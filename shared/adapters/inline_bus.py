"""In-process bus for the embedded default: the same delivery contract as Pub/Sub, in one process.

Handlers get a `Message` and either return (ack) or raise. Like a Pub/Sub subscription with a retry
policy and a dead-letter topic, a handler that raises is retried with exponential backoff up to
`max_attempts` deliveries, then the message goes to the topic's dead-letter handler (the launcher's
marks the job `failed` with the reason), so a blip never loses a job and a poison message never loops.

Ordering, as Pub/Sub with message ordering: messages with one ordering key are delivered one at a time,
in publish order, and a message waiting for its retry holds back the later messages of its key.

Batches, as a Pub/Sub pull returns several messages at once: a subscription may give a batch handler
(`messages -> one outcome per message`); a worker then hands it the deliverable messages of that
subscription at the head of the queue (at most `max_batch`, never two of one ordering key; it waits up
to `linger_seconds` for a batch to fill), and each message is acked, retried or dead-lettered on its
own outcome.

Scheduling is O(1) a message: a FIFO of deliverable messages per subscription (served round robin, so
a batch that is filling holds back no other subscription), a FIFO per busy ordering key, and a heap only
for messages waiting out a retry delay.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from shared.messages import Message

log = logging.getLogger(__name__)

Handler = Callable[[Message], object]  # what it returns is ignored: returning is the ack
# One outcome per message, in order: None (ack) or the exception it failed with (nack).
BatchHandler = Callable[[Sequence[Message]], Sequence[BaseException | None]]
DeadLetter = Callable[[Message, BaseException], None]


@dataclass(eq=False)
class _Subscription:
    topic: str
    handler: Handler
    batch_handler: BatchHandler | None = None
    max_batch: int = 1
    linger_seconds: float = 0.0
    # Deliverable messages, oldest first, each with the time it became deliverable.
    ready: deque[tuple[Message, float]] = field(default_factory=deque)
    # Ordering keys with a message scheduled, in flight or waiting for a retry: key -> the messages
    # published after it, in order.
    keys: dict[str, deque[Message]] = field(default_factory=dict)


class InlineBus:
    kind = "inline"

    def __init__(self, *, max_attempts: int = 5, retry_base_seconds: float = 0.5, retry_max_seconds: float = 30.0):
        self.max_attempts = max_attempts
        self.retry_base_seconds = retry_base_seconds
        self.retry_max_seconds = retry_max_seconds
        self._subscriptions: dict[str, list[_Subscription]] = {}
        self._dead_letters: dict[str, DeadLetter] = {}
        self._all: list[_Subscription] = []
        self._turn = 0  # where the next scan of the subscriptions starts (round robin)
        self._delayed: list[tuple[float, int, _Subscription, Message]] = []
        self._counter = itertools.count()
        self._in_flight = 0
        # Subscriptions whose batch a worker is letting fill: publishing more of them wakes nobody until
        # the batch is full (a wake-up per message would cost more than the batching saves).
        self._lingering: set[int] = set()
        self._ids = itertools.count(1)
        self._id_prefix = uuid.uuid4().hex[:12]
        self._cond = threading.Condition()
        self._stopped = False
        self._threads: list[threading.Thread] = []
        self.published: int = 0

    # ---- wiring ----------------------------------------------------------------------------------
    def subscribe(
        self,
        topic: str,
        handler: Handler,
        dead_letter: DeadLetter | None = None,
        *,
        batch_handler: BatchHandler | None = None,
        max_batch: int = 64,
        linger_seconds: float = 0.01,
    ) -> None:
        """`batch_handler`: deliver up to `max_batch` messages at once, waiting at most `linger_seconds`
        after the oldest became deliverable for the batch to fill (as a Pub/Sub publisher's batching
        window): under load each batch shares its store round trips, at the cost of that wait."""
        batched = batch_handler is not None
        sub = _Subscription(topic, handler, batch_handler, max_batch if batched else 1, linger_seconds if batched else 0.0)
        self._subscriptions.setdefault(topic, []).append(sub)
        self._all.append(sub)
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
        message_id = f"{self._id_prefix}-{next(self._ids)}"
        subs = self._subscriptions.get(topic, ())
        msg = Message(id=message_id, topic=topic, data=data, attributes=dict(attributes or {}), ordering_key=ordering_key)
        with self._cond:
            self.published += 1
            wake = False
            for sub in subs:
                if ordering_key:
                    waiting = sub.keys.get(ordering_key)
                    if waiting is not None:  # an earlier message of this key is not acked yet
                        waiting.append(msg)
                        continue
                    sub.keys[ordering_key] = deque()
                sub.ready.append((msg, time.monotonic()))
                wake = wake or id(sub) not in self._lingering or len(sub.ready) >= sub.max_batch
            if wake:
                self._cond.notify()
        return message_id

    # ---- delivery --------------------------------------------------------------------------------
    def _next(self) -> tuple[_Subscription, list[Message]] | None:
        with self._cond:
            while not self._stopped:
                now = time.monotonic()
                while self._delayed and self._delayed[0][0] <= now:
                    _, _, sub, msg = heapq.heappop(self._delayed)
                    sub.ready.append((msg, now))
                wait = self._delayed[0][0] - now if self._delayed else 1.0
                # Round robin over the subscriptions: one that lets its batch fill holds back no other.
                count = len(self._all)
                for step in range(count):
                    sub = self._all[(self._turn + step) % count]
                    if not sub.ready:
                        continue
                    linger = sub.ready[0][1] + sub.linger_seconds - now
                    if linger > 0 and len(sub.ready) < sub.max_batch:
                        wait = min(wait, linger)  # let the batch fill
                        self._lingering.add(id(sub))
                        continue
                    self._lingering.discard(id(sub))
                    self._turn = (self._turn + step + 1) % count
                    batch = [sub.ready.popleft()[0] for _ in range(min(sub.max_batch, len(sub.ready)))]
                    self._in_flight += len(batch)
                    if any(other.ready for other in self._all):
                        self._cond.notify()  # more work: wake another worker
                    return sub, batch
                self._cond.wait(timeout=wait)
            return None

    def _deliver(self, sub: _Subscription, batch: list[Message]) -> list[BaseException | None]:
        if sub.batch_handler is not None and len(batch) > 1:
            try:
                outcomes = list(sub.batch_handler(batch))
            except BaseException as exc:  # noqa: BLE001 - the whole batch failed: each message is nacked
                return [exc] * len(batch)
            if len(outcomes) != len(batch):  # pragma: no cover - a handler bug; never lose a message
                return [RuntimeError("batch handler returned a wrong number of outcomes")] * len(batch)
            return outcomes
        out: list[BaseException | None] = []
        for msg in batch:
            try:
                sub.handler(msg)
                out.append(None)
            except BaseException as exc:  # noqa: BLE001 - a handler failure is a nack, whatever it is
                out.append(exc)
        return out

    def _run(self) -> None:
        while True:
            item = self._next()
            if item is None:
                return
            sub, batch = item
            outcomes = self._deliver(sub, batch)
            retries: list[tuple[float, Message]] = []
            for msg, exc in zip(batch, outcomes):
                if exc is None:
                    continue
                if msg.delivery_attempt >= self.max_attempts:
                    log.error("message %s on %s dead-lettered after %d attempts: %s", msg.id, sub.topic, msg.delivery_attempt, exc)
                    dead = self._dead_letters.get(sub.topic)
                    if dead is not None:
                        try:
                            dead(msg, exc)
                        except Exception:  # noqa: BLE001
                            log.exception("dead-letter handler for %s failed", sub.topic)
                else:
                    delay = min(self.retry_base_seconds * 2 ** (msg.delivery_attempt - 1), self.retry_max_seconds)
                    log.warning("message %s on %s failed (attempt %d), retry in %.2fs: %s", msg.id, sub.topic, msg.delivery_attempt, delay, exc)
                    retries.append((time.monotonic() + delay, msg))
            retried = {id(m) for _, m in retries}
            with self._cond:
                self._in_flight -= len(batch)
                for retry_at, msg in retries:
                    heapq.heappush(self._delayed, (retry_at, next(self._counter), sub, msg.redelivered()))
                for msg in batch:
                    key = msg.ordering_key
                    if key and id(msg) not in retried:
                        # Acked or dead-lettered: the next message of its key may go.
                        waiting = sub.keys.get(key)
                        if waiting:
                            sub.ready.append((waiting.popleft(), time.monotonic()))
                        else:
                            sub.keys.pop(key, None)
                self._cond.notify_all()

    def drain(self, timeout: float = 30.0) -> bool:
        """Wait until nothing is queued or in flight (tests and shutdown). True if drained."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._delayed or self._in_flight or any(sub.ready or sub.keys for sub in self._all):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(timeout=min(left, 0.05))
        return True
