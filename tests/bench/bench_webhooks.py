"""Transition -> webhook received, on the embedded default and on the emulators (issue 14).

For each job, five transitions (queued at create, then submitting, submitted, running, succeeded), each
its own store commit; the latency of a transition is from just before its commit to the moment the
receiver (tests/fakes/webhook_receiver.py, verifying every signature) has it. The receiver refuses 10 %
of first attempts with a 500 (seeded), so retries and their ordering are exercised: the run checks
0 lost (every job's five arrive), 0 out of order (per job, accepted in lifecycle order), every
signature valid, and a retried message keeps its webhook-id.

Jobs arrive at a fixed rate (`--rate`, `--emulator-rate`), so the figures are latencies, not the depth
of a backlog; the rate used is in the report.

- embedded: the embedded container in this process (SQLite, inline bus, the relay + notify loop);
- emulators: Firestore and Pub/Sub emulators, the `notify` function as its own functions-framework
  process fed by the push subscription local_stack creates; the relay runs here after each commit, as
  the launcher and status_sync do after theirs.

    .venv/bin/python -m tests.bench.bench_webhooks [--jobs 1000] [--emulator-jobs 100] [--rate 20] [--emulator-rate 2]
Writes tests/bench/results/bench_webhooks.json.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from functions.dev.local_stack import Emulator, _wait_port, create_subscriptions, free_port, start_function, stop_group  # noqa: E402
from shared.domain.backends.local import LOCAL  # noqa: E402
from shared.domain.job import Job  # noqa: E402
from shared.domain.lifecycle import Change  # noqa: E402
from shared.domain.status import JobStatus  # noqa: E402
from tests.fakes.webhook_receiver import Receiver  # noqa: E402

SECRET = "whsec_" + base64.b64encode(b"bench-signing-key-0123456789ab").decode()
LIFECYCLE = ["queued", "submitting", "submitted", "running", "succeeded"]
STEPS = (JobStatus.SUBMITTING, JobStatus.SUBMITTED, JobStatus.RUNNING, JobStatus.SUCCEEDED)


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return round(values[min(len(values) - 1, int(q / 100 * len(values)))] * 1000, 1)


def flaky_receiver(seed: int) -> Receiver:
    rng = random.Random(seed)
    lock = threading.Lock()

    def answer(msg_id: str, attempt: int) -> int:
        with lock:
            return 500 if attempt == 1 and rng.random() < 0.10 else 200

    return Receiver(SECRET, answer=answer)


def drive(store: Any, n: int, receiver: Receiver, after_commit: Any, workers: int, job_prefix: str, rate: float) -> dict[str, Any]:
    """Create n jobs, `rate` a second, and move each through its five transitions (20 ms apart); returns
    the commit time of every message by its id."""
    committed: dict[str, float] = {}
    lock = threading.Lock()
    started = time.monotonic()

    def one(i: int) -> None:
        delay = started + i / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        now = datetime.now(UTC)
        job = Job(
            id=f"{job_prefix}-{i:05d}",
            name="bench",
            backend=LOCAL,
            status=JobStatus.QUEUED,
            created_at=now,
            updated_at=now,
            dataset_file="/d",
            output_dir="/o",
            webhooks=(receiver.url,),
        )
        t = time.monotonic()
        store.create(job)
        with lock:
            committed[f"{job.id}.1"] = t
        after_commit(job.id)
        for k, status in enumerate(STEPS, start=2):
            time.sleep(0.02)  # transitions of one job are apart in real life; let each be its own delivery
            t = time.monotonic()
            store.update(job.id, lambda j, s=status: Change(j.replace(status=s, updated_at=datetime.now(UTC)), source="bench"))
            with lock:
                committed[f"{job.id}.{k}"] = t
            after_commit(job.id)

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(one, range(n)))
    return {"committed": committed, "drive_s": time.monotonic() - started}


def verdict(receiver: Receiver, committed: dict[str, float], n: int, deadline: float) -> dict[str, Any]:
    expected = 5 * n
    while time.monotonic() < deadline and len({r.msg_id for r in receiver.accepted()}) < expected:
        time.sleep(0.1)
    accepted = receiver.accepted()
    by_job: dict[str, list[str]] = {}
    first_seen: dict[str, float] = {}
    for r in accepted:
        if r.msg_id not in first_seen:
            first_seen[r.msg_id] = r.at
            by_job.setdefault(r.job_id, []).append(r.status)
    lost = expected - len(first_seen)
    out_of_order = sum(1 for statuses in by_job.values() if statuses != LIFECYCLE[: len(statuses)])
    retried = {r.msg_id for r in receiver.got if r.attempt > 1}
    first_try = [first_seen[m] - committed[m] for m in first_seen if m not in retried and m in committed]
    all_lat = [first_seen[m] - committed[m] for m in first_seen if m in committed]
    return {
        "messages": expected,
        "lost": lost,
        "out_of_order_jobs": out_of_order,
        "invalid_signatures": sum(1 for r in receiver.got if not r.valid),
        "refused_first_attempts": sum(1 for r in receiver.got if r.status_answered == 500),
        "retried_messages": len(retried),
        "duplicates_accepted": len(accepted) - len(first_seen),
        "p50_ms": pct(first_try, 50),
        "p99_ms": pct(first_try, 99),
        "p50_ms_incl_retries": pct(all_lat, 50),
        "p99_ms_incl_retries": pct(all_lat, 99),
    }


def run_embedded(n: int, rate: float) -> dict[str, Any]:
    from functions.dev.embedded import build_embedded, stop
    from shared.settings import Settings

    tmp = Path(tempfile.mkdtemp(prefix="bench-hooks-"))
    receiver = flaky_receiver(1)
    settings = Settings(
        SQLITE_PATH=str(tmp / "jobs.db"),
        RECONCILE_INTERVAL_SECONDS="0",
        WEBHOOK_SIGNING_SECRET=SECRET,
        WEBHOOK_ALLOWED_HOSTS="127.0.0.1",
        WEBHOOK_RETRY_SCHEDULE="0,0.1,0.2,0.4,0.8,1.6,3.2",
    )
    c = build_embedded(settings)
    try:
        driven = drive(c.store, n, receiver, lambda job_id: None, workers=8, job_prefix="emb", rate=rate)
        result = verdict(receiver, driven["committed"], n, time.monotonic() + 120)
        result.update(drive_s=round(driven["drive_s"], 1), jobs_per_s=rate)
        return result
    finally:
        stop(c)
        receiver.close()


def run_emulators(n: int, rate: float) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-hooks-emu-"))
    project = "bench-hooks"
    receiver = flaky_receiver(2)
    with Emulator("pubsub", project, log_path=tmp / "pubsub.log") as ps, Emulator("firestore", project, log_path=tmp / "fs.log") as fs:
        os.environ.update({"PUBSUB_EMULATOR_HOST": ps.host, "FIRESTORE_EMULATOR_HOST": fs.host})
        from shared.adapters.firestore_store import FirestoreJobStore
        from shared.adapters.pubsub_bus import PubSubBus
        from shared.settings import Settings
        from shared.usecases.notify import OutboxRelay

        hook_env = {"WEBHOOK_SIGNING_SECRET": SECRET, "WEBHOOK_ALLOWED_HOSTS": "127.0.0.1", "WEBHOOK_RETRY_SCHEDULE": "0,0.1,0.2,0.4,0.8,1.6,3.2"}
        env = {**os.environ, "STORE_KIND": "firestore", "BUS_KIND": "pubsub", "GOOGLE_CLOUD_PROJECT": project, **hook_env}
        settings = Settings(GOOGLE_CLOUD_PROJECT=project, STORE_KIND="firestore", BUS_KIND="pubsub", **hook_env)
        bus = PubSubBus(project)
        port = free_port()
        proc = start_function("notify", port, env, tmp)
        try:
            _wait_port(port)
            create_subscriptions(bus, settings, {"notify": f"http://127.0.0.1:{port}"})
            store = FirestoreJobStore.from_settings(project, "(default)")
            relay = OutboxRelay(store=store, bus=bus, topic=settings.topic_job_transitions)
            retry_stop = threading.Event()

            def scheduler() -> None:
                # Cloud Scheduler's part (reconcile runs the due retries): here every half second.
                from shared.adapters.webhook_sender import WebhookSender
                from shared.domain.webhooks import Schedule
                from shared.usecases.notify import Notifier

                n2 = Notifier(
                    store=store,
                    sender=WebhookSender(allowed_hosts=settings.webhook_allowed_host_set),
                    signing_key=settings.webhook_key,
                    schedule=Schedule.parse(settings.webhook_retry_schedule),
                )
                while not retry_stop.wait(0.5):
                    try:
                        relay.run_once()
                        n2.run_due()
                    except Exception:  # noqa: BLE001 - a bad pass is retried
                        pass

            threading.Thread(target=scheduler, daemon=True).start()
            driven = drive(store, n, receiver, lambda job_id: relay.run_once(job_id), workers=8, job_prefix="emu", rate=rate)
            result = verdict(receiver, driven["committed"], n, time.monotonic() + 300)
            result.update(drive_s=round(driven["drive_s"], 1), jobs_per_s=rate)
            retry_stop.set()
            return result
        finally:
            stop_group(proc)
            receiver.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=1000, help="jobs on the embedded default (5 transitions each)")
    parser.add_argument("--emulator-jobs", type=int, default=100, help="jobs on the emulators (0: skip)")
    parser.add_argument("--rate", type=float, default=20.0, help="new jobs a second on the embedded default (5 transitions each)")
    parser.add_argument("--emulator-rate", type=float, default=2.0, help="new jobs a second on the emulators")
    parser.add_argument("--out", default=str(REPO / "tests" / "bench" / "results"))
    args = parser.parse_args()
    report: dict[str, Any] = {"when": datetime.now(UTC).isoformat(timespec="seconds"), "embedded": run_embedded(args.jobs, args.rate)}
    print(json.dumps({"embedded": report["embedded"]}, indent=2), flush=True)
    if args.emulator_jobs:
        report["emulators"] = run_emulators(args.emulator_jobs, args.emulator_rate)
        print(json.dumps({"emulators": report["emulators"]}, indent=2), flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_webhooks.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
