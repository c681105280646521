"""The studio's status callbacks (issue 17, item 3) over a real store (SQLite and the Firestore
emulator), the real SSRF-guarded sender and a receiver that applies the studio's acceptance rules over
real HTTP (`tests/fakes/studio_receiver.py`). Jobs are driven through their lifecycle one commit at a
time with an injected change time, and the notifier delivers after each commit, as it does in service.

What the studio must see: `queued`, `running`, progress `running`s at most once a minute with text,
the final status with its reason or output; each answered 200 with the job's own token, sent verbatim.
Retries on 5xx in order; a wrong token's 403 recorded and passed (4xx is not retried); never a stale
`running` after the end; the Authorization never in plain text in the store or a delivery record."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from shared.adapters.webhook_sender import WebhookSender
from shared.domain.backends.local import LOCAL
from shared.domain.callback import Callback
from shared.domain.events import EventLog, TrainingEvent
from shared.domain.job import Job
from shared.domain.lifecycle import Change
from shared.domain.status import JobStatus
from shared.domain.webhooks import Schedule
from shared.messages import Message
from shared.sealing import Sealer
from shared.usecases.notify import Notifier
from shared.usecases.status_sync import StatusSync
from tests.fakes.policy import BUILT_IN_RULES
from tests.fakes.studio_receiver import StudioReceiver
from tests.fakes.webhook_receiver import Receiver

T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
KEY = b"test-signing-key-0123456789"
SECRET = "whsec_" + base64.b64encode(KEY).decode()
TOKEN = "1f745be8e2f285f8e8c0435486e6beafe27b73693c0b03cab23bcdc5500887e8"
STUDIO_ID = "6a248301-0606-494f-8f45-c195e36937fb"
OUTPUT = "s3://studio-models/lora-refinement-1796113031796"


@pytest.fixture
def studio():
    r = StudioReceiver().start()
    yield r
    r.stop()


class Run:
    """One job driven commit by commit; `pump` hands each new notification to the notifier, as the
    outbox relay and `job-transitions` do in service."""

    def __init__(
        self,
        store,
        studio: StudioReceiver,
        *,
        authorization: str | None = f"Bearer {TOKEN}",
        sealer: Sealer | None = None,
        webhooks: tuple[str, ...] = (),
        schedule: str = "0,0,0,0",
        deliver: bool = True,
    ):
        self.store, self.deliver, self.seen, self.t = store, deliver, 0, T0
        sealer = sealer or Sealer(KEY)
        url = studio.add_job(STUDIO_ID, TOKEN) + "?via=platform"  # a query string is never shown
        callback = Callback(url, sealer.seal(authorization) if authorization is not None else None)
        job = Job(
            id=f"job-{STUDIO_ID[:8]}",
            name="studio-run",
            backend=LOCAL,
            status=JobStatus.QUEUED,
            created_at=T0,
            updated_at=T0,
            dataset_file="s3://studio-data/chat.jsonl",
            output_dir="/tmp/out",
            upload_output_to=OUTPUT,
            callback=callback,
            webhooks=webhooks,
        )
        self.id = job.id
        self.notifier = Notifier(
            store=store,
            sender=WebhookSender(allowed_hosts=frozenset({"127.0.0.1"}), timeout_seconds=5.0),
            signing_key=KEY,
            schedule=Schedule.parse(schedule),
            unseal=Sealer(KEY).unseal,
            hold_seconds=0.0,
        )
        store.create(job)
        self.pump()

    def pump(self) -> None:
        if not self.deliver:
            return
        for n in self.store.get_notifications(self.id, after=self.seen, limit=100):
            self.notifier.handle(
                Message(id=n.id, topic="job-transitions", data={"job_id": n.job_id, "seq": n.seq, "id": n.id}, attributes={}, ordering_key=n.job_id)
            )
            self.seen = n.seq

    def to(self, status: JobStatus, at: float, **changes) -> None:
        self.commit(at, status=status, **changes)

    def progress(self, at: float, step: int, **extra) -> None:
        self.commit(at, progress={"event": "step", "step": step, "total_steps": 900, **extra})

    def commit(self, at: float, **changes) -> None:
        when = T0 + timedelta(seconds=at)
        self.store.update(self.id, lambda j: Change(j.replace(updated_at=when, **changes), source="test"))
        self.pump()

    def close(self) -> None:
        self.notifier.close()


def to_running(run: Run) -> None:
    run.to(JobStatus.SUBMITTING, 1)
    run.to(JobStatus.SUBMITTED, 2)
    run.to(JobStatus.RUNNING, 3, started_at=T0 + timedelta(seconds=3))


FINALS = {
    "succeeded": ([(JobStatus.SUCCEEDED, {})], f"output: {OUTPUT}"),
    "failed": (
        [(JobStatus.FAILED, {"status_reason": "OOMKilled", "error": "the container used more than its 64Gi"})],
        "failed: OOMKilled: the container used more than its 64Gi",
    ),
    "cancelled": (
        [(JobStatus.CANCELLING, {"cancel_requested": True}), (JobStatus.CANCELLED, {"status_reason": "CancelledByUser"})],
        "cancelled: CancelledByUser",
    ),
}


def stored_text(store, tmp_path: Path) -> str:
    """Everything the store holds, as text: the SQLite files' bytes, or every Firestore document under
    the store's prefix (jobs and their subcollections, channels, outbox)."""
    if hasattr(store, "client"):
        docs = []

        def walk(collection) -> None:
            for snap in collection.stream():
                docs.append(json.dumps(snap.to_dict(), default=str))
                for sub in snap.reference.collections():
                    walk(sub)

        for name in ("jobs", "channels", "outbox", "idempotency"):
            walk(getattr(store, name))
        return "\n".join(docs)
    store.close()
    return "\n".join(p.read_bytes().decode("latin-1") for p in tmp_path.glob("jobs.db*"))


