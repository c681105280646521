"""The embedded default: api + launcher + status_sync in one process, SQLite store, in-process bus.

`python -m functions.embedded` (what `make run` starts). Same code paths as the cloud, other adapters.
The api is served over ASGI (uvicorn, `functions/asgi.py`) in this same process, next to the bus threads
and the local trainer processes; the deployed function keeps functions-framework's server. On start,
jobs a previous run stored but never launched (queued / submitting) are launched again; the launcher's
idempotency makes that safe.
"""

from __future__ import annotations

import logging
import signal
import threading
import time

from functions.wiring import Container, build_backends, event_publisher, set_container
from shared.adapters.inline_bus import InlineBus
from shared.adapters.sqlite_store import SqliteJobStore
from shared.domain.status import JobStatus
from shared.service import OP_SUBMIT, iter_jobs, publish_launch
from shared.settings import Settings

log = logging.getLogger("embedded")


def build_embedded(settings: Settings, *, start: bool = True) -> Container:
    store = SqliteJobStore(settings.sqlite_file, background_checkpoints=True)
    bus = InlineBus(max_attempts=settings.launch_max_attempts, retry_base_seconds=settings.launch_retry_base_seconds)

    c = Container(settings=settings, store=store, bus=bus, backends=build_backends(settings, event_publisher(bus, settings)))
    bus.subscribe(settings.topic_train_requests, c.launcher.handle, dead_letter=c.launcher.dead_letter, batch_handler=c.launcher.handle_batch)
    bus.subscribe(settings.topic_training_events, c.status_sync.handle)
    bus.subscribe(
        settings.topic_train_submissions,
        c.batch.handle,
        dead_letter=lambda m, e: log.error("batch message %s dead-lettered (already recorded as a rejection): %s", m.id, e),
    )
    if start:
        bus.start()
        recover(c)
        if settings.reconcile_interval_seconds > 0:
            threading.Thread(target=_reconcile_loop, args=(c, settings.reconcile_interval_seconds), name="reconcile", daemon=True).start()
    return c


def _reconcile_loop(c: Container, interval: int) -> None:
    while True:
        time.sleep(interval)
        try:
            c.reconciler.run_once()
        except Exception:  # noqa: BLE001 - the loop must survive one bad pass
            log.exception("reconcile pass failed")


def recover(c: Container) -> int:
    """Re-launch jobs that were accepted but whose launch never completed (crash, restart)."""
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
    from functions.asgi import AsgiApi, serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings()
    for problem in settings.config_errors:
        log.error("configuration error: %s", problem)
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
        # Stop local trainers (their process groups), the commit and stream threads, the bus, the store.
        log.info("stopping: local trainers, bus, store")
        app.close()
        c.shutdown()
        c.bus.stop()
        c.store.close()


if __name__ == "__main__":
    main()
