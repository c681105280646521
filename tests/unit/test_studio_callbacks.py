"""The studio's status callbacks, pure parts (issue 17, item 3): the status map and what is skipped, the
`log` text (failure, output, progress), the progress notifications `lifecycle.plan` makes for a job with
a callback (at most one a minute by the change's time; none for a job without), the stored shape of the
callback, and sealing of its Authorization."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.adapters.records import from_record, to_record
from shared.domain.backends.local import LOCAL
from shared.domain.callback import Callback
from shared.domain.job import Job
from shared.domain.lifecycle import PROGRESS, STATUS, Change, Notification, plan
from shared.domain.status import JobStatus
from shared.domain.studio_callbacks import STUDIO_STATUS, callback_body, progress_text, studio_status
from shared.sealing import PREFIX, Sealer, SealError

T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
KEY = b"k" * 24
AUTH = "Bearer 1f745be8e2f285f8e8c0435486e6beafe27b73693c0b03cab23bcdc5500887e8"


def job(status: JobStatus = JobStatus.RUNNING, callback: bool = True, **kw) -> Job:
    cb = Callback("https://studio.example/api/training/webhooks/s1", Sealer(KEY).seal(AUTH)) if callback else None
    return Job(id="job-1", name="n", backend=LOCAL, status=status, created_at=T0, updated_at=T0, dataset_file="/d", output_dir="/o", callback=cb, **kw)


def note(status: str, previous: str | None, summary: dict | None = None, kind: str = STATUS, at: datetime = T0) -> Notification:
    return Notification(
        id="job-1.1",
        job_id="job-1",
        seq=1,
        status=status,
        previous=previous,
        at=at,
        body={"type": f"job.{status}", "data": {"job": summary or {}, "previousStatus": previous}},
        kind=kind,
    )


# ---- the status map and what is skipped -----------------------------------------------------------
@pytest.mark.parametrize(
    "ours,theirs",
    [
        ("queued", "queued"),
        ("submitting", "queued"),
        ("submitted", "queued"),
        ("running", "running"),
        ("cancelling", "running"),
        ("succeeded", "succeeded"),
        ("failed", "failed"),
        ("cancelled", "cancelled"),
    ],
)
def test_status_map(ours: str, theirs: str) -> None:
    assert studio_status(ours) == theirs
    assert {s.value for s in STUDIO_STATUS} == {s.value for s in JobStatus}  # every status of ours is mapped


@pytest.mark.parametrize(
    "name,status,previous,sent",
    [
        ("first", "queued", None, "queued"),
        ("submitting after queued", "submitting", "queued", None),
        ("submitted after submitting", "submitted", "submitting", None),
        ("running after submitted", "running", "submitted", "running"),
        ("cancelling after running", "cancelling", "running", None),
        ("cancelled after cancelling", "cancelled", "cancelling", "cancelled"),
        ("cancelled straight from queued", "cancelled", "queued", "cancelled"),
        ("failed at submit", "failed", "submitting", "failed"),
        ("cancelling before it ran", "cancelling", "submitted", "running"),
    ],
)
def test_a_callback_goes_out_when_the_mapped_status_changes(name: str, status: str, previous: str | None, sent: str | None) -> None:
    body = callback_body(note(status, previous), superseded=False)
    assert (body and body["status"]) == sent, name


def test_the_final_log_carries_the_reason_and_error_or_the_output() -> None:
    failed = callback_body(note("failed", "running", {"statusReason": "OOMKilled", "error": "container used 80Gi of 64Gi"}), superseded=False)
    assert failed == {"status": "failed", "log": "failed: OOMKilled: container used 80Gi of 64Gi"}
    assert callback_body(note("failed", "running", {"statusReason": "Error", "error": "Error"}), superseded=False)["log"] == "failed: Error"
    up = callback_body(note("succeeded", "running", {"uploadOutputTo": "s3://models/run-1", "outputDir": "/tmp/out"}), superseded=False)
    assert up == {"status": "succeeded", "log": "output: s3://models/run-1"}
    assert callback_body(note("succeeded", "running", {"uploadOutputTo": None, "outputDir": "/tmp/out"}), superseded=False)["log"] == "output: /tmp/out"
    assert callback_body(note("cancelled", "cancelling", {"statusReason": "CancelledByUser"}), superseded=False)["log"] == "cancelled: CancelledByUser"


# ---- progress ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name,progress,text",
    [
        ("everything", {"step": 120, "total_steps": 900, "loss": 1.2345, "eta_seconds": 13 * 60 + 10}, "step 120/900 · loss 1.23 · 14 min left"),
        ("no total, no eta", {"step": 7, "loss": 0.5}, "step 7 · loss 0.5"),
        ("no loss", {"step": 10, "total_steps": 20, "eta_seconds": 30}, "step 10/20 · 1 min left"),
        ("eta from the pace", {"step": 100, "total_steps": 400}, "step 100/400 · 30 min left"),  # 10 min for 100 steps
        ("nothing known", {"event": "started"}, ""),
        ("non-finite loss", {"step": 3, "loss": float("nan")}, "step 3"),
    ],
)
def test_progress_text(name: str, progress: dict, text: str) -> None:
    assert progress_text(progress, T0, T0 + timedelta(minutes=10)) == text, name


def test_a_progress_notification_is_running_with_text_unless_superseded() -> None:
    n = note(
        "running",
        "running",
        {"progress": {"step": 5, "total_steps": 10, "loss": 2.0}, "startedAt": "2026-12-01T10:00:00.000Z"},
        kind=PROGRESS,
        at=T0 + timedelta(minutes=5),
    )
    assert callback_body(n, superseded=False) == {"status": "running", "log": "step 5/10 · loss 2 · 5 min left"}
    assert callback_body(n, superseded=True) is None  # a later notification exists: never a stale running


def changes(start: Job, *offsets_and_steps: tuple[float, int]) -> list:
    """Progress events at T0 + offset seconds, each committed over the job as the last plan left it."""
    current, plans = start, []
    for offset, step in offsets_and_steps:
        p = plan(current, Change(current.replace(progress={"step": step, "total_steps": 900}, updated_at=T0 + timedelta(seconds=offset))))
        plans.append(p)
        current = p.job or current
    return plans


def test_plan_makes_at_most_one_progress_notification_a_minute_for_a_job_with_a_callback() -> None:
    plans = changes(job(), (0, 1), (20, 2), (59, 3), (60, 4), (90, 5), (125, 6))
    sent = [[(n.kind, n.status, n.previous) for n in p.notifications] for p in plans]
    assert sent == [[(PROGRESS, "running", "running")], [], [], [(PROGRESS, "running", "running")], [], [(PROGRESS, "running", "running")]]
    entries = [e for p in plans for e in p.timeline]
    assert [(e.kind, e.data["step"], e.seq) for e in entries] == [(PROGRESS, 1, 1), (PROGRESS, 4, 2), (PROGRESS, 6, 3)]
    assert plans[-1].job.progress_notified_at == T0 + timedelta(seconds=125)
    assert plans[-1].notifications[0].body["data"]["job"]["progress"]["step"] == 6


def test_progress_without_a_training_step_is_not_announced_and_keeps_the_minute_free() -> None:
    """The trainer's start and dataset reports come before any step: announcing them would show the
    studio nothing and hold back the first step's progress for a minute."""
    current = job()
    for offset, progress in ((0, {"event": "start"}), (1, {"event": "dataset", "rows": 24}), (2, {"event": "x", "step": True})):
        p = plan(current, Change(current.replace(progress=progress, updated_at=T0 + timedelta(seconds=offset))))
        assert p.notifications == () and p.timeline == ()
        current = p.job or current
    first_step = plan(current, Change(current.replace(progress={"step": 1, "total_steps": 9}, updated_at=T0 + timedelta(seconds=3))))
    assert [n.kind for n in first_step.notifications] == [PROGRESS]


