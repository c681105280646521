"""Pub/Sub bus: publishes JSON messages with attributes and an ordering key (the job id).

The client's default 10 ms batching window dominates publish latency on the emulator; we publish with a
1 ms window because the api answers only after the publish is confirmed. Vendor errors become our own:
anything the client can't confirm is a `TransientError` (the api answers 503 and marks the job failed).
"""

from __future__ import annotations

import json
import threading
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import pubsub_v1  # type: ignore[attr-defined]  # a namespace package: mypy can't see the client's module

from shared.errors import TransientError

PUBLISH_TIMEOUT_SECONDS = 30.0


class PubSubBus:
    kind = "pubsub"

    def __init__(self, project_id: str, *, publisher: pubsub_v1.PublisherClient | None = None, max_latency: float = 0.001):
        self.project_id = project_id
        self.publisher = publisher or pubsub_v1.PublisherClient(
            batch_settings=pubsub_v1.types.BatchSettings(max_messages=100, max_latency=max_latency),
            publisher_options=pubsub_v1.types.PublisherOptions(enable_message_ordering=True),
        )
        self._paths: dict[str, str] = {}
        self._lock = threading.Lock()

    def topic_path(self, topic: str) -> str:
        path = self._paths.get(topic)
        if path is None:
            path = self.publisher.topic_path(self.project_id, topic)
            with self._lock:
                self._paths[topic] = path
        return path

    def publish(
        self,
        topic: str,
        data: dict[str, Any],
        *,
        attributes: dict[str, str] | None = None,
        ordering_key: str | None = None,
    ) -> str:
        path = self.topic_path(topic)
        payload = json.dumps(data, separators=(",", ":")).encode()
        try:
            future = self.publisher.publish(path, payload, ordering_key=ordering_key or "", **(attributes or {}))
            return str(future.result(timeout=PUBLISH_TIMEOUT_SECONDS))
        except Exception as exc:  # noqa: BLE001 - every failure to confirm is our TransientError
            if ordering_key:
                # A failed publish pauses its ordering key until resumed; resume so the next try can go.
                try:
                    self.publisher.resume_publish(path, ordering_key)
                except Exception:  # noqa: BLE001, S110 - best effort: the TransientError below is what the caller acts on
                    pass
            raise TransientError(f"publish to {topic} failed: {exc.__class__.__name__}: {exc}") from exc

    def ensure_topics(self, topics: list[str]) -> None:
        """Create topics that don't exist (emulator and first deploys; Terraform owns them in the cloud)."""
        for topic in topics:
            try:
                self.publisher.create_topic(request={"name": self.topic_path(topic)})
            except gexc.AlreadyExists:
                pass

    def ensure_push_subscription(
        self,
        topic: str,
        subscription: str,
        push_endpoint: str,
        *,
        dead_letter_topic: str | None = None,
        max_attempts: int = 5,
        ack_deadline_seconds: int = 60,
        enable_message_ordering: bool = True,
        minimum_backoff_seconds: int = 1,
        maximum_backoff_seconds: int = 60,
    ) -> None:
        """Push subscription with a retry policy and optionally ordering and a dead-letter topic (emulator
        topology; `functions.dev.local_stack.create_subscriptions` gives each the settings infra/ gives it).
        The emulator stops pushing an ordered subscription once it dead-letters a message."""
        sub_path = pubsub_v1.SubscriberClient.subscription_path(self.project_id, subscription)
        request: dict[str, Any] = {
            "name": sub_path,
            "topic": self.topic_path(topic),
            "push_config": {"push_endpoint": push_endpoint},
            "ack_deadline_seconds": ack_deadline_seconds,
            "enable_message_ordering": enable_message_ordering,
            "retry_policy": {"minimum_backoff": {"seconds": minimum_backoff_seconds}, "maximum_backoff": {"seconds": maximum_backoff_seconds}},
        }
        if dead_letter_topic:
            request["dead_letter_policy"] = {
                "dead_letter_topic": self.topic_path(dead_letter_topic),
                "max_delivery_attempts": max_attempts,
            }
        self._create_subscription(request)

    def ensure_pull_subscription(self, topic: str, subscription: str, *, ack_deadline_seconds: int = 60, retention_seconds: int = 604800) -> None:
        """A pull subscription (dead-letter topics: a topic with no subscription drops what it gets)."""
        self._create_subscription(
            {
                "name": pubsub_v1.SubscriberClient.subscription_path(self.project_id, subscription),
                "topic": self.topic_path(topic),
                "ack_deadline_seconds": ack_deadline_seconds,
                "message_retention_duration": {"seconds": retention_seconds},
            }
        )

    def _create_subscription(self, request: dict[str, Any]) -> None:
        subscriber = pubsub_v1.SubscriberClient()
        try:
            subscriber.create_subscription(request=request)
        except gexc.AlreadyExists:
            pass
        finally:
            subscriber.close()
