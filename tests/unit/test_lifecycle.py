"""The lifecycle plan (pure): numbering, the status entry every status change gets, notifications."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.domain.backends.local import LOCAL
from shared.domain.job import Job, LogLine
from shared.domain.lifecycle import Change, TimelineEvent, as_change, plan
from shared.domain.status import JobStatus

T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


def job(**kw) -> Job:
    base = dict(id="j1", name="n", backend=LOCAL, status=JobStatus.QUEUED, created_at=T0, updated_at=T0, dataset_file="/d", output_dir="/o")
    base.update(kw)
    return Job(**base)


def test_a_new_job_is_queued_in_its_timeline_and_announced() -> None:
    p = plan(None, Change(job(), source="api"))
    assert p.job is not None and p.job.event_count == 1
    (entry,) = p.timeline
    assert (entry.seq, entry.kind, entry.data) == (1, "status", {"from": None, "to": "queued", "reason": None, "source": "api"})
    (note,) = p.notifications
    assert note.id == "j1.1" and note.status == "queued" and note.previous is None
    assert note.body["type"] == "job.queued" and note.body["data"]["previousStatus"] is None
    assert note.body["data"]["job"]["id"] == "j1" and "logTail" not in note.body["data"]["job"]
    assert note.body["timestamp"] == "2026-12-01T10:00:00.000Z"


def test_every_status_change_gets_an_entry_with_its_source() -> None:
    current = job(event_count=1, version=3)
    later = T0 + timedelta(seconds=5)
    p = plan(current, Change(current.replace(status=JobStatus.SUBMITTING, updated_at=later), source="launcher"))
    assert [e.seq for e in p.timeline] == [2] and p.timeline[0].data == {"from": "queued", "to": "submitting", "reason": None, "source": "launcher"}
    assert p.timeline[0].at == later and p.job.event_count == 2
    assert [n.id for n in p.notifications] == ["j1.2"] and p.notifications[0].body["data"]["previousStatus"] == "queued"


def test_a_change_that_describes_its_own_status_entry_is_not_doubled() -> None:
    current = job(status=JobStatus.SUBMITTED, event_count=4)
    own = TimelineEvent(at=T0, kind="status", data={"from": "submitted", "to": "running", "reason": None, "source": "local", "state": "running"})
    p = plan(current, Change(current.replace(status=JobStatus.RUNNING), timeline=(own,)))
    assert len(p.timeline) == 1 and p.timeline[0].data["state"] == "running" and p.timeline[0].seq == 5
    assert [n.status for n in p.notifications] == ["running"]


def test_lines_are_numbered_once_here() -> None:
    current = job(log_count=10, log_tail="old\n")
    lines = tuple(LogLine(T0, "stdout", f"l{i}") for i in range(3))
    p = plan(current, Change(None, lines), max_tail_chars=100)
    assert [l.seq for l in p.lines] == [11, 12, 13] and p.job.log_count == 13 and p.job.log_tail == "old\nl0\nl1\nl2\n"
    assert p.notifications == () and p.timeline == ()


@pytest.mark.parametrize("decision", [None, (None, ()), (None, (), ())])
def test_nothing_to_write(decision) -> None:
    assert plan(job(), as_change(decision)).job is None


def test_the_same_job_is_nothing_to_write() -> None:
    current = job()
    assert plan(current, as_change(current)).job is None
