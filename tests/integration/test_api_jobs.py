"""Cancel, logs (cursor, tail, SSE follow with resume) and the timeline, over real HTTP."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import pytest
import requests

from shared.domain.status import JobStatus
from shared.ports import TimelineEvent
from tests.fakes.api_client import lines, read_sse, set_status, submit


def test_cancel_queued_is_immediate(api) -> None:
    url, bus, _ = api()
    job_id = submit(url)
    r = requests.post(f"{url}/jobs/{job_id}/cancel")
    assert r.status_code == 202 and r.json()["job"]["status"] == "cancelled"
    assert [m[1]["op"] for m in bus.messages] == ["submit"]  # nothing to tell the launcher
    again = requests.post(f"{url}/jobs/{job_id}/cancel")
    assert again.status_code == 409 and "already cancelled" in again.json()["error"]


def test_cancel_running_publishes_a_cancel(api) -> None:
    url, bus, c = api()
    job_id = submit(url)
    set_status(c.store, job_id, JobStatus.RUNNING)
    r = requests.post(f"{url}/jobs/{job_id}/cancel")
    job = r.json()["job"]
    assert r.status_code == 202 and job["status"] == "cancelling" and job["cancelRequested"] is True
    topic, data, attrs, key = bus.messages[-1]
    assert data == {"job_id": job_id, "op": "cancel"} and key == job_id and attrs["op"] == "cancel"


@pytest.mark.parametrize("status,dry_run", [(JobStatus.SUCCEEDED, False), (JobStatus.FAILED, False), (JobStatus.SUBMITTED, True)])
def test_cancel_final_job_is_409(api, status, dry_run) -> None:
    url, _, c = api()
    job_id = submit(url)
    set_status(c.store, job_id, status, dry_run=dry_run)
    r = requests.post(f"{url}/jobs/{job_id}/cancel")
    assert r.status_code == 409 and r.json()["error"]


def test_cancel_unknown_and_wrong_method(api) -> None:
    url, _, _ = api()
    assert requests.post(f"{url}/jobs/nope/cancel").status_code == 404
    assert requests.get(f"{url}/jobs/nope/cancel").status_code == 405


def test_logs_cursor_and_tail(api) -> None:
    url, _, c = api()
    job_id = submit(url)
    c.store.append_logs(job_id, lines(25), 10_000)
    page = requests.get(f"{url}/jobs/{job_id}/logs", params={"limit": 10}).json()
    assert [l["seq"] for l in page["logs"]] == list(range(1, 11)) and page["nextAfter"] == 10
    page2 = requests.get(f"{url}/jobs/{job_id}/logs", params={"after": page["nextAfter"], "limit": 100}).json()
    assert [l["seq"] for l in page2["logs"]] == list(range(11, 26))
    tail = requests.get(f"{url}/jobs/{job_id}/logs", params={"tail": 3}).json()
    assert [l["message"] for l in tail["logs"]] == ["line 22", "line 23", "line 24"]
    detail = requests.get(f"{url}/jobs/{job_id}", params={"logs_limit": 5}).json()["job"]
    assert len(detail["logs"]) == 5 and detail["logsNextAfter"] == 5
    assert requests.get(f"{url}/jobs/{job_id}/logs", params={"tail": -1}).status_code == 400


def test_follow_reads_every_line_once_across_a_reconnect(api) -> None:
    url, _, c = api()
    c.api.follow_poll_seconds = 0.02
    job_id = submit(url)
    set_status(c.store, job_id, JobStatus.RUNNING)
    c.store.append_logs(job_id, lines(30), 10_000)

    def producer() -> None:
        for k in range(5):
            time.sleep(0.05)
            c.store.append_logs(job_id, lines(20, 30 + 20 * k), 10_000)
        set_status(c.store, job_id, JobStatus.SUCCEEDED)

    threading.Thread(target=producer, daemon=True).start()
    first = read_sse(requests.get(f"{url}/jobs/{job_id}/logs", params={"follow": "true"}, stream=True, timeout=30), stop_after_logs=45)
    logs1 = [e for e in first if e[1] == "log"]
    last_id = logs1[-1][0]
    second = read_sse(requests.get(f"{url}/jobs/{job_id}/logs", params={"follow": "true"}, headers={"Last-Event-ID": last_id}, stream=True, timeout=30))
    logs2 = [e for e in second if e[1] == "log"]
    seqs = [int(e[0]) for e in logs1 + logs2]
    assert seqs == list(range(1, 131)), seqs  # every line, exactly once, in order
    assert second[-1][1] == "end" and '"succeeded"' in second[-1][2]


def test_follow_ends_on_a_dry_run(api) -> None:
    url, _, c = api()
    job_id = submit(url)
    set_status(c.store, job_id, JobStatus.SUBMITTED, dry_run=True)
    events = read_sse(requests.get(f"{url}/jobs/{job_id}/logs", params={"follow": "1"}, stream=True, timeout=10))
    assert events[-1][1] == "end"


def test_events_timeline(api) -> None:
    url, _, c = api()
    job_id = submit(url)
    for i in range(3):
        c.store.append_event(job_id, TimelineEvent(at=datetime.now(UTC), kind="note", data={"i": i}))
    body = requests.get(f"{url}/jobs/{job_id}/events", params={"limit": 2}).json()
    assert len(body["events"]) == 2 and body["nextAfter"] == 2
    # The job's own first entry (created queued), then ours, page by page, in order.
    events, after = list(body["events"]), body["nextAfter"]
    while after is not None:
        page = requests.get(f"{url}/jobs/{job_id}/events", params={"after": after, "limit": 2}).json()
        events += page["events"]
        after = page["nextAfter"]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[0]["kind"] == "status" and events[0]["data"]["from"] is None and events[0]["data"]["to"] == "queued"
    assert [e["data"]["i"] for e in events if e["kind"] == "note"] == [0, 1, 2]
    assert requests.get(f"{url}/jobs/nope/events").status_code == 404
