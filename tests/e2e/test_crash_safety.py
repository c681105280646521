"""Crash safety of the embedded default: `kill -9` during a burst of submissions; after a restart every job
that got a 202 exists and is launched exactly once (one Kubernetes Job on the fake API server).

The local backend too, where the runs live on this machine: 120 jobs (`backend: local`, 8 concurrent
clients, an Idempotency-Key each) with a stand-in trainer that marks each start, `kill -9` of the server
after the 40th and the 80th answer (once 8 trainers run), a restart and a re-send of every unanswered
request each time: every job ran exactly once, every final status is what its trainer really did (even
for trainers that ended while no server ran), a clean stop leaves no process behind, and a reconcile pass
finds nothing left to finish. And a clean stop (SIGTERM) applies the exit of every trainer it stops."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
import requests

from functions.dev.local_stack import free_port, stop_group, wait_http
from tests.fakes import FAKE_TRAINER, FakeKubernetesAPI, write_kubeconfig
from tests.fakes.policy import BUILT_IN_RULES

REPO = Path(__file__).resolve().parents[2]
JOB_ID_LABEL = "training-platform/job-id"

pytestmark = pytest.mark.slow


def start(tmp: Path, port: int, kube: Path | None = None, **extra: str) -> subprocess.Popen:
    env = {**os.environ, "PORT": str(port), "SQLITE_PATH": str(tmp / "jobs.db"), "RECONCILE_INTERVAL_SECONDS": "0", **extra}
    if kube is not None:
        env.update({"K8S_TRAINING_IMAGE": "trainer:crash", "K8S_APPLY": "1", "K8S_KUBECONFIG": str(kube), "K8S_NAMESPACE": "training"})
    proc = subprocess.Popen(
        [sys.executable, "-m", "functions.dev.embedded"],
        cwd=REPO,
        env=env,
        start_new_session=True,
        stdout=open(tmp / f"server-{time.time()}.log", "wb"),
        stderr=subprocess.STDOUT,
    )
    wait_http(f"http://127.0.0.1:{port}/health", 60, proc=proc)
    return proc


def test_kill_9_during_a_burst(tmp_path: Path) -> None:
    with FakeKubernetesAPI(namespaces=("training",), validate=False) as k8s:
        kube = write_kubeconfig(k8s.url, tmp_path / "kubeconfig")
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        proc = start(tmp_path, port, kube)
        accepted: list[str] = []
        lock = threading.Lock()
        stop = threading.Event()

        def client(n: int) -> None:
            session = requests.Session()
            i = 0
            while not stop.is_set():
                i += 1
                try:
                    r = session.post(f"{url}/train", json={"job_name": f"burst-{n}-{i}", "dataset_file": "gs://b/d.jsonl", "output_dir": "/tmp/o"}, timeout=5)
                except requests.RequestException:
                    continue  # the server died under us: this one got no 202
                if r.status_code == 202:
                    with lock:
                        accepted.append(r.json()["job"]["id"])

        threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(4)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with lock:
                if len(accepted) >= 60:
                    break
            time.sleep(0.05)
        os.killpg(os.getpgid(proc.pid), signal.SIGKILL)  # no goodbye: the bus queue and its threads are gone
        proc.wait(10)
        stop.set()
        for t in threads:
            t.join(10)
        assert len(accepted) >= 60
        proc = start(tmp_path, port, kube)
        try:
            pending = set(accepted)
            deadline = time.monotonic() + 120
            while pending and time.monotonic() < deadline:
                for job_id in list(pending):
                    job = requests.get(f"{url}/jobs/{job_id}", params={"logs_limit": 1}).json()["job"]
                    if job["status"] == "submitted":
                        pending.discard(job_id)
                time.sleep(0.5)
            assert not pending, f"{len(pending)} accepted job(s) never launched"
            time.sleep(1)
            per_job: dict[str, int] = {}
            for obj in k8s.objects("jobs", "training"):
                job_id = obj["metadata"]["labels"][JOB_ID_LABEL]
                per_job[job_id] = per_job.get(job_id, 0) + 1
            assert all(per_job.get(j) == 1 for j in accepted), {j: per_job.get(j) for j in accepted if per_job.get(j) != 1}
            # Nothing unaccepted was half-launched twice either.
            assert all(n == 1 for n in per_job.values())
        finally:
            stop_group(proc)


# ---- the local backend ---------------------------------------------------------------------------------

LOCAL_JOBS = 120
KILL_AFTER = (40, 80)  # answers before each `kill -9`
CLIENTS = 8
# Requests per second, all clients together: slow enough that launches keep up and trainers run when
# the server is killed, fast enough that requests are in flight then too.
LOCAL_RATE = 25.0


def local_env(tmp: Path, **extra: str) -> dict[str, str]:
    return {
        "DEFAULT_TRAINING_BACKEND": "local",
        "TRAIN_SCRIPT_PATH": str(FAKE_TRAINER),
        "PYTHON_BIN": sys.executable,
        "FAKE_TRAINER_MARKER_DIR": str(tmp / "markers"),
        "FAKE_TRAINER_LINES": "2",
        **extra,
    }


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


class Burst:
    """POST /train for every job, CLIENTS at a time, each with its own Idempotency-Key; what got no
    answer (the server died under it) is sent again, with the same key and body, to the next server."""

    def __init__(self, tmp: Path, n: int):
        self.bodies = [
            {
                "backend": "local",
                "job_name": f"crash-{i}",
                "dataset_file": str(tmp / "d.jsonl"),
                "output_dir": str(tmp / "out" / (f"job-{i}-exit3" if i % 5 == 0 else f"job-{i}")),
            }
            for i in range(n)
        ]
        self.todo = list(range(n))
        self.answered: dict[int, str] = {}
        self.lock = threading.Lock()

    def run(self, url: str, until: int) -> None:
        """Send until `until` requests in all have been answered (or everything was sent)."""
        stop = threading.Event()

        def client() -> None:
            session = requests.Session()
            while not stop.is_set():
                with self.lock:
                    if not self.todo:
                        return
                    i = self.todo.pop(0)
                try:
                    r = session.post(f"{url}/train", json=self.bodies[i], headers={"Idempotency-Key": f"crash-{i}"}, timeout=10)
                    ok = r.status_code in (200, 202)
                except requests.RequestException:
                    ok = False
                with self.lock:
                    if ok:
                        self.answered[i] = r.json()["job"]["id"]
                    else:
                        self.todo.append(i)  # unanswered: sent again (to the next server)
                stop.wait(CLIENTS / LOCAL_RATE)

        threads = [threading.Thread(target=client, daemon=True) for _ in range(CLIENTS)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.answered) >= until or (not self.todo and all(not t.is_alive() for t in threads)):
                    break
            time.sleep(0.01)
        self.stop = stop  # the caller kills the server, then lets the clients go
        self._threads = threads

    def release(self) -> None:
        self.stop.set()
        for t in self._threads:
            t.join(15)


def test_local_runs_survive_kill_9_of_the_server(tmp_path: Path) -> None:
    from shared.adapters.sqlite_store import SqliteJobStore
    from shared.domain.backends.local import LOCAL
    from shared.usecases.reconcile import Reconciler
    from shared.usecases.status_sync import StatusSync
    from tests.integration.conftest import RecordingBus

    began = time.monotonic()
    markers = tmp_path / "markers"
    markers.mkdir()
    env = local_env(tmp_path, FAKE_TRAINER_SLEEP="1.5")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    burst = Burst(tmp_path, LOCAL_JOBS)
    alive_at_kill: list[int] = []
    answered_at_kill: list[int] = []
    proc = start(tmp_path, port, **env)
    try:
        for limit in (*KILL_AFTER, LOCAL_JOBS):
            burst.run(url, limit)
            if limit == LOCAL_JOBS:
                burst.release()
                break
            deadline = time.monotonic() + 15
            while sum(_alive(int(p.suffix[1:])) for p in markers.iterdir()) < 8:  # while launches are in flight and trainers run
                assert time.monotonic() < deadline, "no trainer ever started"
                time.sleep(0.01)
            with burst.lock:
                answered_at_kill.append(len(burst.answered))
            os.killpg(os.getpgid(proc.pid), signal.SIGKILL)  # the server: its trainers run in sessions of their own
            proc.wait(10)
            burst.release()
            alive_at_kill.append(sum(_alive(int(p.suffix[1:])) for p in markers.iterdir()))
            proc = start(tmp_path, port, **env)
        assert len(burst.answered) == LOCAL_JOBS, f"{LOCAL_JOBS - len(burst.answered)} request(s) never answered"
        assert all(n > 0 for n in alive_at_kill), f"a kill hit no running trainer: {alive_at_kill}"

        store = SqliteJobStore(tmp_path / "jobs.db")
        expected = {job_id: (3 if i % 5 == 0 else 0) for i, job_id in burst.answered.items()}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            jobs = {job_id: store.get(job_id) for job_id in expected}
            if all(j is not None and j.is_terminal() for j in jobs.values()):
                break
            time.sleep(0.5)
        wrong = {
            job_id: (j.status.value, j.status_reason, j.exit_code) if j else None
            for job_id, j in jobs.items()
            if j is None or (j.status.value, j.exit_code) != (("failed", 3) if expected[job_id] == 3 else ("succeeded", 0))
        }
        starts: dict[str, int] = {}
        for p in markers.iterdir():
            starts[p.stem] = starts.get(p.stem, 0) + 1
        double = {key: n for key, n in starts.items() if n != 1}
        missing = [i for i in burst.answered if Path(burst.bodies[i]["output_dir"]).name not in starts]
    finally:
        proc.send_signal(signal.SIGTERM)  # the clean stop
        try:
            stopped = proc.wait(30)
        finally:
            stop_group(proc)
    orphans = [int(p.suffix[1:]) for p in markers.iterdir() if _alive(int(p.suffix[1:]))]
    print(
        f"\nlocal crash safety: {LOCAL_JOBS} jobs, {len(KILL_AFTER)} kills (after {answered_at_kill} answers, trainers alive: {alive_at_kill}), "
        f"{len(double)} double launches, {len(missing)} never launched, {len(wrong)} wrong final states, {len(orphans)} orphan trainers, "
        f"{time.monotonic() - began:.0f}s"
    )
    assert stopped == 128 + signal.SIGTERM
    assert not double, f"launched more than once: {double}"
    assert not missing, f"accepted but never launched: {missing}"
    assert not wrong, f"{len(wrong)} wrong final state(s): {dict(list(wrong.items())[:10])}"
    assert not orphans, f"trainers left running after the clean stop: {orphans}"

    from shared.adapters.local_backend import LocalBackend
    from shared.adapters.local_runs import RunDir

    runs = tmp_path / "jobs-runs"
    assert not [d.name for d in runs.iterdir() if RunDir(runs, d.name).alive()], "a run's supervisor outlived the clean stop"
    # A reconcile pass over what is left, reading the same run folders: nothing to finish.
    store = SqliteJobStore(tmp_path / "jobs.db")
    backend = LocalBackend(python_bin=sys.executable, script=FAKE_TRAINER, cwd=REPO, runs_dir=runs)
    report = Reconciler(
        store=store,
        backends={LOCAL: backend},
        status_sync=StatusSync(store=store, max_log_chars=1000, rules=BUILT_IN_RULES),
        bus=RecordingBus(),
        requests_topic="train-requests",
        min_age=timedelta(0),
    ).run_once()
    unfinished = [j.id for j in (store.get(job_id) for job_id in expected) if j is None or not j.is_terminal()]
    assert report.updated == [] and not unfinished, (report.to_dict(), unfinished)


def test_a_clean_stop_applies_the_exit_of_every_trainer_it_stops(tmp_path: Path) -> None:
    """SIGTERM to the server stops its trainers (exit 143) and applies each exit before it closes the
    store: no job stays `running`."""
    from shared.adapters.sqlite_store import SqliteJobStore

    (tmp_path / "markers").mkdir()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start(tmp_path, port, **local_env(tmp_path, FAKE_TRAINER_SLEEP="120", FAKE_TRAINER_TERM_LINES="2000"))
    try:
        ids = []
        for i in range(24):
            r = requests.post(f"{url}/train", json={"backend": "local", "dataset_file": str(tmp_path / "d.jsonl"), "output_dir": str(tmp_path / f"o{i}")})
            assert r.status_code == 202, r.text
            ids.append(r.json()["job"]["id"])
        store = SqliteJobStore(tmp_path / "jobs.db")
        deadline = time.monotonic() + 30
        while any(store.get(j).status.value != "running" for j in ids):
            assert time.monotonic() < deadline, [store.get(j).status.value for j in ids]
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 128 + signal.SIGTERM
    finally:
        stop_group(proc)
    store = SqliteJobStore(tmp_path / "jobs.db")
    final = [(store.get(j).status.value, store.get(j).exit_code) for j in ids]
    assert final == [("failed", 143)] * len(ids), final
