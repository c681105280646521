"""Small clients of the api for the integration tests: submit a job, read an SSE stream, seed a store.

Shared by tests/integration/test_api_jobs.py, test_asgi.py and test_small_holes.py (a test module
never imports another test module).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import requests

from shared.domain.job import LogLine
from shared.domain.status import JobStatus
from shared.ports import JobStore

BODY = {"dataset_file": "gs://b/d.jsonl", "output_dir": "/o"}


def submit(url: str) -> str:
    r = requests.post(f"{url}/train", json=BODY)
    assert r.status_code == 202
    job_id: str = r.json()["job"]["id"]
    return job_id


def set_status(store: JobStore, job_id: str, status: JobStatus, **kw: Any) -> None:
    store.update(job_id, lambda j: j.replace(status=status, **kw))


def lines(n: int, start: int = 0) -> list[LogLine]:
    return [LogLine(timestamp=datetime.now(UTC), stream="stdout", message=f"line {i}") for i in range(start, start + n)]


def read_sse(resp: requests.Response, stop_after_logs: int | None = None) -> list[tuple[str | None, str, str]]:
    events: list[tuple[str | None, str, str]] = []
    cur: dict[str, str] = {}
    for chunk in resp.iter_lines(decode_unicode=True):
        raw = chunk.decode() if isinstance(chunk, bytes) else chunk  # str already (decode_unicode); typed as either
        if raw == "":
            if "event" in cur:
                events.append((cur.get("id"), cur["event"], cur.get("data", "")))
                if cur["event"] == "end":
                    break
                if stop_after_logs is not None and sum(1 for e in events if e[1] == "log") >= stop_after_logs:
                    break
            cur = {}
            continue
        key, _, value = raw.partition(": ")
        cur[key] = value
    resp.close()
    return events
