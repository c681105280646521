"""Benchmark of status_sync on the Firestore emulator (issue 5): log lines/s and state events/s, against
raw sequential document writes measured in the same run (the reference).

    .venv/bin/python -m tests.bench.bench_status_sync [--jobs 200] [--lines 20000]

- raw: `doc.set()` of a job-sized document, sequentially (one writer, as a status_sync instance is).
- state events: a Kubernetes job's life as the watcher reports it (Pending/Unschedulable,
  Pending/ContainerCreating, Running, Complete) applied through StatusSync.apply_event: decide on the
  job as last seen, compare-and-set on its update time (the first event of a job in a process also reads
  it: reported separately).
- log lines: events of 500 lines each (what a watcher/supervisor batch looks like) for a running job.
Targets (issue 5): >= 10,000 log lines/s; state events >= 0.8x the raw write rate.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from functions.dev.local_stack import Emulator
from shared.adapters.records import to_record
from shared.domain.backends.kubernetes import KUBERNETES
from shared.domain.events import EventLog, TrainingEvent
from shared.domain.job import Job
from shared.domain.status import JobStatus
from shared.usecases.status_sync import StatusSync
from tests.fakes.policy import BUILT_IN_RULES

REPO = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 11, 29, tzinfo=UTC)


def job(i: int, status: JobStatus = JobStatus.SUBMITTED) -> Job:
    return Job(
        id=f"b-{i:06d}",
        name=f"bench-{i}",
        backend=KUBERNETES,
        status=status,
        created_at=T0,
        updated_at=T0,
        dataset_file="gs://b/d.jsonl",
        output_dir="/tmp/o",
        args=("--dataset_file=gs://b/d.jsonl", "--output_dir=/tmp/o"),
        external_id=f"training/bench-{i}",
        log_tail="x" * 500,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--lines", type=int, default=20_000)
    parser.add_argument("--out", default=str(REPO / "tests" / "bench" / "results"))
    args = parser.parse_args()
    from google.cloud import firestore

    from shared.adapters.firestore_store import FirestoreJobStore

    with Emulator("firestore", "bench-project") as emu:
        os.environ["FIRESTORE_EMULATOR_HOST"] = emu.host
        client = firestore.Client(project="bench-project")
        store = FirestoreJobStore(client, "bench_")
        sync = StatusSync(store=store, max_log_chars=100_000, rules=BUILT_IN_RULES)
        raw_col = client.collection("raw")
        for i in range(20):  # warm-up
            raw_col.document(f"w{i}").set(to_record(job(i)))

        t = time.perf_counter()
        for i in range(args.jobs):
            raw_col.document(f"r{i}").set(to_record(job(i)))
        raw_s = time.perf_counter() - t

        for i in range(args.jobs):
            store.create(job(i))
        t = time.perf_counter()
        n_events = 0
        # A Kubernetes job's life as the watcher reports it: four state events per job.
        lifecycle = ((1, "Pending", "Unschedulable"), (2, "Pending", "ContainerCreating"), (3, "Running", None), (4, "Complete", None))
        first_s = 0.0
        for step, state, reason in lifecycle:
            t_step = time.perf_counter()
            for i in range(args.jobs):
                sync.apply_event(
                    TrainingEvent(
                        job_id=f"b-{i:06d}", source="kubernetes", observed_at=T0 + timedelta(seconds=step), state=state, reason=reason, event_id=f"{i}:{step}"
                    )
                )
                n_events += 1
            if step == 1:
                first_s = time.perf_counter() - t_step
        events_s = time.perf_counter() - t
        done = [store.get(f"b-{i:06d}") for i in range(0, args.jobs, max(1, args.jobs // 10))]
        assert all(j.status is JobStatus.SUCCEEDED for j in done)

        store.create(job(999_999, JobStatus.RUNNING))
        batch = 500
        t = time.perf_counter()
        for start in range(0, args.lines, batch):
            logs = tuple(
                EventLog(seq=start + k + 1, timestamp=T0, stream="stdout", message=f"step {start + k} loss 1.234 lr 0.0002 tokens/s 5123.4")
                for k in range(batch)
            )
            sync.apply_event(TrainingEvent(job_id="b-999999", source="kubernetes", observed_at=T0, logs=logs))
        lines_s = time.perf_counter() - t
        assert store.get("b-999999").log_count == (args.lines // batch) * batch

    report = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "raw_writes_per_s": round(args.jobs / raw_s, 1),
        "state_events_per_s": round(n_events / events_s, 1),
        "state_events_vs_raw": round((n_events / events_s) / (args.jobs / raw_s), 3),
        "first_event_per_job_per_s": round(args.jobs / first_s, 1),
        "first_event_vs_raw": round((args.jobs / first_s) / (args.jobs / raw_s), 3),
        "events_per_job": 4,
        "log_lines_per_s": round(args.lines / lines_s, 1),
        "log_batch": batch,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "status_sync.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
