"""Proof under load and faults (issue 8): the whole system on this machine, measured the way its users
rely on it. Writes `report.json` and `report.md`.

    .venv/bin/python -m tests.bench.proof                 # the full run (1,000 jobs, every figure)
    .venv/bin/python -m tests.bench.proof --short         # CI: a few hundred jobs, one fault kind

Topology: the Pub/Sub and Firestore emulators; the functions `api`, `launcher` and `status_sync` each as
its own functions-framework process with push subscriptions (the deployed shape); the cluster watcher
(`python -m functions.watcher`) against a fake Kubernetes API server living in this process, where a small
"cluster" plays the Job controller and kubelet: for every Job the launcher creates it starts a pod, runs
it for a while and ends it — `Complete`, or for every tenth job `OOMKilled` — so every job has a known
true end that its events must bring it to.

a. N submissions through api -> Pub/Sub -> launcher -> fake API server -> watcher -> Pub/Sub ->
   status_sync -> Firestore: p50/p99 per stage and end to end; lost, duplicated Jobs, wrong final states.
b. The same with faults: 10 % of launch messages delivered twice (an exact copy published again), 5 % of
   API-server calls answered 500 or stalled past the client's timeout, and the launcher killed (-9) and
   restarted mid-run.
c. `GET /jobs` first-page p50 with 10^2, 10^3 and 10^4 stored jobs, as ratios (api on the Firestore emulator).
d. status_sync throughput against raw emulator writes (tests/bench/bench_status_sync.py, same run).
e. Embedded default `POST /train` req/s against a trivial functions-framework function (bench_api).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

from functions.dev.local_stack import Emulator, _wait_port, free_port, start_function, stop_group, wait_http
from tests.fakes import write_kubeconfig
from tests.fakes.kubernetes_watch import WatchableFakeKubernetesAPI

REPO = Path(__file__).resolve().parents[2]
NS = "training"
JOB_ID_LABEL = "training-platform/job-id"
SECRET = "hf_proof_secret_value_9f8e7d"


class FaultyCluster(WatchableFakeKubernetesAPI):
    """The fake API server plus faults (a share of non-watch calls answered 500 or stalled) and a note of
    when each Job create was answered 201."""

    def __init__(self, *a: Any, fault_rate: float = 0.0, stall_seconds: float = 6.0, seed: int = 7, **kw: Any):
        super().__init__(*a, **kw)
        self.fault_rate = fault_rate
        self.stall_seconds = stall_seconds
        self.rng = random.Random(seed)
        self.created_at: dict[str, list[float]] = {}
        self.injected = {"500": 0, "stall": 0}
        self._note = threading.Lock()

    def route(self, request):  # type: ignore[override]
        watching = request.param("watch") in ("true", "1") or request.param("follow") in ("true", "1")
        if self.fault_rate and not watching:
            with self._note:
                roll = self.rng.random()
            if roll < self.fault_rate / 2:
                self.injected["500"] += 1
                return self.error(500, "injected: internal error", "InternalError")
            if roll < self.fault_rate:
                self.injected["stall"] += 1
                time.sleep(self.stall_seconds)  # the client's read timeout fires first; the work is not done
                return self.error(504, "injected: stalled", "Timeout")
        resp = super().route(request)
        if request.method == "POST" and request.path.endswith("/jobs") and resp.status == 201:
            job_id = (((request.body or {}).get("metadata") or {}).get("labels") or {}).get(JOB_ID_LABEL, "?")
            with self._note:
                self.created_at.setdefault(job_id, []).append(time.time())
        return resp


@dataclass
class Simulated:
    job_id: str
    job_name: str
    outcome: str  # "Complete" | "OOMKilled"
    started: float = 0.0
    ended: float = 0.0


class ClusterSimulator(threading.Thread):
    """Plays the Job controller and kubelet: pod Running, then Succeeded + Complete, or OOMKilled + Failed."""

    def __init__(self, k8s: FaultyCluster, run_seconds: float, fail_every: int = 10):
        super().__init__(daemon=True, name="cluster")
        self.k8s = k8s
        self.run_seconds = run_seconds
        self.fail_every = fail_every
        self.jobs: dict[str, Simulated] = {}
        self.stop = threading.Event()
        self.count = 0

    def run(self) -> None:
        while not self.stop.is_set():
            now = time.time()
            for obj in self.k8s.objects("jobs", NS):
                job_id = obj["metadata"]["labels"].get(JOB_ID_LABEL)
                name = obj["metadata"]["name"]
                sim = self.jobs.get(job_id)
                if sim is None:
                    self.count += 1
                    outcome = "OOMKilled" if self.count % self.fail_every == 0 else "Complete"
                    sim = self.jobs[job_id] = Simulated(job_id, name, outcome, started=now)
                    self._pod(obj, {"phase": "Running", "containerStatuses": [{"name": "trainer", "state": {"running": {"startedAt": _rfc3339(now)}}}]})
                elif not sim.ended and now - sim.started >= self.run_seconds:
                    sim.ended = now
                    if sim.outcome == "Complete":
                        self._pod(
                            obj,
                            {"phase": "Succeeded", "containerStatuses": [{"name": "trainer", "state": {"terminated": {"reason": "Completed", "exitCode": 0}}}]},
                        )
                        self.k8s.set_status("jobs", NS, name, {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]})
                    else:
                        self._pod(
                            obj,
                            {"phase": "Failed", "containerStatuses": [{"name": "trainer", "state": {"terminated": {"reason": "OOMKilled", "exitCode": 137}}}]},
                        )
                        self.k8s.set_status(
                            "jobs",
                            NS,
                            name,
                            {
                                "failed": 1,
                                "conditions": [
                                    {
                                        "type": "Failed",
                                        "status": "True",
                                        "reason": "BackoffLimitExceeded",
                                        "message": "Job has reached the specified backoff limit",
                                    }
                                ],
                            },
                        )
            self.stop.wait(0.2)

    def _pod(self, job_obj: dict[str, Any], status: dict[str, Any]) -> None:
        template = job_obj["spec"]["template"]
        self.k8s.put(
            "pods",
            {
                "metadata": {
                    "name": f"{job_obj['metadata']['name']}-1",
                    "namespace": NS,
                    "labels": dict(template["metadata"].get("labels") or {}),
                    "annotations": dict(template["metadata"].get("annotations") or {}),
                    "ownerReferences": [
                        {"apiVersion": "batch/v1", "kind": "Job", "name": job_obj["metadata"]["name"], "uid": job_obj["metadata"]["uid"], "controller": True}
                    ],
                },
                "spec": template["spec"],
                "status": status,
            },
        )


def _rfc3339(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def pct(values: list[float], q: int) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return round(values[0], 1)
    return round(statistics.quantiles(values, n=100, method="inclusive")[q - 1], 1)


@dataclass
class Stack:
    tmp: Path
    project: str
    pubsub: Emulator
    firestore: Emulator
    k8s: FaultyCluster
    env: dict[str, str]
    bus: Any = None
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)

    def start_function(self, target: str, port: int | None = None) -> None:
        port = port or self.ports.get(target) or free_port()
        self.ports[target] = port
        self.procs[target] = start_function(target, port, self.env, self.tmp, append=True)
        _wait_port(port)

    def start_watcher(self) -> None:
        self.procs["watcher"] = subprocess.Popen(
            [sys.executable, "-m", "functions.watcher"],
            cwd=REPO,
            env=self.env,
            start_new_session=True,
            stdout=open(self.tmp / "watcher.log", "ab"),
            stderr=subprocess.STDOUT,
        )

    def kill(self, name: str) -> None:
        proc = self.procs.pop(name)
        os.killpg(os.getpgid(proc.pid), signal.SIGKILL)
        proc.wait(10)

    def stop(self) -> None:
        for proc in self.procs.values():
            stop_group(proc)

    def close(self) -> None:
        """Everything: the functions and the watcher, the fake API server, both emulators."""
        self.stop()
        self.k8s.stop()
        self.pubsub.stop()
        self.firestore.stop()


# The Kubernetes adapter reads with a 10 s timeout: a stall of 15 s is a timeout to the client.
STALL_SECONDS = 15.0


def start_stack(tmp: Path, fault_rate: float) -> Stack:
    project = f"proof-{uuid.uuid4().hex[:6]}"
    ps = Emulator("pubsub", project, log_path=tmp / "pubsub.log").start()
    fs = Emulator("firestore", project, log_path=tmp / "firestore.log").start()
    k8s = FaultyCluster(namespaces=(NS,), validate=False, fault_rate=fault_rate, stall_seconds=STALL_SECONDS).start()
    os.environ.update({"PUBSUB_EMULATOR_HOST": ps.host, "FIRESTORE_EMULATOR_HOST": fs.host})
    env = {
        **os.environ,
        "STORE_KIND": "firestore",
        "BUS_KIND": "pubsub",
        "GOOGLE_CLOUD_PROJECT": project,
        "K8S_APPLY": "1",
        "K8S_KUBECONFIG": str(write_kubeconfig(k8s.url, tmp / "kubeconfig", NS)),
        "K8S_NAMESPACE": NS,
        "K8S_TRAINING_IMAGE": "us-docker.pkg.dev/proof/trainer:1",
    }
    stack = Stack(tmp, project, ps, fs, k8s, env)
    from shared.adapters.pubsub_bus import PubSubBus

    bus = PubSubBus(project)
    topics = ["train-requests", "training-events"]
    # job-transitions: what the launcher and status_sync relay from the outbox (no notify subscribed here).
    bus.ensure_topics(topics + [f"{t}-dead-letter" for t in topics] + ["job-transitions"])
    for target in ("api", "launcher", "status_sync"):
        stack.start_function(target)
    wait_http(f"http://127.0.0.1:{stack.ports['api']}/health", 60)
    for target, topic in (("launcher", "train-requests"), ("status_sync", "training-events")):
        bus.ensure_push_subscription(
            topic,
            f"{target}-push",
            f"http://127.0.0.1:{stack.ports[target]}/projects/{project}/topics/{topic}",
            dead_letter_topic=f"{topic}-dead-letter",
            max_attempts=20,
        )
    stack.start_watcher()
    stack.bus = bus
    return stack


def run_jobs(
    stack: Stack, n: int, rate: float, *, duplicate_share: float, kill_launcher_at: float | None, run_seconds: float, deadline: float
) -> dict[str, Any]:
    url = f"http://127.0.0.1:{stack.ports['api']}"
    sim = ClusterSimulator(stack.k8s, run_seconds)
    sim.start()
    rng = random.Random(11)
    accepted: dict[str, float] = {}
    post_ms: list[float] = []
    errors_5xx = 0
    duplicates_sent = 0
    session = requests.Session()
    body = {
        "job_name": "proof",
        "model_id": "meta-llama/Llama-3.2-1B-Instruct",
        "dataset_file": "gs://proof/d.jsonl",
        "output_dir": "/tmp/o",
        "env": {"HF_TOKEN": SECRET},
    }
    # Warm-up (not counted): each function's first message pays for its cold start (clients, kubeconfig),
    # as the first request of a new Cloud Functions instance does.
    warm = [session.post(f"{url}/train", json={**body, "job_name": "warm-up"}, timeout=60).json()["job"]["id"] for _ in range(3)]
    until = time.time() + 120
    while time.time() < until and not all(sim.jobs.get(j) and sim.jobs[j].ended for j in warm):
        time.sleep(0.2)
    start = time.time()
    killed = False
    for i in range(n):
        due = start + i / rate
        if due > time.time():
            time.sleep(due - time.time())
        if kill_launcher_at is not None and not killed and i >= n * kill_launcher_at:
            stack.kill("launcher")  # mid-run, no goodbye
            killed = True
            threading.Timer(2.0, stack.start_function, args=("launcher",)).start()
        t0 = time.time()
        r = session.post(f"{url}/train", json=body, timeout=30)
        post_ms.append((time.time() - t0) * 1000)
        if r.status_code >= 500:
            errors_5xx += 1
            continue
        job_id = r.json()["job"]["id"]
        accepted[job_id] = t0
        if rng.random() < duplicate_share:
            # An exact copy of the launch message: what a redelivery looks like to the launcher.
            stack.bus.publish(
                "train-requests",
                {"job_id": job_id, "op": "submit", "env": {"HF_TOKEN": SECRET}},
                attributes={"op": "submit", "job_id": job_id},
                ordering_key=job_id,
            )
            duplicates_sent += 1
    submit_s = time.time() - start
    # Wait until every accepted job is final in the store (the api's list, paged by status).
    final: dict[str, dict[str, Any]] = {}
    until = time.time() + deadline
    while time.time() < until and len(final) < len(accepted):
        for status in ("succeeded", "failed"):
            cursor = None
            while True:
                page = session.get(f"{url}/jobs", params={"status": status, "limit": 500, **({"cursor": cursor} if cursor else {})}, timeout=30).json()
                for j in page["jobs"]:
                    if j["id"] in accepted:
                        final[j["id"]] = j
                cursor = page.get("nextCursor")
                if not cursor:
                    break
        time.sleep(1)
    time.sleep(2)
    sim.stop.set()
    per_id: dict[str, int] = {}
    for obj in stack.k8s.objects("jobs", NS):
        jid = obj["metadata"]["labels"].get(JOB_ID_LABEL, "?")
        per_id[jid] = per_id.get(jid, 0) + 1
    launch = [(stack.k8s.created_at[j][0] - t0) * 1000 for j, t0 in accepted.items() if j in stack.k8s.created_at]
    sync = []
    e2e = []
    wrong = []
    for j, job in final.items():
        s = sim.jobs.get(j)
        if s is None:
            continue
        want = "succeeded" if s.outcome == "Complete" else "failed"
        if job["status"] != want or (want == "failed" and job.get("statusReason") != "OOMKilled"):
            wrong.append({"id": j, "status": job["status"], "reason": job.get("statusReason"), "want": want})
        applied = datetime.fromisoformat(job["updatedAt"].replace("Z", "+00:00")).timestamp()
        if s.ended:
            sync.append((applied - s.ended) * 1000)
        e2e.append((applied - accepted[j]) * 1000)
    lost = [j for j in accepted if j not in final]
    return {
        "jobs_submitted": n,
        "accepted_202": len(accepted),
        "api_5xx": errors_5xx,
        "achieved_submit_rate_per_s": round(n / submit_s, 1),
        "duplicate_launch_messages_sent": duplicates_sent,
        "api_faults_injected": dict(stack.k8s.injected),
        "launcher_killed": killed,
        "stage_ms": {
            "post_train": {"p50": pct(post_ms, 50), "p99": pct(post_ms, 99)},
            "accepted_to_job_created": {"p50": pct(launch, 50), "p99": pct(launch, 99)},
            "cluster_end_to_store_final": {"p50": pct(sync, 50), "p99": pct(sync, 99)},
            "end_to_end_incl_simulated_run": {"p50": pct(e2e, 50), "p99": pct(e2e, 99), "simulated_run_s": run_seconds},
        },
        "lost": len(lost),
        "lost_ids": lost[:10],
        "duplicated_jobs": sum(1 for j in accepted if per_id.get(j, 0) > 1) + sum(1 for j, v in stack.k8s.created_at.items() if len(v) > 1),
        "wrong_final_state": len(wrong),
        "wrong_examples": wrong[:5],
        "outcomes": {
            "succeeded": sum(1 for j in final.values() if j["status"] == "succeeded"),
            "failed": sum(1 for j in final.values() if j["status"] == "failed"),
        },
    }


def list_ratios(stack: Stack, sizes: tuple[int, ...]) -> dict[str, Any]:
    """First-page p50 of GET /jobs (default limit 50) as the store grows, in its own collection state."""
    from google.cloud import firestore

    from shared.adapters.records import to_record
    from tests.bench.bench_api import make_jobs
    from tests.bench.loadgen import sample_latency

    client = firestore.Client(project=stack.project)
    url = f"http://127.0.0.1:{stack.ports['api']}/jobs"
    have = len(list(client.collection("jobs").select([]).stream()))
    out: dict[str, Any] = {}
    for size in sizes:
        missing = size - have
        jobs = make_jobs(max(0, missing), start_index=100_000 + have)
        for i in range(0, len(jobs), 400):
            batch = client.batch()
            for job in jobs[i : i + 400]:
                batch.set(client.collection("jobs").document(job.id), to_record(job))
            batch.commit()
        have = max(have, size)
        out[str(size)] = round(sample_latency(url, n=60, warmup=10), 2)
    base = out[str(sizes[0])]
    out["ratios"] = {k: round(v / base, 3) for k, v in out.items() if k != "ratios"}
    return out


def secret_hits(stack: Stack, responses: list[str]) -> dict[str, int]:
    import base64

    needles = [SECRET, base64.b64encode(SECRET.encode()).decode()]
    hits = {"logs": 0, "store": 0, "responses": 0, "fake_api_requests_other_than_secret_create": 0}
    for log in stack.tmp.glob("*.log"):
        if log.name in ("pubsub.log", "firestore.log"):
            continue
        text = log.read_text(errors="replace")
        hits["logs"] += sum(text.count(n) for n in needles)
    from google.cloud import firestore

    client = firestore.Client(project=stack.project)
    for col in client.collections():
        for snap in _all_docs(col):
            doc = json.dumps(snap.to_dict(), default=str)
            hits["store"] += sum(doc.count(n) for n in needles)
            if col.id == "jobs":
                for sub in ("logs", "events"):
                    for s2 in _all_docs(snap.reference.collection(sub)):
                        d2 = json.dumps(s2.to_dict(), default=str)
                        hits["store"] += sum(d2.count(n) for n in needles)
    for text in responses:
        hits["responses"] += sum(text.count(n) for n in needles)
    for req in stack.k8s.requests:
        if req.method == "POST" and req.path.endswith("/secrets"):
            continue
        raw = json.dumps(req.body, default=str) if req.body is not None else ""
        hits["fake_api_requests_other_than_secret_create"] += sum(raw.count(n) for n in needles)
    return hits


def _all_docs(col: Any, page: int = 300):
    """Every document of a collection, in pages (one long stream times out on the emulator)."""
    last = None
    while True:
        q = col.order_by("__name__").limit(page)
        if last is not None:
            q = q.start_after(last)
        snaps = list(q.stream())
        yield from snaps
        if len(snaps) < page:
            return
        last = snaps[-1]


def markdown(report: dict[str, Any]) -> str:
    lines = ["# Proof under load, faults and bad input", "", f"Machine: {report['machine']}; {report['when']}; command: `{report['command']}`", ""]
    for key in ("clean", "faults"):
        r = report.get(key)
        if not r:
            continue
        lines += [f"## {'a. Clean run' if key == 'clean' else 'b. With faults'}", "", "| figure | value |", "| --- | --- |"]
        for name in (
            "jobs_submitted",
            "accepted_202",
            "api_5xx",
            "lost",
            "duplicated_jobs",
            "wrong_final_state",
            "duplicate_launch_messages_sent",
            "api_faults_injected",
            "launcher_killed",
            "achieved_submit_rate_per_s",
            "outcomes",
        ):
            lines.append(f"| {name} | {r.get(name)} |")
        for stage, v in r["stage_ms"].items():
            lines.append(f"| {stage} p50 / p99 (ms) | {v['p50']} / {v['p99']} |")
        lines.append("")
    if "list_first_page" in report:
        lines += ["## c. GET /jobs first page p50 (ms)", "", "| stored jobs | p50 | ratio |", "| --- | --- | --- |"]
        for size, v in report["list_first_page"].items():
            if size != "ratios":
                lines.append(f"| {size} | {v} | {report['list_first_page']['ratios'][size]} |")
        lines.append("")
    for key, title in (("status_sync", "d. status_sync throughput"), ("embedded", "e. Embedded POST /train")):
        if key in report:
            lines += [f"## {title}", "", "```json", json.dumps(report[key], indent=2), "```", ""]
    lines += ["## Secret scan", "", f"hits: {report.get('secret_hits')}", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=10.0)
    parser.add_argument("--short", action="store_true", help="CI variant: 200 jobs, one fault kind (duplicate deliveries), no c/d/e")
    parser.add_argument("--run-seconds", type=float, default=2.0, help="how long each simulated training pod runs")
    parser.add_argument("--out", default=str(REPO))
    args = parser.parse_args()
    if args.short:
        args.jobs = min(args.jobs, 200)
    tmp = Path(tempfile.mkdtemp(prefix="proof-"))
    report: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python -m tests.bench.proof", *sys.argv[1:]]),
    }
    deadline = max(120.0, args.jobs / args.rate * 2 + 60)
    responses: list[str] = []
    (tmp / "clean").mkdir()
    stack = start_stack(tmp / "clean", 0.0)
    try:
        report["clean"] = run_jobs(
            stack, args.jobs, args.rate, duplicate_share=0.10 if args.short else 0.0, kill_launcher_at=None, run_seconds=args.run_seconds, deadline=deadline
        )
        responses.append(requests.get(f"http://127.0.0.1:{stack.ports['api']}/jobs", params={"limit": 500}).text)
        report["secret_hits"] = secret_hits(stack, responses)  # before (c) fills the store with 10^4 more
        _write(report, Path(args.out))
        if not args.short:
            report["list_first_page"] = list_ratios(stack, (100, 1000, 10000))
            _write(report, Path(args.out))
    finally:
        stack.close()
    if not args.short:
        (tmp / "faults").mkdir()
        stack = start_stack(tmp / "faults", 0.05)
        try:
            report["faults"] = run_jobs(
                stack, args.jobs, args.rate, duplicate_share=0.10, kill_launcher_at=0.5, run_seconds=args.run_seconds, deadline=deadline + 600
            )
            hits = secret_hits(stack, [])
            report["secret_hits"] = {k: report["secret_hits"].get(k, 0) + v for k, v in hits.items()}
            _write(report, Path(args.out))
        finally:
            stack.close()
        report["status_sync"] = json.loads(
            _run_module("tests.bench.bench_status_sync", ["--jobs", "150", "--lines", "10000", "--out", str(tmp)], tmp / "status_sync.json")
        )
        report["embedded"] = json.loads(_run_module("tests.bench.bench_api", ["--seconds", "8", "--skip-emulators", "--out", str(tmp)], tmp / "api.json"))
    _write(report, Path(args.out))
    print(markdown(report))
    failures = []
    for key in ("clean", "faults"):
        r = report.get(key)
        if r and (r["lost"] or r["duplicated_jobs"] or r["wrong_final_state"] or r["api_5xx"]):
            failures.append(key)
    if sum(report.get("secret_hits", {}).values()):
        failures.append("secrets")
    if failures:
        print(f"FAILED: {failures}", file=sys.stderr)
        sys.exit(1)


def _write(report: dict[str, Any], out: Path) -> None:
    """Written after every phase, so a run stopped halfway still leaves its figures."""
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "report.md").write_text(markdown(report))


def _run_module(module: str, argv: list[str], result: Path) -> str:
    subprocess.run([sys.executable, "-m", module, *argv], cwd=REPO, check=True, stdout=subprocess.DEVNULL, timeout=900)
    return result.read_text()


if __name__ == "__main__":
    main()
