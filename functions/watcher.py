"""Entry point of the cluster watcher: `python -m functions.watcher` (the command of the Deployment in
`infra/k8s/watcher.yaml`).

Builds the settings (`K8S_NAMESPACE`, `K8S_KUBECONFIG` / `K8S_CONTEXT` or the in-cluster config,
`GOOGLE_CLOUD_PROJECT`, `TOPIC_TRAINING_EVENTS`), a Pub/Sub publisher for `training-events` with the
job id as ordering key, and a `ClusterWatcher`; runs it until SIGTERM / SIGINT, logging to stdout.
Safe to restart at any time (see `shared/adapters/kubernetes/watcher.py`): a restarted watcher re-lists,
re-sends each job's current state under the same event id and its log lines under the same seqs,
which status_sync drops as duplicates.
"""

from __future__ import annotations

import logging
import signal
import sys
from typing import Any

from shared.adapters.kubernetes.client import load_api_client
from shared.adapters.kubernetes.config import KubernetesSettings
from shared.adapters.kubernetes.watcher import ClusterWatcher
from shared.adapters.pubsub_bus import PubSubBus
from shared.ports import Bus, SystemClock
from shared.settings import Settings

log = logging.getLogger("functions.watcher")


def publisher(bus: Bus, topic: str) -> Any:
    """The watcher's `publish`: one envelope per message, ordered per job."""

    def publish(message: dict[str, Any]) -> None:
        bus.publish(topic, message, attributes={"source": str(message.get("source") or "")}, ordering_key=str(message["job_id"]))

    return publish


def build_watcher(settings: Settings, bus: Bus | None = None, api_client: Any = None) -> ClusterWatcher:
    bus = bus or PubSubBus(settings.project_id)
    k8s = KubernetesSettings.of(settings)
    return ClusterWatcher(
        api_client if api_client is not None else load_api_client(k8s),
        k8s.namespace,
        publisher(bus, settings.topic_training_events),
        clock=SystemClock(),
    )


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = Settings()
    for problem in settings.config_errors:
        log.error("configuration error: %s", problem)
    watcher = build_watcher(settings)

    def on_signal(signum: int, _frame: Any) -> None:
        log.info("signal %s: stopping", signal.Signals(signum).name)
        watcher.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info(
        "cluster watcher: namespace %s -> topic %s (project %s)", KubernetesSettings.of(settings).namespace, settings.topic_training_events, settings.project_id
    )
    watcher.run()
    log.info("cluster watcher stopped")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
