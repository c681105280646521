"""Deployable entry points. Each is one line over the container; Cloud Functions deploys this file.

- `api`        HTTP function: the studio's REST contract.
- `launcher`   CloudEvent on `train-requests`: submit / cancel on a backend.
- `status_sync` CloudEvent on `training-events`: applies backend and trainer events to the store.
- `submit`     CloudEvent on `train-submissions`: batch submissions, same rules as `POST /train`.
- `notify`     CloudEvent on `job-transitions`: delivers each transition to the job's webhook subscribers.
- `reconcile`  HTTP, called by Cloud Scheduler: polls the backends for every non-terminal job, then
               publishes what the outbox still holds and retries the webhook deliveries that are due.

The launcher and status_sync relay the outbox after their commits (`Container.relay_quietly`), so a
transition is announced within the handler that made it; reconcile catches whatever a crash left.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import flask
import functions_framework
from cloudevents.http import CloudEvent
from werkzeug.exceptions import HTTPException

from functions.pubsub_handler import handle_cloud_event
from functions.wiring import Container, container
from shared.messages import Message

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@functions_framework.errorhandler(HTTPException)  # type: ignore[untyped-decorator]  # functions_framework carries no types
def json_http_error(exc: HTTPException) -> flask.Response | tuple[dict[str, Any], int]:
    """Answers the HTTP server would give itself, before `api` runs, in the api's JSON shape. A path its
    router can't match (one holding a newline) goes to the api like any other path: a token is checked
    first (401), then it is the api's JSON 404."""
    if exc.code == 404 and flask.has_request_context():
        return container().api(flask.request)
    return ({"error": f"{exc.name}.", "errors": []}, exc.code or 500)


@functions_framework.http
def api(request):  # type: ignore[no-untyped-def]
    return container().api(request)


def _then_relay(event: CloudEvent, handler: Callable[[Container], Callable[..., Any]]) -> None:
    """Handle the event, then publish what the handler's commits put in the outbox (even if it failed:
    a transition it did commit is announced)."""
    c = container()
    seen: list[str] = []

    def handle(message: Message) -> None:
        job_id = message.data.get("job_id") if isinstance(message.data, dict) else None
        if isinstance(job_id, str):
            seen.append(job_id)
        handler(c)(message)

    try:
        handle_cloud_event(event, handle)
    finally:
        # This job's transitions (concurrent handlers then don't all publish one backlog); a message that
        # names no job (a Vertex log entry) sweeps the outbox, as reconcile does.
        c.relay_quietly(seen[0] if seen else None)


@functions_framework.cloud_event
def launcher(event: CloudEvent) -> None:
    _then_relay(event, lambda c: c.launcher.handle)


@functions_framework.cloud_event
def status_sync(event: CloudEvent) -> None:
    _then_relay(event, lambda c: c.status_sync.handle)


@functions_framework.cloud_event
def notify(event: CloudEvent) -> None:
    c = container()
    handle_cloud_event(event, c.notifier.handle)


@functions_framework.cloud_event
def submit(event: CloudEvent) -> None:
    c = container()
    # Non-JSON data is recorded by the handler and then raised, so Pub/Sub dead-letters it.
    handle_cloud_event(event, c.batch.handle, strict_json=False)


@functions_framework.http
def reconcile(request):  # type: ignore[no-untyped-def]
    c = container()
    report = c.reconciler.run_once().to_dict()
    c.relay_quietly()
    report["webhookChannelsRun"] = c.notifier.run_due()
    return (report, 200)
