"""The outbox and the delivery channels in both stores (SQLite, the Firestore emulator): a status change and
its notification are one commit; unpublished ones are listed until marked; channels compare-and-set."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from shared.adapters.sqlite_store import SqliteJobStore
from shared.domain.delivery import Attempt, Subscriber, idle, new_channel
from shared.domain.lifecycle import Change
from shared.domain.status import JobStatus
from tests.fakes.jobs import T0, make_job


def test_each_transition_is_one_notification_in_the_outbox(store) -> None:
    store.create(make_job(1))
    store.update("job-00001", lambda j: Change(j.replace(status=JobStatus.SUBMITTING, updated_at=T0 + timedelta(seconds=1)), source="launcher"))
    store.update("job-00001", lambda j: j.replace(status=JobStatus.SUBMITTED, status_reason="DryRun", updated_at=T0 + timedelta(seconds=2)))
    store.update("job-00001", lambda j: j.replace(labels={"x": "y"}))  # no status change: no notification
    notes = store.get_notifications("job-00001")
    assert [(n.seq, n.previous, n.status) for n in notes] == [(1, None, "queued"), (2, "queued", "submitting"), (3, "submitting", "submitted")]
    assert [n.id for n in notes] == ["job-00001.1", "job-00001.2", "job-00001.3"]
    assert notes[2].body["data"]["job"]["statusReason"] == "DryRun"
    events = store.list_events("job-00001")
    assert [(e.data["from"], e.data["to"], e.data["source"]) for e in events] == [
        (None, "queued", "api"),
        ("queued", "submitting", "launcher"),
        ("submitting", "submitted", "platform"),
    ]
    assert [n.id for n in store.unpublished()] == [n.id for n in notes]
    store.mark_published(notes[:2])
    assert [n.id for n in store.unpublished()] == ["job-00001.3"]
    store.mark_published(notes[2:])
    assert store.unpublished() == []
    assert [n.seq for n in store.get_notifications("job-00001", after=1, limit=1)] == [2]


def test_channels_compare_and_set_and_come_due(store) -> None:
    store.create(make_job(2))
    sub = Subscriber("webhook", "https://hooks.example.com/a")
    ch = store.save_channel(new_channel("job-00002", sub, T0))
    assert ch is not None and ch.version == 1
    assert store.save_channel(new_channel("job-00002", sub, T0)) is None  # it exists: create loses
    assert [c.key for c in store.due_channels(T0)] == [sub.key]
    assert store.due_channels(T0 - timedelta(seconds=1)) == []
    moved = store.save_channel(idle(ch))
    assert moved is not None and moved.version == 2
    assert store.save_channel(idle(ch)) is None  # a stale version loses
    assert store.due_channels(T0 + timedelta(days=1)) == []  # idle: never due
    assert store.get_channel("job-00002", sub.key) == moved and store.list_channels("job-00002") == [moved]
    a = Attempt("job-00002", "job-00002.1", 1, sub.key, sub.url, 1, T0, "retry", 503, 12.3, "HTTP 503")
    b = Attempt("job-00002", "job-00002.1", 1, sub.key, sub.url, 2, T0, "delivered", 200, 4.0, None)
    store.record_attempt(b)
    store.record_attempt(a)
    store.record_attempt(a)  # a retried write of the same attempt is one record
    assert [d["attempt"] for d in store.list_attempts("job-00002")] == [1, 2]
    assert [d["attempt"] for d in store.list_attempts("job-00002", after=a.id)] == [2]


def test_sqlite_wakes_its_relay_after_a_commit_that_stored_notifications(tmp_path: Path) -> None:
    calls: list[int] = []
    store = SqliteJobStore(tmp_path / "jobs.db", on_notifications=lambda: calls.append(1))
    store.create(make_job(3))
    assert calls == [1]  # job.queued
    store.update("job-00003", lambda j: j.replace(labels={"a": "b"}))
    assert calls == [1]  # no transition: nothing to announce
    store.update("job-00003", lambda j: j.replace(status=JobStatus.SUBMITTING))
    assert calls == [1, 1]
    store.close()
