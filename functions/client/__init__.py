"""The platform's Python client and the `trainctl` command line.

`Client` speaks the api's HTTP routes (`functions/http/routes.py`) with `httpx` and returns the api's own pydantic
models (`functions/http/models.py`), so the client and the server can't disagree on a job's shape. Errors
are our own types (`functions.client.errors`) carrying the api's field errors.

    from functions.client import Client
    c = Client("http://127.0.0.1:4000")
    job = c.submit("examples/tiny-local.json")
    final = c.wait(job.id, on_change=lambda j: print(j.status))
"""

from functions.client.api_client import FINAL_STATUSES, Client, MetricPoint, TimelineEntry
from functions.client.errors import ApiError, BadRequest, ClientError, Conflict, ConnectionFailed, NotFound, Unauthorized

__all__ = [
    "FINAL_STATUSES",
    "ApiError",
    "BadRequest",
    "Client",
    "ClientError",
    "Conflict",
    "ConnectionFailed",
    "MetricPoint",
    "NotFound",
    "TimelineEntry",
    "Unauthorized",
]
