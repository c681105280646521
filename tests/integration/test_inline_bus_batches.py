"""InlineBus batch subscriptions and ordering (shared/adapters/inline_bus.py), beyond test_buses.py.

- A batch subscription gets at most `max_batch` messages at once, never two of one ordering key, each
  message exactly once when its handler succeeds; messages without a key may share a batch.
- Each message of a batch has its own outcome: the failed one alone is retried (or dead-lettered), the
  others are acked; a batch handler that raises nacks the whole batch.
- Per-key order holds across retries: a message waiting for its retry (or going to the dead letter)
  holds back the later messages of its key, and only those.
- Linger: under a burst batches are larger than one; a lone message still goes within about the linger
  time; a full batch does not wait for it.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence

import pytest

from shared.adapters.inline_bus import InlineBus
from shared.errors import TransientError
from shared.messages import Message

RETRY = 0.05  # retry_base_seconds: the first retry comes this long after the failure


@pytest.fixture
def bus() -> Iterator[InlineBus]:
    b = InlineBus(max_attempts=3, retry_base_seconds=RETRY)
    yield b
    b.stop()


class Recorder:
    """A subscription's handlers: records every delivery (message, attempt, batch) and fails the
    messages `fail(message)` says should fail (return an exception)."""

    def __init__(self, fail: Callable[[Message], BaseException | None] = lambda m: None, delay: float = 0.0):
        self.fail = fail
        self.delay = delay
        self.lock = threading.Lock()
        self.batches: list[list[Message]] = []
        self.deliveries: list[tuple[Message, float]] = []  # in the order handled
        self.dead: list[tuple[Message, BaseException]] = []

    def batch(self, messages: Sequence[Message]) -> list[BaseException | None]:
        if self.delay:
            time.sleep(self.delay)
        with self.lock:
            self.batches.append(list(messages))
            now = time.monotonic()
            self.deliveries += [(m, now) for m in messages]
        return [self.fail(m) for m in messages]

    def single(self, message: Message) -> None:
        exc = self.batch([message])[0]
        if exc is not None:
            raise exc

    def dead_letter(self, message: Message, exc: BaseException) -> None:
        with self.lock:
            self.dead.append((message, exc))

    def subscribe(self, bus: InlineBus, topic: str = "t", *, batched: bool = True, **kw) -> Recorder:
        if batched:
            bus.subscribe(topic, self.single, self.dead_letter, batch_handler=self.batch, **kw)
        else:
            bus.subscribe(topic, self.single, self.dead_letter)
        return self

    def seen(self, key: str | None = None) -> list[tuple[int, int]]:
        """(n, delivery attempt) of every delivery of that key, in order."""
        return [(m.data["n"], m.delivery_attempt) for m, _ in self.deliveries if m.ordering_key == key]


def fail_first_attempt(*ns: int) -> Callable[[Message], BaseException | None]:
    return lambda m: TransientError(f"blip {m.data['n']}") if m.data["n"] in ns and m.delivery_attempt == 1 else None


def test_batches_respect_max_batch_keys_and_order(bus: InlineBus) -> None:
    rec = Recorder(delay=0.001).subscribe(bus, max_batch=8, linger_seconds=0.005)
    keys = [f"k{i}" for i in range(6)]
    n = 0
    for _ in range(15):
        for key in keys:
            bus.publish("t", {"n": n}, ordering_key=key)
            n += 1
    for _ in range(20):
        bus.publish("t", {"n": n})
        n += 1
    bus.start(workers=3)
    assert bus.drain(10)
    assert sorted(m.data["n"] for m, _ in rec.deliveries) == list(range(n))  # each exactly once
    assert all(1 <= len(b) <= 8 for b in rec.batches)
    for batch in rec.batches:
        keyed = [m.ordering_key for m in batch if m.ordering_key]
        assert len(keyed) == len(set(keyed)), f"two messages of one key in a batch: {keyed}"
    assert max(len(b) for b in rec.batches) > 1
    # Per key, in publish order (the next message of a key is released only once the previous is acked).
    for i, key in enumerate(keys):
        assert [x for x, _ in rec.seen(key)] == [i + len(keys) * j for j in range(15)]
    # Messages without a key may share a batch.
    assert any(sum(1 for m in b if m.ordering_key is None) > 1 for b in rec.batches)


def test_one_failed_message_of_a_batch_is_retried_alone(bus: InlineBus) -> None:
    rec = Recorder(fail=fail_first_attempt(2)).subscribe(bus, max_batch=8, linger_seconds=0.02)
    for n in range(5):
        bus.publish("t", {"n": n}, ordering_key=f"k{n}")
    bus.start(workers=1)  # published first: the first batch holds all five
    assert bus.drain(5)
    assert [m.data["n"] for m in rec.batches[0]] == [0, 1, 2, 3, 4]
    attempts = Counter(m.data["n"] for m, _ in rec.deliveries)
    assert attempts == {0: 1, 1: 1, 2: 2, 3: 1, 4: 1}  # the others were acked, not redelivered
    assert [a for x, a in rec.seen("k2")] == [1, 2]
    assert rec.dead == []


def test_a_failing_message_of_a_batch_is_dead_lettered_alone(bus: InlineBus) -> None:
    rec = Recorder(fail=lambda m: TransientError("down") if m.data["n"] == 1 else None)
    rec.subscribe(bus, max_batch=8, linger_seconds=0.02)
    for n in range(4):
        bus.publish("t", {"n": n}, ordering_key=f"k{n}")
    bus.start(workers=2)
    assert bus.drain(5)
    attempts = Counter(m.data["n"] for m, _ in rec.deliveries)
    assert attempts == {0: 1, 1: 3, 2: 1, 3: 1}
    assert len(rec.dead) == 1
    message, exc = rec.dead[0]
    assert message.data["n"] == 1 and message.delivery_attempt == 3 and "down" in str(exc)


def test_a_batch_handler_that_raises_nacks_every_message(bus: InlineBus) -> None:
    calls: list[list[tuple[int, int]]] = []

    def batch(messages: Sequence[Message]) -> list[BaseException | None]:
        calls.append([(m.data["n"], m.delivery_attempt) for m in messages])
        if len(calls) == 1:
            raise TransientError("store down")
        return [None] * len(messages)

    def single(message: Message) -> None:
        batch([message])

    bus.subscribe("t", single, batch_handler=batch, max_batch=8, linger_seconds=0.02)
    for n in range(3):
        bus.publish("t", {"n": n}, ordering_key=f"k{n}")
    bus.start(workers=1)
    assert bus.drain(5)
    assert calls[0] == [(0, 1), (1, 1), (2, 1)]
    redelivered = sorted(x for call in calls[1:] for x in call)
    assert redelivered == [(0, 2), (1, 2), (2, 2)]


@pytest.mark.parametrize("batched", [True, False], ids=["batch", "single"])
def test_a_retry_holds_back_the_later_messages_of_its_key_only(bus: InlineBus, batched: bool) -> None:
    rec = Recorder(fail=fail_first_attempt(0)).subscribe(bus, batched=batched, max_batch=8, linger_seconds=0.005)
    bus.start(workers=2)
    for n in range(3):
        bus.publish("t", {"n": n}, ordering_key="a")
    bus.publish("t", {"n": 10}, ordering_key="b")
    assert bus.drain(5)
    assert rec.seen("a") == [(0, 1), (0, 2), (1, 1), (2, 1)]
    at = {(m.data["n"], m.delivery_attempt): t for m, t in rec.deliveries}
    # a1 waited for a0's retry (about RETRY later), b did not.
    assert at[(1, 1)] >= at[(0, 2)]
    assert at[(10, 1)] < at[(0, 2)]
    assert at[(0, 2)] - at[(0, 1)] >= RETRY * 0.8


@pytest.mark.parametrize("batched", [True, False], ids=["batch", "single"])
def test_a_dead_lettered_message_releases_its_key(bus: InlineBus, batched: bool) -> None:
    rec = Recorder(fail=lambda m: TransientError("poison") if m.data["n"] == 0 else None)
    rec.subscribe(bus, batched=batched, max_batch=8, linger_seconds=0.005)
    bus.start(workers=2)
    for n in range(3):
        bus.publish("t", {"n": n}, ordering_key="a")
    assert bus.drain(5)
    assert rec.seen("a") == [(0, 1), (0, 2), (0, 3), (1, 1), (2, 1)]
    assert [m.data["n"] for m, _ in rec.dead] == [0]


def test_messages_without_a_key_are_not_held_back_by_a_retry(bus: InlineBus) -> None:
    rec = Recorder(fail=fail_first_attempt(0)).subscribe(bus, max_batch=8, linger_seconds=0.005)
    bus.start(workers=2)
    for n in range(4):
        bus.publish("t", {"n": n})
    assert bus.drain(5)
    order = rec.seen(None)
    assert sorted(order) == [(0, 1), (0, 2), (1, 1), (2, 1), (3, 1)]
    assert order.index((0, 2)) == len(order) - 1  # the others went while n=0 waited for its retry


def test_many_keys_under_concurrency_keep_their_order_through_retries(bus: InlineBus) -> None:
    # Every fifth message fails its first attempt; per key, the deliveries must still be in order with
    # each retry directly after its failure.
    rec = Recorder(fail=lambda m: TransientError("x") if m.data["n"] % 5 == 0 and m.delivery_attempt == 1 else None)
    bus2 = InlineBus(max_attempts=3, retry_base_seconds=0.005)
    try:
        rec.subscribe(bus2, max_batch=4, linger_seconds=0.002)
        bus2.start(workers=4)
        for n in range(200):
            bus2.publish("t", {"n": n}, ordering_key=f"k{n % 7}")
        assert bus2.drain(10)
    finally:
        bus2.stop()
    per_key: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for m, _ in rec.deliveries:
        per_key[m.ordering_key].append((m.data["n"], m.delivery_attempt))
    for k in range(7):
        expected = []
        for n in range(k, 200, 7):
            expected.append((n, 1))
            if n % 5 == 0:
                expected.append((n, 2))
        assert per_key[f"k{k}"] == expected
    assert rec.dead == []


def test_max_batch_is_respected_when_more_are_ready(bus: InlineBus) -> None:
    rec = Recorder().subscribe(bus, max_batch=3, linger_seconds=0.01)
    for n in range(10):
        bus.publish("t", {"n": n}, ordering_key=f"k{n}")
    bus.start(workers=1)
    assert bus.drain(5)
    assert [len(b) for b in rec.batches] == [3, 3, 3, 1]
    assert [m.data["n"] for b in rec.batches for m in b] == list(range(10))


def test_burst_is_batched(bus: InlineBus) -> None:
    rec = Recorder().subscribe(bus, max_batch=16, linger_seconds=0.02)
    bus.start(workers=2)
    time.sleep(0.01)  # workers idle, waiting
    for n in range(200):
        bus.publish("t", {"n": n}, ordering_key=f"k{n}")
    assert bus.drain(5)
    assert sorted(m.data["n"] for m, _ in rec.deliveries) == list(range(200))
    assert len(rec.batches) < 100
    assert max(len(b) for b in rec.batches) > 1


def test_a_lone_message_goes_within_about_the_linger_time(bus: InlineBus) -> None:
    linger = 0.1
    rec = Recorder().subscribe(bus, max_batch=16, linger_seconds=linger)
    bus.start(workers=2)
    time.sleep(0.01)
    start = time.monotonic()
    bus.publish("t", {"n": 0}, ordering_key="a")
    assert bus.drain(5)
    latency = rec.deliveries[0][1] - start
    assert linger * 0.5 <= latency < linger + 0.3  # it waited for company, not much longer
    assert [len(b) for b in rec.batches] == [1]


def test_a_full_batch_does_not_wait_for_the_linger(bus: InlineBus) -> None:
    rec = Recorder().subscribe(bus, max_batch=4, linger_seconds=3.0)
    bus.start(workers=2)
    time.sleep(0.01)
    start = time.monotonic()
    for n in range(4):
        bus.publish("t", {"n": n}, ordering_key=f"k{n}")
    deadline = start + 2.0
    while not rec.deliveries and time.monotonic() < deadline:
        time.sleep(0.005)
    assert rec.deliveries, "a full batch waited for its linger"
    assert rec.deliveries[0][1] - start < 1.0
    assert [len(b) for b in rec.batches] == [4]


def test_every_subscription_of_a_topic_gets_every_message(bus: InlineBus) -> None:
    batched = Recorder().subscribe(bus, max_batch=8, linger_seconds=0.005)
    plain = Recorder().subscribe(bus, batched=False)
    bus.start(workers=2)
    for n in range(20):
        bus.publish("t", {"n": n}, ordering_key=f"k{n % 3}")
    assert bus.drain(5)
    for rec in (batched, plain):
        assert sorted(m.data["n"] for m, _ in rec.deliveries) == list(range(20))
    assert all(len(b) == 1 for b in plain.batches)  # no batch handler: one at a time


def test_a_lingering_batch_does_not_hold_back_another_topic(bus: InlineBus) -> None:
    Recorder().subscribe(bus, "launch", max_batch=16, linger_seconds=0.5)
    other = Recorder().subscribe(bus, "events", batched=False)
    bus.start(workers=4)
    time.sleep(0.01)
    start = time.monotonic()
    bus.publish("launch", {"n": 0}, ordering_key="a")
    bus.publish("events", {"n": 1}, ordering_key="b")
    assert bus.drain(5)
    assert other.deliveries[0][1] - start < 0.25  # idle workers: no reason to wait for `launch`'s linger