@pytest.mark.parametrize("final", list(FINALS))
def test_the_studio_sees_queued_running_progress_and_the_end(store, studio, tmp_path: Path, final: str) -> None:
    hook = Receiver(SECRET)  # a Standard Webhooks subscriber beside the studio: transitions only, no progress
    run = Run(store, studio, webhooks=(hook.url,))
    try:
        to_running(run)
        # Several progress events within a minute give one callback; a minute after it, another.
        run.progress(10, 10, loss=2.345, eta_seconds=890)
        run.progress(30, 30, loss=1.9)
        run.progress(69, 69, loss=1.5)
        run.progress(70, 70, loss=1.25, eta_seconds=13 * 60 + 5)
        run.progress(100, 100, loss=1.1)
        steps, log = FINALS[final]
        for i, (status, changes) in enumerate(steps):
            run.to(status, 120 + i, finished_at=T0 + timedelta(seconds=121) if status.is_terminal() else None, **changes)
        assert studio.answers(STUDIO_ID) == [(200, body) for body in studio.accepted(STUDIO_ID)]  # every one accepted
        assert studio.accepted(STUDIO_ID) == [
            {"status": "queued", "log": "queued"},
            {"status": "running", "log": "running"},
            {"status": "running", "log": "step 10/900 · loss 2.35 · 15 min left"},
            {"status": "running", "log": "step 70/900 · loss 1.25 · 14 min left"},
            {"status": final, "log": log},
        ]
        job = studio.jobs[STUDIO_ID]
        assert job.status == final and [h["status"] for h in job.history] == ["queued", "running", "running", "running", final]
        sent = studio.calls("POST")
        assert {r.headers["authorization"] for r in sent} == {f"Bearer {TOKEN}"}  # verbatim
        assert {r.headers["content-type"] for r in sent} == {"application/json"}
        # The webhook subscriber got each transition once, signed, and none of the progress.
        statuses = ["queued", "submitting", "submitted", "running", *[s.value for s, _ in steps]]
        assert [g.status for g in hook.accepted()] == statuses and all(g.valid for g in hook.got)

        attempts = store.list_attempts(run.id, limit=100)
        studio_attempts = [a for a in attempts if a["url"].startswith(studio.callback_url(STUDIO_ID))]
        assert [a["verdict"] for a in studio_attempts] == ["delivered"] * 5 and all("?" not in a["url"] for a in attempts)
        channels = {c.kind: c for c in store.list_channels(run.id)}
        assert channels["studio"].cursor == channels["webhook"].cursor == store.get(run.id).event_count  # both went through the lot
        assert store.get(run.id).callback.sealed_authorization.startswith("v1.")
        everything = stored_text(store, tmp_path)
        assert run.id in everything and TOKEN not in everything and TOKEN[:16] not in everything
    finally:
        run.close()
        hook.close()


class Clock:
    def __init__(self, t: datetime) -> None:
        self.t = t

    def now(self) -> datetime:
        return self.t


def test_progress_lines_through_status_sync_reach_the_studio_once_a_minute(store, studio) -> None:
    """The trainer's `PROGRESS` lines, as the local supervisor forwards them, applied by status sync on
    its (injected) clock: three within a minute give one callback, the next a minute later another."""
    run = Run(store, studio)
    clock = Clock(T0)
    sync = StatusSync(store=store, max_log_chars=10_000, rules=BUILT_IN_RULES, clock=clock)
    try:
        to_running(run)
        for i, (at, step) in enumerate([(10, 1), (25, 2), (50, 3), (75, 4), (80, 5)]):
            clock.t = T0 + timedelta(seconds=at)
            line = 'PROGRESS {"event": "step", "step": ' + str(step) + ', "total_steps": 50, "loss": 0.5, "eta_seconds": 600}'
            sync.apply_event(TrainingEvent(job_id=run.id, source="local", observed_at=clock.t, logs=(EventLog(i + 1, clock.t, "stdout", line),)))
            run.pump()
        assert [b["log"] for b in studio.accepted(STUDIO_ID)] == [
            "queued",
            "running",
            "step 1/50 · loss 0.5 · 10 min left",
            "step 4/50 · loss 0.5 · 10 min left",
        ]
        assert store.get(run.id).progress["step"] == 5  # every line was applied; only the callbacks are spaced
    finally:
        run.close()


