"""Signed webhooks on every transition (issue 14), on the embedded default with real HTTP both ways: the
api and the local backend in process, a receiver that verifies each signature with the specification's
algorithm. Order per job and subscriber under shuffled, duplicated and failing deliveries; retries with
the same webhook-id; 410 stops, other 4xx is recorded and passed; the SSRF guard at delivery; a slow
subscriber delays nobody else; what a crash left in the outbox is delivered after a restart."""

from __future__ import annotations

import base64
import random
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

from functions.dev.embedded import build_embedded, stop
from shared.adapters.sqlite_store import SqliteJobStore
from shared.adapters.webhook_sender import WebhookSender
from shared.domain.backends.local import LOCAL
from shared.domain.job import Job
from shared.domain.lifecycle import Change
from shared.domain.status import JobStatus
from shared.domain.webhooks import Schedule
from shared.messages import Message
from shared.settings import Settings
from shared.usecases.notify import Notifier, OutboxRelay
from tests.fakes.polling import eventually
from tests.fakes.webhook_receiver import Receiver
from tests.integration.conftest import wsgi

REPO = Path(__file__).resolve().parents[2]
SECRET = "whsec_" + base64.b64encode(b"test-signing-key-0123456789").decode()
LIFECYCLE = ["queued", "submitting", "submitted", "running", "succeeded"]


@pytest.fixture
def receivers():
    made: list[Receiver] = []

    def make(**kw) -> Receiver:
        r = Receiver(SECRET, **kw)
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()


def embedded(tmp_path: Path, serve, **env: str):
    settings = Settings(
        **{
            "SQLITE_PATH": str(tmp_path / "jobs.db"),
            "DEFAULT_TRAINING_BACKEND": "local",
            "LOCAL_ALLOWED_ROOTS": f"{tmp_path}:/tmp",
            "RECONCILE_INTERVAL_SECONDS": "0",
            "LAUNCH_RETRY_BASE_SECONDS": "0.05",
            "TRAIN_SCRIPT_PATH": str(REPO / "tests/fakes/fake_trainer.py"),
            "WEBHOOK_SIGNING_SECRET": SECRET,
            "WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
            "WEBHOOK_RETRY_SCHEDULE": "0,0.05,0.1,0.2,0.4,0.8",
            **env,
        }
    )
    c = build_embedded(settings)
    return c, serve(wsgi(c)).url


def local_job(tmp_path: Path, **extra) -> dict:
    (tmp_path / "d.jsonl").write_text("{}\n")
    return {"backend": "local", "dataset_file": str(tmp_path / "d.jsonl"), "output_dir": str(tmp_path / "out"), **extra}


def test_a_local_job_announces_its_five_transitions_signed_and_in_order(tmp_path: Path, serve, receivers) -> None:
    flaky = receivers(answer=lambda msg_id, attempt: 503 if attempt == 1 else 200)  # every first attempt fails
    own = receivers()
    c, url = embedded(tmp_path, serve, WEBHOOK_URLS=flaky.url)
    try:
        r = requests.post(f"{url}/train", json=local_job(tmp_path, webhooks=[own.url]))
        assert r.status_code == 202, r.text
        job_id = r.json()["job"]["id"]
        assert r.json()["job"]["webhooks"] == [own.url]
        for rec in (flaky, own):
            got = eventually(lambda rec=rec: len(rec.accepted(job_id)) >= 5 and rec.accepted(job_id), what="five deliveries")
            assert [g.status for g in got] == LIFECYCLE
            assert all(g.valid for g in rec.got)
            assert [g.body["data"]["previousStatus"] for g in got] == [None, *LIFECYCLE[:-1]]
            assert got[-1].body["data"]["job"]["status"] == "succeeded" and "logTail" not in got[-1].body["data"]["job"]
        # Retries carry the message's own id: each id was refused once, then accepted once.
        ids = [g.msg_id for g in flaky.got]
        assert sorted(ids) == sorted(2 * [g.msg_id for g in flaky.accepted(job_id)])
        events = requests.get(f"{url}/jobs/{job_id}/events").json()["events"]
        status = [e["data"] for e in events if e["kind"] == "status"]
        assert [(s["from"], s["to"]) for s in status] == list(zip([None, *LIFECYCLE[:-1]], LIFECYCLE))
        assert [s["source"] for s in status][:3] == ["api", "launcher", "launcher"] and all(s["source"] for s in status)
        d = requests.get(f"{url}/jobs/{job_id}/deliveries").json()
        by_sub = {s["url"]: s for s in d["subscribers"]}
        last = max(e["seq"] for e in events if e["kind"] == "status")
        assert by_sub[flaky.url]["deliveredThrough"] == by_sub[own.url]["deliveredThrough"] == last
        flaky_attempts = [a for a in d["deliveries"] if a["url"] == flaky.url]
        assert [(a["attempt"], a["statusCode"], a["verdict"]) for a in flaky_attempts[:2]] == [(1, 503, "retry"), (2, 200, "delivered")]
        assert all(a["durationMs"] >= 0 for a in d["deliveries"]) and len(flaky_attempts) == 10
    finally:
        stop(c)


