"""Both buses: the in-process one (retries, dead letter, ordering) and Pub/Sub on the real emulator."""

from __future__ import annotations

import json
import threading
import time
import uuid

import pytest

from shared.adapters.inline_bus import InlineBus
from shared.errors import TransientError
from shared.messages import Message, from_push, to_push


@pytest.fixture
def inline():
    bus = InlineBus(max_attempts=3, retry_base_seconds=0.01)
    bus.start(workers=2)
    yield bus
    bus.stop()


def test_inline_delivers_with_attributes(inline: InlineBus) -> None:
    got: list[Message] = []
    inline.subscribe("t", got.append)
    mid = inline.publish("t", {"job_id": "j1", "op": "submit"}, attributes={"op": "submit"}, ordering_key="j1")
    assert inline.drain(5)
    assert len(got) == 1
    assert got[0].id == mid and got[0].data == {"job_id": "j1", "op": "submit"}
    assert got[0].attributes == {"op": "submit"} and got[0].ordering_key == "j1" and got[0].delivery_attempt == 1


def test_inline_retries_with_backoff_then_succeeds(inline: InlineBus) -> None:
    attempts: list[int] = []

    def flaky(msg: Message) -> None:
        attempts.append(msg.delivery_attempt)
        if msg.delivery_attempt < 3:
            raise TransientError("blip")

    inline.subscribe("t", flaky)
    inline.publish("t", {"x": 1})
    assert inline.drain(5)
    assert attempts == [1, 2, 3]


def test_inline_dead_letters_after_max_attempts(inline: InlineBus) -> None:
    dead: list[tuple[Message, BaseException]] = []

    def always(msg: Message) -> None:
        raise TransientError("down")

    inline.subscribe("t", always, dead_letter=lambda m, e: dead.append((m, e)))
    inline.publish("t", {"job_id": "j"})
    assert inline.drain(5)
    assert len(dead) == 1 and dead[0][0].delivery_attempt == 3 and "down" in str(dead[0][1])


def test_inline_keeps_order_per_key(inline: InlineBus) -> None:
    seen: dict[str, list[int]] = {"a": [], "b": []}
    lock = threading.Lock()

    def handler(msg: Message) -> None:
        time.sleep(0.001)
        with lock:
            seen[msg.ordering_key].append(msg.data["n"])

    inline.subscribe("t", handler)
    for n in range(30):
        inline.publish("t", {"n": n}, ordering_key="a")
        inline.publish("t", {"n": n}, ordering_key="b")
    assert inline.drain(10)
    assert seen["a"] == list(range(30)) and seen["b"] == list(range(30))


def test_push_envelope_roundtrip() -> None:
    msg = Message(id="m1", topic="train-requests", data={"job_id": "j"}, attributes={"op": "submit"}, ordering_key="j", delivery_attempt=2)
    back = from_push(to_push(msg), source="//pubsub.googleapis.com/projects/p/topics/train-requests")
    assert (back.id, back.topic, back.data, back.attributes, back.ordering_key, back.delivery_attempt) == (
        "m1",
        "train-requests",
        {"job_id": "j"},
        {"op": "submit"},
        "j",
        2,
    )


@pytest.mark.emulator
def test_pubsub_publishes_json_with_attributes_and_ordering(pubsub_emulator) -> None:
    from google.cloud import pubsub_v1

    from shared.adapters.pubsub_bus import PubSubBus

    project = pubsub_emulator.project
    topic = f"t-{uuid.uuid4().hex[:8]}"
    bus = PubSubBus(project)
    bus.ensure_topics([topic])
    bus.ensure_topics([topic])  # idempotent
    sub = pubsub_v1.SubscriberClient()
    sub_path = sub.subscription_path(project, f"s-{topic}")
    sub.create_subscription(request={"name": sub_path, "topic": bus.topic_path(topic), "enable_message_ordering": True})
    ids = [bus.publish(topic, {"job_id": "j1", "n": n}, attributes={"op": "submit"}, ordering_key="j1") for n in range(5)]
    assert len(set(ids)) == 5
    received = []
    deadline = time.monotonic() + 20
    while len(received) < 5 and time.monotonic() < deadline:
        resp = sub.pull(request={"subscription": sub_path, "max_messages": 10}, timeout=5)
        for m in resp.received_messages:
            received.append(m.message)
        if resp.received_messages:
            sub.acknowledge(request={"subscription": sub_path, "ack_ids": [m.ack_id for m in resp.received_messages]})
    assert [json.loads(m.data)["n"] for m in received] == [0, 1, 2, 3, 4]
    assert all(m.ordering_key == "j1" and dict(m.attributes) == {"op": "submit"} for m in received)
    sub.close()


@pytest.mark.emulator
def test_pubsub_publish_to_missing_topic_is_transient(pubsub_emulator) -> None:
    from shared.adapters.pubsub_bus import PubSubBus

    bus = PubSubBus(pubsub_emulator.project)
    with pytest.raises(TransientError):
        bus.publish(f"missing-{uuid.uuid4().hex[:6]}", {"job_id": "x"}, ordering_key="x")
