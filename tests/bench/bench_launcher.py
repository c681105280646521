"""Benchmark of the launch path (issue 4): N submissions through the Pub/Sub emulator's push path to the
`launcher` function (its own functions-framework process, Firestore emulator store, `K8S_APPLY=1`)
creating Jobs on the fake Kubernetes API server.

    .venv/bin/python -m tests.bench.bench_launcher [--jobs 1000] [--rate 50]

Reports submit-to-Job-created p50/p99 (from the moment the job is submitted to the moment the fake API
server answered 201 to the Job's create), lost (no Job after the deadline) and duplicated (more than one
Job for one job id) counts. Target: p50 <= 150 ms on 2 cores, 0 lost, 0 duplicated.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from functions.dev.local_stack import Emulator, _wait_port, free_port, start_function, stop_group
from tests.fakes import FakeKubernetesAPI, write_kubeconfig

REPO = Path(__file__).resolve().parents[2]
JOB_ID_LABEL = "training-platform/job-id"


class TimedKubernetesAPI(FakeKubernetesAPI):
    """The fake API server, noting when each Job create was answered 201."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.created_at: dict[str, list[float]] = {}
        self._lock2 = threading.Lock()

    def route(self, request):
        resp = super().route(request)
        if request.method == "POST" and request.path.endswith("/jobs") and resp.status == 201:
            labels = ((request.body or {}).get("metadata") or {}).get("labels") or {}
            job_id = labels.get(JOB_ID_LABEL, "?")
            with self._lock2:
                self.created_at.setdefault(job_id, []).append(time.time())
        return resp


def percentile(values: list[float], q: float) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=50.0, help="submissions per second")
    parser.add_argument("--deadline", type=float, default=120.0, help="seconds to wait for the last Job")
    parser.add_argument("--out", default=str(REPO / "tests" / "bench" / "results"))
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-launch-"))
    project = "bench-launch"
    with (
        Emulator("pubsub", project, log_path=tmp / "pubsub.log") as ps,
        Emulator("firestore", project, log_path=tmp / "fs.log") as fs,
        TimedKubernetesAPI(namespaces=("training",), validate=False) as k8s,
    ):
        os.environ.update({"PUBSUB_EMULATOR_HOST": ps.host, "FIRESTORE_EMULATOR_HOST": fs.host})
        from shared.adapters.firestore_store import FirestoreJobStore
        from shared.adapters.pubsub_bus import PubSubBus
        from shared.settings import Settings
        from shared.usecases.service import TrainingService

        env = {
            **os.environ,
            "STORE_KIND": "firestore",
            "BUS_KIND": "pubsub",
            "GOOGLE_CLOUD_PROJECT": project,
            "K8S_APPLY": "1",
            "K8S_KUBECONFIG": str(write_kubeconfig(k8s.url, tmp / "kubeconfig", "training")),
            "K8S_NAMESPACE": "training",
            "K8S_TRAINING_IMAGE": "us-docker.pkg.dev/bench/trainer:1",
        }
        settings = Settings(**{k: v for k, v in env.items() if k in ("STORE_KIND", "BUS_KIND", "GOOGLE_CLOUD_PROJECT", "K8S_TRAINING_IMAGE")})
        bus = PubSubBus(project)
        bus.ensure_topics([settings.topic_train_requests, settings.topic_training_events, f"{settings.topic_train_requests}-dead-letter"])
        port = free_port()
        proc = start_function("launcher", port, env, tmp)
        try:
            _wait_port(port)
            bus.ensure_push_subscription(
                settings.topic_train_requests,
                "launcher-push",
                f"http://127.0.0.1:{port}/projects/{project}/topics/{settings.topic_train_requests}",
                dead_letter_topic=f"{settings.topic_train_requests}-dead-letter",
            )
            store = FirestoreJobStore.from_settings(project, "(default)")
            service = TrainingService(store=store, bus=bus, policy=settings.request_policy(), requests_topic=settings.topic_train_requests)
            body = {"job_name": "bench", "dataset_file": "gs://bench/d.jsonl", "output_dir": "/tmp/o", "env": {"HF_TOKEN": "hf_bench"}}
            # Warm-up (not measured): the first message pays for the function's cold start (clients,
            # kubeconfig, schema compilation), as the first request of a new Cloud Functions instance does.
            warm = [service.submit_training(body).job.id for _ in range(5)]
            until = time.time() + 60
            while time.time() < until and not all(j in k8s.created_at for j in warm):
                time.sleep(0.1)
            submitted: dict[str, float] = {}
            start = time.time()
            for i in range(args.jobs):
                due = start + i / args.rate
                delay = due - time.time()
                if delay > 0:
                    time.sleep(delay)
                t0 = time.time()
                job = service.submit_training(body).job
                submitted[job.id] = t0
            submit_s = time.time() - start
            deadline = time.time() + args.deadline
            while time.time() < deadline and len(k8s.created_at) < len(submitted):
                time.sleep(0.5)
            time.sleep(2)  # let any duplicate show up
        finally:
            stop_group(proc)
        latencies = sorted((k8s.created_at[j][0] - t0) * 1000 for j, t0 in submitted.items() if j in k8s.created_at)
        lost = [j for j in submitted if j not in k8s.created_at]
        dup_creates = {j: len(v) for j, v in k8s.created_at.items() if len(v) > 1 and j in submitted}
        jobs_in_cluster = [o for o in k8s.objects("jobs", "training") if o["metadata"]["labels"].get(JOB_ID_LABEL) in submitted]
        per_id: dict[str, int] = {}
        for obj in jobs_in_cluster:
            per_id[obj["metadata"]["labels"].get(JOB_ID_LABEL, "?")] = per_id.get(obj["metadata"]["labels"].get(JOB_ID_LABEL, "?"), 0) + 1
        statuses: dict[str, int] = {}
        for j in list(submitted)[:: max(1, len(submitted) // 100)]:
            s = store.get(j).status.value
            statuses[s] = statuses.get(s, 0) + 1
    report = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "jobs": args.jobs,
        "rate_per_s": args.rate,
        "achieved_submit_rate_per_s": round(args.jobs / submit_s, 1),
        "p50_ms": round(percentile(latencies, 50), 1) if latencies else None,
        "p99_ms": round(percentile(latencies, 99), 1) if latencies else None,
        "max_ms": round(latencies[-1], 1) if latencies else None,
        "lost": len(lost),
        "duplicated": len(dup_creates) + sum(1 for n in per_id.values() if n > 1),
        "jobs_in_fake_cluster": len(jobs_in_cluster),
        "sampled_statuses": statuses,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "launcher.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
