"""Benchmark of the api (issue 2): `POST /train` throughput and latency, `GET /jobs` first-page latency.

Everything is measured in one run, side by side with a trivial functions-framework function, because
these machines are noisy: the ratios are the result.

    .venv/bin/python -m tests.bench.bench_api [--seconds 10] [--skip-emulators] [--out tests/bench/results]

1. references: a trivial function, POST with the same body, on functions-framework's two servers:
   gunicorn (how the deployed api is served) and `--asgi` (uvicorn)
2. embedded default (`python -m functions.dev.embedded`: uvicorn, SQLite + inline bus + launcher in-process):
   POST /train; then how long until every accepted job has been launched (`launch_drain_s`: 0 means the
   launcher kept pace with the load); and, as an ablation, the same server with nothing consuming the
   launches (`post_train_api_only`: the api's own cost)
3. deployed topology on the emulators (`python -m functions.dev.local_stack`): POST /train (Firestore + Pub/Sub)
4. GET /jobs first page (limit 50) p50 with 100 and with 10,000 stored jobs, SQLite and Firestore emulator
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from functions.dev.local_stack import free_port, stop_group, wait_http
from shared.domain.backends.kubernetes import KUBERNETES
from shared.domain.job import Job
from shared.domain.status import JobStatus
from tests.bench.loadgen import load, sample_latency

REPO = Path(__file__).resolve().parents[2]
PY = sys.executable
BODY = json.dumps(
    {
        "job_name": "bench",
        "model": "meta-llama/Llama-3.2-3B-Instruct",
        "dataset_file": "gs://bench/data.jsonl",
        "output_dir": "/tmp/model",
        "trainer_args": {"num_train_epochs": 2, "per_device_train_batch_size": 2, "gradient_accumulation_steps": 8},
        "env": {"HF_TOKEN": "hf_bench"},
    }
).encode()
HEADERS = {"Content-Type": "application/json"}


def start(cmd: list[str], env: dict[str, str], port: int, log: Path, ready_path: str = "/health", timeout: float = 120) -> subprocess.Popen:
    proc = subprocess.Popen(cmd, cwd=REPO, env={**os.environ, **env}, stdout=open(log, "wb"), stderr=subprocess.STDOUT, start_new_session=True)
    wait_http(f"http://127.0.0.1:{port}{ready_path}", timeout, proc=proc)
    return proc


def make_jobs(n: int, start_index: int = 0) -> list[Job]:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    jobs = []
    for i in range(start_index, start_index + n):
        ts = t0 + timedelta(seconds=i)
        jobs.append(
            Job(
                id=f"bench-{i:06d}",
                name=f"bench-{i % 10}",
                backend=KUBERNETES,
                status=JobStatus.SUCCEEDED,
                created_at=ts,
                updated_at=ts,
                dataset_file="gs://b/d.jsonl",
                output_dir="/tmp/o",
                args=("--dataset_file=gs://b/d.jsonl", "--output_dir=/tmp/o", "--num_train_epochs=2"),
                log_tail="x" * 2000,
                log_count=100,
                version=1,
            )
        )
    return jobs


def fill_sqlite(path: Path, n: int, start_index: int) -> None:
    from shared.adapters.sqlite_store import SqliteJobStore

    store = SqliteJobStore(path)
    conn = store._conn()
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany(store.INSERT, [store._row(j) for j in make_jobs(n, start_index)])
    conn.execute("COMMIT")
    store.close()


def fill_firestore(project: str, n: int, start_index: int) -> None:
    from google.cloud import firestore

    from shared.adapters.records import to_record

    client = firestore.Client(project=project)
    jobs = make_jobs(n, start_index)
    for i in range(0, len(jobs), 400):
        batch = client.batch()
        for job in jobs[i : i + 400]:
            batch.set(client.collection("jobs").document(job.id), to_record(job))
        batch.commit()
    client.close()


def post_load(url: str, seconds: int) -> dict:
    """POST the benchmark body for `seconds` after a 2 s warm-up: req/s and latency."""
    load(url, method="POST", body=BODY, headers=HEADERS, seconds=2)
    return load(url, method="POST", body=BODY, headers=HEADERS, seconds=seconds).row()


def trivial_reference(seconds: int, tmp: Path, *, asgi: bool = False) -> dict:
    port = free_port()
    source, flags = ("trivial_asgi.py", ["--asgi"]) if asgi else ("trivial.py", [])
    cmd = [PY, "-m", "functions_framework", *flags, f"--source={REPO / 'tests/bench' / source}", "--target=trivial", "--host=127.0.0.1", f"--port={port}"]
    proc = start(cmd, {}, port, tmp / f"trivial-{'asgi' if asgi else 'gunicorn'}.log", ready_path="/")
    try:
        return post_load(f"http://127.0.0.1:{port}/", seconds)
    finally:
        stop_group(proc)


def embedded(seconds: int, tmp: Path) -> dict:
    port = free_port()
    db = tmp / "embedded.db"
    env = {"PORT": str(port), "SQLITE_PATH": str(db), "K8S_TRAINING_IMAGE": "trainer:bench"}
    results: dict = {}
    proc = start([PY, "-m", "functions.dev.embedded"], env, port, tmp / "embedded.log")
    url = f"http://127.0.0.1:{port}"
    try:
        results["post_train"] = post_load(f"{url}/train", seconds)
        results["launch_drain_s"] = launch_drain(url)
    finally:
        stop_group(proc)
    # The same server with nothing consuming launches (tests/bench/embedded_api_only.py): the api's share.
    env["SQLITE_PATH"] = str(tmp / "api-only.db")
    proc = start([PY, "-m", "tests.bench.embedded_api_only"], env, port, tmp / "embedded-api-only.log")
    try:
        results["post_train_api_only"] = post_load(f"{url}/train", seconds)
    finally:
        stop_group(proc)
    # First page with 100, then 10,000 jobs (a fresh database, filled directly).
    db2 = tmp / "list.db"
    fill_sqlite(db2, 100, 0)
    env["SQLITE_PATH"] = str(db2)
    proc = start([PY, "-m", "functions.dev.embedded"], env, port, tmp / "embedded-list.log")
    try:
        small = sample_latency(f"{url}/jobs")
        fill_sqlite(db2, 9_900, 100)
        large = sample_latency(f"{url}/jobs")
    finally:
        stop_group(proc)
    results["list_first_page"] = {"p50_ms_100": round(small, 3), "p50_ms_10000": round(large, 3), "ratio": round(large / small, 3)}
    return results


def launch_drain(url: str, timeout: float = 300) -> float:
    """Seconds from the end of the load until no job is queued or submitting any more."""
    import urllib.request

    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        pending = 0
        for status in ("queued", "submitting"):
            with urllib.request.urlopen(f"{url}/jobs?status={status}&limit=1") as resp:
                pending += len(json.load(resp)["jobs"])
        if not pending:
            return round(time.monotonic() - t0, 2)
        time.sleep(0.05)
    raise RuntimeError(f"jobs still waiting for their launch after {timeout} s")


def emulators(seconds: int, tmp: Path) -> dict:
    port = free_port()
    project = f"bench-{uuid.uuid4().hex[:6]}"
    proc = start(
        [PY, "-m", "functions.dev.local_stack", f"--port={port}", f"--project={project}"],
        {"K8S_TRAINING_IMAGE": "trainer:bench"},
        port,
        tmp / "stack.log",
        timeout=180,
    )
    url = f"http://127.0.0.1:{port}"
    results: dict = {}
    try:
        firestore_host = _read_host(tmp / "stack.log", "firestore")
        results["post_train"] = post_load(f"{url}/train", seconds)
        # Wipe, then first page with 100 and 10,000 jobs.
        import urllib.request

        urllib.request.urlopen(
            urllib.request.Request(f"http://{firestore_host}/emulator/v1/projects/{project}/databases/(default)/documents", method="DELETE")
        ).read()
        os.environ["FIRESTORE_EMULATOR_HOST"] = firestore_host
        fill_firestore(project, 100, 0)
        small = sample_latency(f"{url}/jobs", n=100)
        fill_firestore(project, 9_900, 100)
        large = sample_latency(f"{url}/jobs", n=100)
        results["list_first_page"] = {"p50_ms_100": round(small, 3), "p50_ms_10000": round(large, 3), "ratio": round(large / small, 3)}
    finally:
        stop_group(proc)
    return results


def _read_host(log: Path, kind: str) -> str:
    for _ in range(50):
        for line in log.read_text().splitlines():
            if line.startswith(f"{kind} emulator on "):
                return line.split(" on ", 1)[1].strip()
        time.sleep(0.1)
    raise RuntimeError(f"{kind} emulator address not in {log}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--skip-emulators", action="store_true")
    parser.add_argument("--out", default=str(REPO / "tests" / "bench" / "results"))
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-api-"))
    report: dict = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "seconds_per_run": args.seconds,
    }
    report["trivial"] = trivial_reference(args.seconds, tmp)
    report["trivial_asgi"] = trivial_reference(args.seconds, tmp, asgi=True)
    report["embedded"] = embedded(args.seconds, tmp)
    rps = report["embedded"]["post_train"]["rps"]
    report["embedded"]["post_train_vs_trivial"] = round(rps / report["trivial"]["rps"], 3)
    report["embedded"]["post_train_vs_trivial_asgi"] = round(rps / report["trivial_asgi"]["rps"], 3)
    if not args.skip_emulators:
        report["emulators"] = emulators(args.seconds, tmp)
        report["emulators"]["post_train_vs_trivial"] = round(report["emulators"]["post_train"]["rps"] / report["trivial"]["rps"], 3)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "api.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