def test_webhooks_in_a_request_are_checked(tmp_path: Path, serve, receivers) -> None:
    c, url = embedded(tmp_path, serve)
    try:
        for hooks, field in [
            ([f"https://hooks.example.com/{i}" for i in range(6)], "webhooks"),
            (["http://hooks.example.com/x"], "webhooks[0]"),  # plain http, host not allowed
            (["https://93.184.216.34/ok", "https://169.254.169.254/latest/meta-data"], "webhooks[1]"),
            (["https://10.1.2.3/x"], "webhooks[0]"),
            (["not a url"], "webhooks[0]"),
        ]:
            r = requests.post(f"{url}/train", json=local_job(tmp_path, webhooks=hooks))
            assert r.status_code == 400, (hooks, r.text)
            assert field in [e["field"] for e in r.json()["errors"]], r.json()
    finally:
        stop(c)
    c, url = embedded(tmp_path / "nosecret", serve, WEBHOOK_SIGNING_SECRET="")
    try:
        r = requests.post(f"{url}/train", json=local_job(tmp_path, webhooks=["https://93.184.216.34/x"]))
        assert r.status_code == 400 and r.json()["errors"][0]["field"] == "webhooks" and "WEBHOOK_SIGNING_SECRET" in r.json()["errors"][0]["message"]
    finally:
        stop(c)


# ---- the notifier over a real store, a real sender and real receivers --------------------------------
T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.t = T0

    def now(self) -> datetime:
        return self.t


def make_job(i: int, hooks: tuple[str, ...]) -> Job:
    return Job(
        id=f"job-{i:04d}",
        name="n",
        backend=LOCAL,
        status=JobStatus.QUEUED,
        created_at=T0,
        updated_at=T0,
        dataset_file="/d",
        output_dir="/o",
        webhooks=hooks,
    )


def advance(store, job_id: str, clock: Clock) -> None:
    """queued -> submitting -> submitted -> running -> succeeded, each its own commit."""
    for status in (JobStatus.SUBMITTING, JobStatus.SUBMITTED, JobStatus.RUNNING, JobStatus.SUCCEEDED):
        clock.t += timedelta(milliseconds=1)
        store.update(job_id, lambda j, s=status: Change(j.replace(status=s, updated_at=clock.t), source="test"))


def notifier(store, clock, schedule="0,0,0,0,0,0", **kw) -> Notifier:
    sender = WebhookSender(allowed_hosts=frozenset({"127.0.0.1"}), timeout_seconds=kw.pop("timeout", 5.0), **kw.pop("sender_kw", {}))
    # The notifier runs on the wall clock: the receiver checks webhook-timestamp against its own.
    return Notifier(store=store, sender=sender, signing_key=base64.b64decode(SECRET[6:]), schedule=Schedule.parse(schedule), **kw)


def transitions_of(store, job_ids) -> list[Message]:
    msgs = []
    for job_id in job_ids:
        for n in store.get_notifications(job_id, limit=100):
            msgs.append(Message(id=n.id, topic="job-transitions", data={"job_id": job_id, "seq": n.seq, "id": n.id}, attributes={}, ordering_key=job_id))
    return msgs