def test_never_a_stale_running_after_the_end(store, studio) -> None:
    """The studio was unreachable while the job ran (nothing delivered); when the notifier catches up,
    the progress notifications are behind a newer status: skipped, and the end comes last."""
    run = Run(store, studio, deliver=False)
    try:
        to_running(run)
        run.progress(10, 10)
        run.progress(80, 80)
        run.to(JobStatus.SUCCEEDED, 90)
        run.deliver = True
        run.pump()
        assert [b["status"] for b in studio.accepted(STUDIO_ID)] == ["queued", "running", "succeeded"]
        # They were planned and published; only their delivery to the studio is skipped.
        assert [e.kind for e in store.list_events(run.id)].count("progress") == 2
    finally:
        run.close()


def test_a_studio_that_500s_then_recovers_gets_retries_in_order(store, studio) -> None:
    studio.inject("POST", status=500, times=2)
    run = Run(store, studio)
    try:
        to_running(run)
        assert [s for s, _ in studio.answers(STUDIO_ID)] == [500, 500, 200, 200]
        assert [b["status"] for b in studio.accepted(STUDIO_ID)] == ["queued", "running"]
        first = [(a["attempt"], a["statusCode"], a["verdict"]) for a in store.list_attempts(run.id) if a["notificationSeq"] == 1]
        assert first == [(1, 500, "retry"), (2, 500, "retry"), (3, 200, "delivered")]
    finally:
        run.close()


@pytest.mark.parametrize("authorization,code", [("Bearer not-the-token", 403), (None, 401), (TOKEN, 200)])
def test_the_studios_answer_to_the_token_is_recorded_and_4xx_not_retried(store, studio, authorization, code) -> None:
    run = Run(store, studio, authorization=authorization)
    try:
        to_running(run)
        run.to(JobStatus.SUCCEEDED, 10)
        assert [s for s, _ in studio.answers(STUDIO_ID)] == [code, code, code]  # queued, running, succeeded: once each
        verdict = "delivered" if code == 200 else "failed"
        got = [(a["notificationSeq"], a["attempt"], a["statusCode"], a["verdict"]) for a in store.list_attempts(run.id)]
        assert got == [(1, 1, code, verdict), (4, 1, code, verdict), (5, 1, code, verdict)]
        assert all(TOKEN not in json.dumps(a) for a in store.list_attempts(run.id))
    finally:
        run.close()


def test_an_authorization_that_wont_unseal_is_recorded_and_nothing_is_sent(store, studio) -> None:
    run = Run(store, studio, sealer=Sealer(b"a key from before a rotation"))
    try:
        run.to(JobStatus.CANCELLED, 1)
        assert studio.answers(STUDIO_ID) == []
        (a, b) = store.list_attempts(run.id)
        assert a["verdict"] == b["verdict"] == "failed" and a["statusCode"] is None and "not sent" in a["error"]
    finally:
        run.close()


def test_the_receiver_applies_the_studios_rules_in_its_order(studio) -> None:
    import httpx

    studio.add_job("s1", "job-token")
    url = studio.callback_url("s1")
    cases = [
        ("no token, unknown job", studio.callback_url("nope"), {}, {"status": "queued"}, 401),
        ("unknown job", studio.callback_url("nope"), {"Authorization": "Bearer job-token"}, {"status": "queued"}, 404),
        ("wrong token, bad body", url, {"Authorization": "Bearer x"}, {"status": "done"}, 403),
        ("bad status", url, {"Authorization": "Bearer job-token"}, {"status": "submitted"}, 400),
        ("log not a string", url, {"Authorization": "job-token"}, {"status": "running", "log": 3}, 400),
        ("job token without Bearer", url, {"Authorization": "job-token"}, {"status": "running", "log": "a", "extra": 1}, 200),
        ("cluster token header", url, {"X-Cluster-Token": "cluster-token"}, {"status": "failed"}, 200),
    ]
    for name, target, headers, body, code in cases:
        r = httpx.post(target, json=body, headers=headers)
        assert r.status_code == code, name
    assert studio.jobs["s1"].log == "a\n" and [h["status"] for h in studio.jobs["s1"].history] == ["running", "failed"]
    assert [s for s, _ in studio.answers()] == [c[-1] for c in cases]
