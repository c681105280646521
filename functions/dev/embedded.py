"""The embedded default: api + launcher + status_sync in one process, SQLite store, in-process bus.

`python -m functions.dev.embedded` (what `make run` starts). Same code paths as the cloud, other adapters.
The api is served over ASGI (uvicorn, `functions/http/asgi.py`) in this same process, next to the bus threads
and the local trainer processes; the deployed function keeps functions-framework's server.

On start (`recover`): the runs of local jobs an earlier server started (submitted / running / cancelling)
are adopted from their run folders — followed if alive, their true end reported if they ended while no
server ran, `lost` if nothing is left — and jobs stored but never launched (queued / submitting) are
launched again; the launcher's idempotency and the run folders make that safe (a run is never started
twice). On stop (`stop`): no new launches, the trainers stopped, their exit events applied, and only then
the bus and the store closed, so no final status is lost.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Sequence

from functions.wiring import Container, build_backends, event_publisher, set_container
from shared.adapters.inline_bus import InlineBus
from shared.adapters.sqlite_store import SqliteJobStore
from shared.domain.status import JobStatus
from shared.errors import PlatformError
from shared.messages import Message
from shared.settings import Settings
from shared.usecases.launching import Launcher
from shared.usecases.service import OP_SUBMIT, iter_jobs, publish_launch

log = logging.getLogger("embedded")

# How long a clean stop waits for the exit events of the stopped trainers to be applied.
DRAIN_SECONDS = 15.0


class LaunchGate:
    """The launcher's subscription, closed when the server stops. A launch message that arrives then is
    acked unhandled: its job stays queued (or submitting) in the store and the next start launches it
    (`recover`). Retrying it instead would spend its attempts against a server that is going away, and
    dead-letter it (the job failed) if the stop took long."""

    def __init__(self, launcher: Launcher):
        self.launcher = launcher
        self.closed = threading.Event()

    def handle(self, message: Message) -> None:
        if not self.closed.is_set():
            self.launcher.handle(message)

    def handle_batch(self, messages: Sequence[Message]) -> Sequence[BaseException | None]:
        if self.closed.is_set():
            return [None] * len(messages)
        return self.launcher.handle_batch(messages)


def build_embedded(settings: Settings, *, start: bool = True) -> Container:
    relay_due = threading.Event()  # set by every commit that stored a notification: the relay runs at once
    store = SqliteJobStore(settings.sqlite_file, background_checkpoints=True, on_notifications=relay_due.set)
    bus = InlineBus(max_attempts=settings.launch_max_attempts, retry_base_seconds=settings.launch_retry_base_seconds)

    c = Container(settings=settings, store=store, bus=bus, backends=build_backends(settings, event_publisher(bus, settings)), notify_in_background=True)
    gate = LaunchGate(c.launcher)
    c.launch_gate = gate  # `stop` closes it first
    bus.subscribe(settings.topic_train_requests, gate.handle, dead_letter=c.launcher.dead_letter, batch_handler=gate.handle_batch)
    bus.subscribe(settings.topic_training_events, c.status_sync.handle)
    bus.subscribe(settings.topic_job_transitions, c.notifier.handle)
    bus.subscribe(
        settings.topic_train_submissions,
        c.batch.handle,
        dead_letter=lambda m, e: log.error("batch message %s dead-lettered (already recorded as a rejection): %s", m.id, e),
    )
    if start:
        bus.start()
        recover(c)
        if settings.reconcile_interval_seconds > 0:
            threading.Thread(target=_reconcile_loop, args=(c, settings.reconcile_interval_seconds, gate.closed), name="reconcile", daemon=True).start()
        # The outbox relay (what is unpublished goes out, first of all what a crash left) and the
        # webhook retries that come due.
        threading.Thread(target=_notify_loop, args=(c, settings.notify_interval_seconds, gate.closed, relay_due), name="notify", daemon=True).start()
    return c


def _notify_loop(c: Container, interval: float, stopping: threading.Event, relay_due: threading.Event) -> None:
    while not stopping.is_set():
        relay_due.wait(interval)  # a commit with notifications, or the next look for due retries
        relay_due.clear()
        try:
            c.relay.run_once()
            c.notifier.run_due()
        except Exception:  # noqa: BLE001 - the loop must survive one bad pass (a full disk, say)
            log.exception("notify pass failed")


def _reconcile_loop(c: Container, interval: int, stopping: threading.Event) -> None:
    while not stopping.wait(interval):
        try:
            c.reconciler.run_once()
        except Exception:  # noqa: BLE001 - the loop must survive one bad pass
            log.exception("reconcile pass failed")


def recover(c: Container) -> int:
    """Adopt the runs an earlier server left (local jobs past their launch), then re-launch jobs that were
    accepted but whose launch never completed (crash, restart). Returns how many were re-launched."""
    adopted = 0
    for status in (JobStatus.SUBMITTED, JobStatus.RUNNING, JobStatus.CANCELLING):
        for job in list(iter_jobs(c.store, status)):
            adopt = getattr(c.backends.get(job.backend), "adopt", None)
            if adopt is None or job.dry_run:
                continue
            try:
                adopt(job)
                adopted += 1
            except PlatformError as exc:  # reconcile asks again later
                log.warning("job %s: could not adopt its run: %s", job.id, exc)
    if adopted:
        log.warning("adopted the runs of %d job(s) started before the last stop", adopted)
    count = 0
    for status in (JobStatus.QUEUED, JobStatus.SUBMITTING):
        for job in list(iter_jobs(c.store, status)):
            publish_launch(c.bus, c.settings.topic_train_requests, job.id, OP_SUBMIT, recovered="true")
            count += 1
    if count:
        log.warning("re-launching %d job(s) accepted before the last stop", count)
    return count


def _exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main() -> None:
    from functions.http.asgi import AsgiApi, serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings()
    for problem in settings.config_errors:
        log.error("configuration error: %s", problem)
    if settings.auth_problem is not None:
        # Never serve with authentication silently off (or guessable): refuse to start.
        log.error("not starting: %s", settings.auth_problem)
        raise SystemExit(2)
    c = build_embedded(settings)
    set_container(c)
    app = AsgiApi(c.api)
    # uvicorn stops gracefully on SIGINT / SIGTERM, then re-raises the signal to the handler it found:
    # let that be one that unwinds through the `finally` below (SIGTERM's default would end the process
    # on the spot, leaving local trainers running; Ctrl-C's would print a traceback).
    signal.signal(signal.SIGINT, _exit_on_signal)
    signal.signal(signal.SIGTERM, _exit_on_signal)
    log.info("embedded training platform on http://%s:%d (store: %s, bus: inline)", settings.host, settings.port, settings.sqlite_file)
    try:
        serve(app, settings.host, settings.port)
    finally:
        log.info("stopping: local trainers, bus, store")
        app.close()
        stop(c)


def stop(c: Container, drain_seconds: float = DRAIN_SECONDS) -> None:
    """Stop without losing a final status: close the launches, stop the local trainers (their process
    groups; each one's exit event is published before `shutdown` returns), let status_sync apply those
    events (the bus drained, bounded), and only then stop the bus and close the store."""
    gate = c.launch_gate
    if gate is not None:
        gate.closed.set()
    c.shutdown()
    drain = getattr(c.bus, "drain", None)
    if drain is not None and not drain(timeout=drain_seconds):
        log.warning("stopping: events still queued after %.0fs; reconcile settles those jobs on the next start", drain_seconds)
    # The embedded server's own parts (build_embedded made them): their stop and close are not ports'.
    bus, store = c.bus, c.store
    assert isinstance(bus, InlineBus) and isinstance(store, SqliteJobStore)
    bus.stop()
    c.notifier.close()
    store.close()


if __name__ == "__main__":
    main()