def test_order_per_job_and_subscriber_under_shuffled_duplicated_and_failing_deliveries(tmp_path: Path, receivers) -> None:
    rng = random.Random(7)
    first_fail = set()

    def answer(msg_id: str, attempt: int) -> int:
        if attempt == 1 and rng.random() < 0.1:
            first_fail.add(msg_id)
            return 500
        return 200

    a, b = receivers(answer=answer), receivers()
    store, clock = SqliteJobStore(tmp_path / "jobs.db"), Clock()
    ids = []
    for i in range(40):
        job = make_job(i, (a.url, b.url))
        store.create(job)
        advance(store, job.id, clock)
        ids.append(job.id)
    n = notifier(store, clock)
    msgs = transitions_of(store, ids)
    msgs = msgs + rng.sample(msgs, len(msgs) // 3)  # duplicated deliveries of the same transitions
    rng.shuffle(msgs)  # and out of order
    threads = [threading.Thread(target=lambda part=msgs[k::4]: [n.handle(m) for m in part]) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    eventually(lambda: n.run_due() == 0 and all(len(r.accepted()) >= 200 for r in (a, b)), what="every delivery")
    for rec in (a, b):
        for job_id in ids:
            got = rec.accepted(job_id)
            assert [g.status for g in got] == LIFECYCLE, (job_id, [g.status for g in got])  # never out of order
            assert len({g.msg_id for g in got}) == 5
    assert first_fail and all(rec_id in {g.msg_id for g in a.accepted()} for rec_id in first_fail)  # failed once, then delivered
    n.close()


def test_410_stops_other_4xx_is_recorded_and_passed(tmp_path: Path, receivers) -> None:
    gone = receivers(answer=lambda msg_id, attempt: 410)
    bad = receivers(answer=lambda msg_id, attempt: 400 if msg_id.endswith(".2") else 200)
    store, clock = SqliteJobStore(tmp_path / "jobs.db"), Clock()
    store.create(make_job(1, (gone.url, bad.url)))
    advance(store, "job-0001", clock)
    n = notifier(store, clock)
    for m in transitions_of(store, ["job-0001"]):
        n.handle(m)
    assert len(gone.got) == 1  # the first answer was 410: nothing more of this job to it
    assert [g.status for g in bad.got] == LIFECYCLE and [g.status_answered for g in bad.got] == [200, 400, 200, 200, 200]
    verdicts = {(d["url"], d["notificationSeq"]): d["verdict"] for d in store.list_attempts("job-0001", limit=100)}
    assert verdicts[(gone.url, 1)] == "gone" and verdicts[(bad.url, 2)] == "failed" and verdicts[(bad.url, 3)] == "delivered"
    states = {c.url: c.state for c in store.list_channels("job-0001")}
    assert states[gone.url] == "stopped"
    n.close()


def test_the_guard_is_applied_again_at_delivery(tmp_path: Path, receivers) -> None:
    """A host that resolved to a public address when the job was accepted and to the metadata server now
    (DNS rebinding): refused at delivery, recorded, nothing sent."""
    store, clock = SqliteJobStore(tmp_path / "jobs.db"), Clock()
    store.create(make_job(1, ("https://rebind.example.com/hook",)))
    n = notifier(store, clock, sender_kw={"resolver": lambda host, port: ["169.254.169.254"]})
    for m in transitions_of(store, ["job-0001"]):
        n.handle(m)
    (attempt,) = store.list_attempts("job-0001")
    assert attempt["verdict"] == "failed" and "refused" in attempt["error"] and attempt["statusCode"] is None
    n.close()


def test_a_slow_subscriber_delays_nobody_else(tmp_path: Path, receivers) -> None:
    slow, fast = receivers(delay=1.0), receivers()
    store, clock = SqliteJobStore(tmp_path / "jobs.db"), Clock()
    store.create(make_job(1, (slow.url, fast.url)))
    advance(store, "job-0001", clock)
    n = notifier(store, clock)
    started = time.monotonic()
    t = threading.Thread(target=lambda: [n.handle(m) for m in transitions_of(store, ["job-0001"])])
    t.start()
    eventually(lambda: len(fast.accepted()) == 5, timeout=3, what="the fast subscriber's five")
    assert time.monotonic() - started < 2.5  # the slow one takes 1 s a message: 5 s for its five
    assert len(slow.got) <= 3
    t.join(30)
    eventually(lambda: len(slow.accepted()) == 5 or n.run_due() < 0, timeout=30, what="the slow subscriber's five")
    n.close()


def test_what_a_crash_left_in_the_outbox_is_delivered_after_a_restart(tmp_path: Path, receivers) -> None:
    """The transitions are committed, then the process dies before the relay ran: nothing was published.
    The next process's relay publishes them (the same ids) and they are delivered."""
    rec = receivers()
    store, clock = SqliteJobStore(tmp_path / "jobs.db"), Clock()
    store.create(make_job(1, (rec.url,)))
    advance(store, "job-0001", clock)
    assert len(store.unpublished()) == 5
    store.close()  # "crash": no relay, no notifier ran
    store = SqliteJobStore(tmp_path / "jobs.db")
    published: list[dict] = []

    class Bus:
        kind = "test"

        def publish(self, topic, data, *, attributes=None, ordering_key=None):
            published.append({"topic": topic, "ordering_key": ordering_key, **data})
            return str(len(published))

    assert OutboxRelay(store=store, bus=Bus(), topic="job-transitions").run_once() == 5
    assert [p["id"] for p in published] == [f"job-0001.{i}" for i in range(1, 6)] and {p["ordering_key"] for p in published} == {"job-0001"}
    assert store.unpublished() == [] and OutboxRelay(store=store, bus=Bus(), topic="job-transitions").run_once() == 0
    n = notifier(store, clock)
    for p in published:
        n.handle(Message(id=p["id"], topic="job-transitions", data=p, attributes={}, ordering_key=p["ordering_key"]))
    assert [g.status for g in rec.accepted()] == LIFECYCLE and [g.msg_id for g in rec.accepted()] == [p["id"] for p in published]
    n.close()