def test_plan_is_unchanged_for_a_job_without_a_callback_and_outside_running() -> None:
    for p in changes(job(callback=False), (0, 1), (60, 2), (120, 3)):
        assert p.timeline == () and p.notifications == () and p.job.progress_notified_at is None
    for status in (JobStatus.SUBMITTED, JobStatus.CANCELLING):
        assert all(p.notifications == () for p in changes(job(status), (0, 1), (61, 2)))
    # The same progress again is no news; a status change announces itself (one status entry, no progress one).
    running = job(progress={"step": 1, "total_steps": 900})
    assert plan(running, Change(running.replace(updated_at=T0 + timedelta(minutes=5), status_reason="x"))).notifications == ()
    done = plan(running, Change(running.replace(status=JobStatus.SUCCEEDED, progress={"step": 900}, updated_at=T0 + timedelta(minutes=5))))
    assert [(n.kind, n.status) for n in done.notifications] == [(STATUS, "succeeded")]


def test_notification_kind_survives_its_stored_shape() -> None:
    n = note("running", "running", kind=PROGRESS)
    assert Notification.from_doc(n.to_doc()) == n
    old = {k: v for k, v in note("queued", None).to_doc().items() if k != "kind"}  # stored before kinds existed
    assert Notification.from_doc(old).kind == STATUS


# ---- the stored callback and sealing ----------------------------------------------------------------
def test_the_job_stores_its_callback_sealed_and_reads_it_back() -> None:
    j = job(progress_notified_at=T0 + timedelta(seconds=61))
    rec = to_record(j)
    assert AUTH not in repr(rec) and "1f745be8" not in repr(rec)
    back = from_record(rec)
    assert back.callback == j.callback and back.progress_notified_at == j.progress_notified_at
    assert Sealer(KEY).unseal(back.callback.sealed_authorization) == AUTH
    assert from_record(to_record(job(callback=False))).callback is None
    summary = repr(j.to_summary())
    assert AUTH not in summary and j.callback.sealed_authorization not in summary


def test_sealing_round_trips_and_refuses_what_it_did_not_seal() -> None:
    s = Sealer(KEY)
    a, b = s.seal(AUTH), s.seal(AUTH)
    assert a.startswith(PREFIX) and a != b  # a fresh nonce each time
    assert "1f745be8" not in a and s.unseal(a) == s.unseal(b) == AUTH
    with pytest.raises(SealError):
        Sealer(b"another key, rotated").unseal(a)
    tampered = a[:-2] + ("A" if a[-2] != "A" else "B") + a[-1]
    for bad in (tampered, "v2." + a[3:], "plain text", PREFIX + "!!!", PREFIX + "AAAA"):
        with pytest.raises(SealError):
            s.unseal(bad)
