"""Builds the adapters once, from settings, at the edge; entry points get them from here.

No client is built at import time: `container()` builds on first use (in the serving process, after
gunicorn has forked its worker), and tests build their own `Container` with whatever they inject.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from functions.http.api import Api
from shared.domain.backend import BackendKind
from shared.domain.webhooks import Schedule
from shared.ports import Backend, Bus, JobStore, SystemClock
from shared.settings import Settings
from shared.usecases.batch import BatchSubmitter
from shared.usecases.launching import Launcher
from shared.usecases.notify import Notifier, OutboxRelay
from shared.usecases.reconcile import Reconciler
from shared.usecases.service import TrainingService
from shared.usecases.status_sync import StatusSync

log = logging.getLogger(__name__)


def build_store(settings: Settings) -> JobStore:
    if settings.store_kind == "firestore":
        from shared.adapters.firestore_store import FirestoreJobStore

        return FirestoreJobStore.from_settings(settings.project_id, settings.firestore_database, settings.collection_prefix)
    from shared.adapters.sqlite_store import SqliteJobStore

    return SqliteJobStore(settings.sqlite_file)


def build_bus(settings: Settings) -> Bus:
    if settings.bus_kind == "pubsub":
        from shared.adapters.pubsub_bus import PubSubBus

        return PubSubBus(settings.project_id)
    from shared.adapters.inline_bus import InlineBus

    return InlineBus(max_attempts=settings.launch_max_attempts, retry_base_seconds=settings.launch_retry_base_seconds)


def build_backends(settings: Settings, events: Callable[[dict[str, Any]], Any] | None = None) -> dict[BackendKind, Backend]:
    """The launcher's backends: each registered unit's adapter, from its settings group. Only the
    backends this deployment can use are built; one whose configuration is missing or broken
    (`Settings.backend_problems()`) is left out, so the launcher fails its jobs with `BackendUnavailable`
    instead of failing obscurely later (the api refuses such requests up front). Nothing connects here:
    clients are created on first use, and never for a dry run. `events` receives the envelopes a backend
    publishes itself (the local supervisor's; the embedded server puts them on its bus)."""
    from shared.adapters.registry import REGISTRY
    from shared.adapters.unit import BuildContext
    from shared.settings import REPO_ROOT

    context = BuildContext(events=events, store_file=settings.sqlite_file, repo_root=REPO_ROOT)
    backends: dict[BackendKind, Backend] = {}
    for kind, problem in settings.backend_problems().items():
        if problem:
            log.info("%s backend not available: %s", kind, problem)
            continue
        unit = REGISTRY.get(kind)
        if unit is not None:
            backends[kind] = unit.build(settings.backend_settings(kind), context)
    return backends


def event_publisher(bus: Bus, settings: Settings) -> Callable[[dict[str, Any]], None]:
    """Where the local supervisor's events go: `training-events`, keyed by job id, the same path as
    every other source's."""

    def publish(data: dict[str, Any]) -> None:
        bus.publish(settings.topic_training_events, data, ordering_key=str(data.get("job_id") or ""))

    return publish


@dataclass
class Container:
    settings: Settings
    store: JobStore
    bus: Bus
    clock: Any = field(default_factory=SystemClock)
    backends: dict[BackendKind, Backend] = field(default_factory=dict)
    # The embedded server delivers webhooks on the notifier's own threads, not on the bus's workers.
    notify_in_background: bool = False
    # The embedded server's gate on its launcher subscription (functions/dev/embedded.py); None elsewhere.
    launch_gate: Any = None

    def __post_init__(self) -> None:
        from shared.adapters.webhook_sender import WebhookSender

        self.sender = WebhookSender(allowed_hosts=self.settings.webhook_allowed_host_set, timeout_seconds=self.settings.webhook_timeout_seconds)
        self.service = TrainingService(
            store=self.store,
            bus=self.bus,
            # A caller's webhook URLs go through the SSRF guard, DNS included, when the job is accepted.
            policy=dataclasses.replace(self.settings.request_policy(), check_webhook=self.sender.check),
            requests_topic=self.settings.topic_train_requests,
            clock=self.clock,
        )
        self.api = Api(settings=self.settings, service=self.service, store=self.store, bus_kind=self.bus.kind)
        self.launcher = Launcher(store=self.store, backends=self.backends, clock=self.clock, bus=self.bus, requests_topic=self.settings.topic_train_requests)
        self.status_sync = StatusSync(
            store=self.store, max_log_chars=self.settings.max_log_chars, rules=self.settings.backend_rules(), clock=self.clock, backends=self.backends
        )
        self.reconciler = Reconciler(
            store=self.store,
            backends=self.backends,
            status_sync=self.status_sync,
            bus=self.bus,
            requests_topic=self.settings.topic_train_requests,
            clock=self.clock,
            min_age=timedelta(seconds=self.settings.reconcile_min_age_seconds),
            stale_after=timedelta(seconds=self.settings.stale_after_seconds),
        )
        self.relay = OutboxRelay(store=self.store, bus=self.bus, topic=self.settings.topic_job_transitions)
        self.notifier = Notifier(
            store=self.store,
            sender=self.sender,
            signing_key=self.settings.webhook_key,
            global_urls=self.settings.webhook_url_list,
            schedule=Schedule.parse(self.settings.webhook_retry_schedule),
            clock=self.clock,
            lease_seconds=max(30.0, 3 * self.settings.webhook_timeout_seconds),
            background=self.notify_in_background,
            unseal=sealer.unseal if (sealer := self.settings.sealer) is not None else None,
        )
        self.batch = BatchSubmitter(
            service=self.service, store=self.store, bus=self.bus, rejected_topic=self.settings.topic_train_submissions_rejected, clock=self.clock
        )

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> Container:
        settings = settings or Settings()
        for problem in settings.config_errors:
            log.error("configuration error: %s", problem)
        store = build_store(settings)
        bus = build_bus(settings)
        return cls(settings=settings, store=store, bus=bus, backends=build_backends(settings, event_publisher(bus, settings)))

    def relay_quietly(self, job_id: str | None = None) -> None:
        """Publish what the outbox holds (for `job_id`: what a handler of that job just committed); a
        failure here loses nothing (the next run, or reconcile, publishes it), so it never fails the handler."""
        try:
            self.relay.run_once(job_id)
        except Exception as exc:  # noqa: BLE001 - best effort by design: the outbox keeps it
            log.warning("outbox relay failed (it is retried): %s", exc)

    def shutdown(self) -> None:
        """Stop local trainers (their process groups) before the process goes away."""
        for backend in self.backends.values():
            stop_all = getattr(backend, "stop_all", None)
            if stop_all is not None:
                stop_all()


_lock = threading.Lock()
_container: Container | None = None


def container() -> Container:
    global _container
    if _container is None:
        with _lock:
            if _container is None:
                _container = Container.from_settings()
    return _container


def set_container(value: Container | None) -> None:
    """Install a pre-built container (the embedded server, tests)."""
    global _container
    with _lock:
        _container = value
