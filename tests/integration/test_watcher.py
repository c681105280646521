"""The cluster watcher against the fake Kubernetes API server, through the official client over HTTP.

Each test moves real objects through the fake (the Job controller's and kubelet's part), lets the
watcher publish, checks the envelopes (states, reasons, exit codes, event ids, log seqs, each state
once), and then feeds what was published into the real `StatusSync` over a SQLite store to check the
job that results. Time-based behaviour (the image-pull grace) runs on an injected clock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from shared.adapters.kubernetes.backend import observe_job
from shared.adapters.kubernetes.config import KubernetesSettings
from shared.adapters.kubernetes.manifests import render_job
from shared.adapters.kubernetes.watcher import ClusterWatcher
from shared.adapters.sqlite_store import SqliteJobStore
from shared.domain.job import Job
from shared.domain.status import FailureClass, JobStatus
from shared.messages import Message
from shared.usecases.status_sync import StatusSync
from tests.fakes.clock import T0, Clock
from tests.fakes.jobs import README_KUBERNETES, job_from
from tests.fakes.kubernetes_watch import WatchableFakeKubernetesAPI
from tests.fakes.policy import BUILT_IN_RULES

NS = "default"
WAIT = 5.0


class Published:
    """The watcher's `publish`: records envelopes in order."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def __call__(self, message: dict[str, Any]) -> None:
        with self._lock:
            self.messages.append(message)

    def all(self, job_id: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [m for m in self.messages if job_id is None or m["job_id"] == job_id]

    def states(self, job_id: str) -> list[tuple]:
        return [(m["state"], m.get("reason"), m.get("exit_code")) for m in self.all(job_id) if "state" in m]

    def seqs(self, job_id: str) -> list[int]:
        return [line["seq"] for m in self.all(job_id) for line in m.get("logs", [])]

    def wait(self, predicate: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.01)
        raise AssertionError(f"timed out waiting for {what}; published: {self.all()}")


# ---- the cluster's side --------------------------------------------------------------------------
class Cluster:
    """Our objects in the fake, moved along as the Job controller and the kubelet would."""

    def __init__(self, k8s: WatchableFakeKubernetesAPI):
        self.k8s = k8s

    def job(self, job_id: str, *, backoff: int = 0) -> tuple[Job, dict[str, Any]]:
        job, _ = job_from(README_KUBERNETES, job_id=job_id)
        body = render_job(job, [], KubernetesSettings(image="trainer:1", namespace=NS, backoff_limit=backoff))
        return job, self.k8s.put("jobs", body)

    def pod(self, job_obj: dict[str, Any], status: dict[str, Any], n: int = 1) -> str:
        template = job_obj["spec"]["template"]
        name = f"{job_obj['metadata']['name']}-{n}"
        self.k8s.put(
            "pods",
            {
                "metadata": {
                    "name": name,
                    "namespace": NS,
                    "labels": dict(template["metadata"]["labels"]),
                    "annotations": dict(template["metadata"]["annotations"]),
                    "ownerReferences": [
                        {"apiVersion": "batch/v1", "kind": "Job", "name": job_obj["metadata"]["name"], "uid": job_obj["metadata"]["uid"], "controller": True}
                    ],
                },
                "spec": template["spec"],
                "status": status,
            },
        )
        return name

    def pod_status(self, name: str, status: dict[str, Any]) -> None:
        self.k8s.set_status("pods", NS, name, status)

    def job_status(self, job_obj: dict[str, Any], status: dict[str, Any]) -> None:
        self.k8s.set_status("jobs", NS, job_obj["metadata"]["name"], status)


def unschedulable() -> dict[str, Any]:
    return {
        "phase": "Pending",
        "conditions": [
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/2 nodes are available: 2 Insufficient nvidia.com/gpu."}
        ],
    }


def pulling(reason: str = "ImagePullBackOff") -> dict[str, Any]:
    return {
        "phase": "Pending",
        "conditions": [{"type": "PodScheduled", "status": "True"}],
        "containerStatuses": [{"name": "trainer", "state": {"waiting": {"reason": reason, "message": 'Back-off pulling image "trainer:1"'}}}],
    }


def running() -> dict[str, Any]:
    return {"phase": "Running", "containerStatuses": [{"name": "trainer", "state": {"running": {"startedAt": "2026-11-29T12:00:00Z"}}}]}


def terminated(reason: str, code: int) -> dict[str, Any]:
    return {
        "phase": "Failed" if code else "Succeeded",
        "containerStatuses": [{"name": "trainer", "state": {"terminated": {"reason": reason, "exitCode": code}}}],
    }


def job_failed(reason: str = "BackoffLimitExceeded") -> dict[str, Any]:
    return {"failed": 1, "conditions": [{"type": "Failed", "status": "True", "reason": reason, "message": "Job has reached the specified backoff limit"}]}


JOB_COMPLETE = {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}


# ---- fixtures ------------------------------------------------------------------------------------
@pytest.fixture
def k8s() -> Iterator[WatchableFakeKubernetesAPI]:
    with WatchableFakeKubernetesAPI(validate=False) as fake:
        yield fake  # type: ignore[misc]


@pytest.fixture
def cluster(k8s: WatchableFakeKubernetesAPI) -> Cluster:
    return Cluster(k8s)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def start_watcher(k8s: WatchableFakeKubernetesAPI, clock: Clock) -> Iterator[Callable[..., tuple[ClusterWatcher, Published]]]:
    started: list[ClusterWatcher] = []

    def start(**overrides: Any) -> tuple[ClusterWatcher, Published]:
        published = Published()
        options: dict[str, Any] = {
            "watch_timeout_seconds": 5,
            "tick_seconds": 0.02,
            "retry_seconds": 0.05,
            "log_batch_seconds": 0.05,
            "log_drain_seconds": 1.0,
        }
        options.update(overrides)
        api = client.ApiClient(client.Configuration(host=k8s.url))
        watcher = ClusterWatcher(api, NS, published, clock=clock, **options)
        started.append(watcher)
        watcher.start()
        assert watcher.wait_synced(WAIT)
        return watcher, published

    yield start
    for w in started:
        w.stop()
    for w in started:
        assert w.join(5), "the watcher's threads did not end after stop()"


@pytest.fixture
def sync(tmp_path: Path, clock: Clock) -> tuple[SqliteJobStore, StatusSync]:
    store = SqliteJobStore(tmp_path / "jobs.db")
    return store, StatusSync(store=store, max_log_chars=100_000, rules=BUILT_IN_RULES, clock=clock)


def submitted(store: SqliteJobStore, job: Job, job_obj: dict[str, Any]) -> None:
    store.create(job.replace(status=JobStatus.SUBMITTED, external_id=f"{NS}/{job_obj['metadata']['name']}"))


def apply_all(status_sync: StatusSync, messages: list[dict[str, Any]]) -> None:
    for i, data in enumerate(messages):
        status_sync.handle(Message(id=f"m{i}", topic="training-events", data=data, ordering_key=data["job_id"]))


def watching(k8s: WatchableFakeKubernetesAPI, published: Published) -> None:
    """Wait until the watcher's first watch of each resource is open (its initial list is done)."""
    published.wait(lambda: bool(k8s.watches("jobs")) and bool(k8s.watches("pods")), "the watches to open")


def settle(watcher: ClusterWatcher) -> None:
    """Let the watcher run a few more ticks (so a duplicate publish would have happened by now)."""
    time.sleep(0.15)
    watcher.tick()


# ---- tests ---------------------------------------------------------------------------------------
def test_unschedulable_running_oom_each_state_once_in_order(cluster: Cluster, start_watcher: Any, sync: Any) -> None:
    job, job_obj = cluster.job("job-oom")
    pod = cluster.pod(job_obj, unschedulable())
    watcher, published = start_watcher()
    published.wait(lambda: published.states("job-oom") == [("Pending", "Unschedulable", None)], "Pending/Unschedulable")

    cluster.pod_status(pod, running())
    published.wait(lambda: len(published.states("job-oom")) == 2, "Running")
    cluster.pod_status(pod, terminated("OOMKilled", 137))
    cluster.job_status(job_obj, job_failed())
    published.wait(lambda: len(published.states("job-oom")) == 3, "Failed")
    settle(watcher)

    assert published.states("job-oom") == [("Pending", "Unschedulable", None), ("Running", None, None), ("Failed", "OOMKilled", 137)]
    messages = published.all("job-oom")
    assert all(m["source"] == "kubernetes" and m["v"] == 1 for m in messages)
    uid = job_obj["metadata"]["uid"]
    assert [m["event_id"] for m in messages if "state" in m] == [f"{uid}:Pending:Unschedulable", f"{uid}:Running:", f"{uid}:Failed:OOMKilled"]
    assert messages[0]["message"].startswith("0/2 nodes are available")

    store, status_sync = sync
    submitted(store, job, job_obj)
    apply_all(status_sync, messages)
    final = store.get("job-oom")
    assert (final.status, final.status_reason, final.failure_class, final.exit_code) == (JobStatus.FAILED, "OOMKilled", FailureClass.USER, 137)
    assert final.started_at == T0 and final.finished_at == T0


def test_image_pull_waits_then_fails_after_the_grace(cluster: Cluster, start_watcher: Any, clock: Clock, sync: Any) -> None:
    job, job_obj = cluster.job("job-pull")
    cluster.pod(job_obj, pulling())
    watcher, published = start_watcher(image_pull_grace_seconds=60)
    published.wait(lambda: published.states("job-pull") == [("Waiting", "ImagePullBackOff", None)], "Waiting")

    clock.advance(59)
    settle(watcher)
    assert published.states("job-pull") == [("Waiting", "ImagePullBackOff", None)]  # still within the grace
    clock.advance(1)
    published.wait(lambda: len(published.states("job-pull")) == 2, "Failed after the grace")
    settle(watcher)
    assert published.states("job-pull") == [("Waiting", "ImagePullBackOff", None), ("Failed", "ImagePullBackOff", None)]
    assert "still failing after 60s" in published.all("job-pull")[-1]["message"]

    store, status_sync = sync
    submitted(store, job, job_obj)
    apply_all(status_sync, published.all("job-pull"))
    final = store.get("job-pull")
    assert (final.status, final.status_reason, final.failure_class, final.exit_code) == (JobStatus.FAILED, "ImagePullBackOff", FailureClass.USER, None)


def test_complete_with_logs(cluster: Cluster, start_watcher: Any, k8s: WatchableFakeKubernetesAPI, sync: Any) -> None:
    job, job_obj = cluster.job("job-ok")
    pod = cluster.pod(job_obj, running())
    k8s.append_pod_log(NS, pod, 'loading model\nPROGRESS {"step": 1, "total": 2}\n')
    watcher, published = start_watcher()
    published.wait(lambda: published.seqs("job-ok") == [1, 2], "the first two lines")
    k8s.append_pod_log(NS, pod, 'PROGRESS {"step": 2, "total": 2}\nsaved\n')
    cluster.pod_status(pod, terminated("Completed", 0))
    cluster.job_status(job_obj, JOB_COMPLETE)
    published.wait(lambda: published.seqs("job-ok") == [1, 2, 3, 4] and len(published.states("job-ok")) == 2, "all lines and Complete")
    settle(watcher)
    assert published.states("job-ok") == [("Running", None, None), ("Complete", "Completed", 0)]
    lines = [line for m in published.all("job-ok") for line in m.get("logs", [])]
    assert [l["message"] for l in lines] == ["loading model", 'PROGRESS {"step": 1, "total": 2}', 'PROGRESS {"step": 2, "total": 2}', "saved"]
    assert all(l["stream"] == "stdout" and l["timestamp"].endswith("Z") for l in lines)

    store, status_sync = sync
    submitted(store, job, job_obj)
    apply_all(status_sync, published.all("job-ok"))
    final = store.get("job-ok")
    assert (final.status, final.status_reason, final.exit_code, final.log_count) == (JobStatus.SUCCEEDED, "Completed", 0, 4)
    assert final.progress == {"step": 2, "total": 2}
    assert [l.message for l in store.get_logs("job-ok")][-1] == "saved"


def test_job_deleted_while_running(cluster: Cluster, start_watcher: Any, k8s: WatchableFakeKubernetesAPI, sync: Any) -> None:
    job, job_obj = cluster.job("job-del")
    cluster.pod(job_obj, running())
    watcher, published = start_watcher(follow_logs=False)
    published.wait(lambda: published.states("job-del") == [("Running", None, None)], "Running")
    k8s.delete_object("jobs", NS, job_obj["metadata"]["name"], propagation="Background")  # the pod goes too
    published.wait(lambda: len(published.states("job-del")) == 2, "Deleted")
    settle(watcher)
    assert published.states("job-del") == [("Running", None, None), ("Deleted", None, None)]
    assert k8s.objects("pods", NS) == []

    store, status_sync = sync
    submitted(store, job, job_obj)
    apply_all(status_sync, published.all("job-del"))
    final = store.get("job-del")
    assert (final.status, final.status_reason, final.failure_class) == (JobStatus.FAILED, "JobDeleted", FailureClass.INFRA)


@pytest.mark.parametrize("gone_as_http", [False, True], ids=["error-event", "http-410"])
def test_410_gone_relists_without_duplicates_or_misses(k8s: WatchableFakeKubernetesAPI, cluster: Cluster, start_watcher: Any, gone_as_http: bool) -> None:
    k8s.gone_as_http = gone_as_http
    _, job_a = cluster.job("job-a")
    pod_a = cluster.pod(job_a, unschedulable())
    _, job_b = cluster.job("job-b")
    cluster.pod(job_b, running())
    watcher, published = start_watcher(follow_logs=False)
    published.wait(lambda: len(published.states("job-a")) == 1 and len(published.states("job-b")) == 1, "both jobs' first states")
    watching(k8s, published)
    lists_before = dict(watcher.lists)

    with k8s.paused():  # the watcher sees none of this through its watches...
        cluster.pod_status(pod_a, running())
        k8s.delete_object("jobs", NS, job_b["metadata"]["name"], propagation="Background")
        k8s.compact()  # ...and the history it would resume from is gone: 410 on reconnect
    published.wait(lambda: len(published.states("job-a")) == 2 and len(published.states("job-b")) == 2, "the changes, found by re-listing")
    settle(watcher)

    assert published.states("job-a") == [("Pending", "Unschedulable", None), ("Running", None, None)]
    assert published.states("job-b") == [("Running", None, None), ("Deleted", None, None)]
    assert watcher.lists == {"jobs": lists_before["jobs"] + 1, "pods": lists_before["pods"] + 1}
    for resource in ("jobs", "pods"):
        watches = k8s.watches(resource)
        assert any(expired for _, _, expired in watches), f"no 410 on {resource}"
        # After the 410, the next watch starts from the new list's resourceVersion, which is current.
        after = watches[[i for i, w in enumerate(watches) if w[2]][-1] + 1 :]
        assert after and not after[0][2] and int(after[0][1]) >= k8s.compacted_rv
    # Nothing was published twice (each event id once).
    ids = [m["event_id"] for m in published.all() if "event_id" in m]
    assert len(ids) == len(set(ids)) == 4


def test_dropped_watch_reconnects_from_its_resource_version(k8s: WatchableFakeKubernetesAPI, cluster: Cluster, start_watcher: Any) -> None:
    _, job_obj = cluster.job("job-drop")
    pod = cluster.pod(job_obj, unschedulable())
    watcher, published = start_watcher(follow_logs=False)
    published.wait(lambda: len(published.states("job-drop")) == 1, "Pending")
    watching(k8s, published)
    watched_from = k8s.watches("pods")[-1][1]

    with k8s.paused():  # the change is made while the connection is up, then the connection is cut
        cluster.pod_status(pod, running())
    published.wait(lambda: len(published.states("job-drop")) == 2, "Running after the reconnect")
    k8s.drop_streams()  # an idle connection cut: the watcher just watches again
    cluster.pod_status(pod, terminated("OOMKilled", 137))
    cluster.job_status(job_obj, job_failed())
    published.wait(lambda: len(published.states("job-drop")) == 3, "Failed after the second reconnect")
    settle(watcher)

    assert published.states("job-drop") == [("Pending", "Unschedulable", None), ("Running", None, None), ("Failed", "OOMKilled", 137)]
    assert watcher.lists == {"jobs": 1, "pods": 1}  # resumed, never re-listed
    pods_watches = k8s.watches("pods")
    assert len(pods_watches) >= 3 and not any(expired for _, _, expired in pods_watches)
    assert pods_watches[1][1] == watched_from  # the first reconnect resumed where it was


def test_logs_batched_in_order_with_seqs_and_a_dropped_log_stream(k8s: WatchableFakeKubernetesAPI, cluster: Cluster, start_watcher: Any) -> None:
    _, job_obj = cluster.job("job-logs")
    pod = cluster.pod(job_obj, running())
    k8s.append_pod_log(NS, pod, "".join(f"line {i}\n" for i in range(1, 8)))
    watcher, published = start_watcher(log_batch_lines=3, log_batch_seconds=0.05)
    published.wait(lambda: published.seqs("job-logs") == list(range(1, 8)), "7 lines")
    k8s.drop_streams()  # the log connection breaks: the follower reads again and skips what it had
    k8s.append_pod_log(NS, pod, "".join(f"line {i}\n" for i in range(8, 13)))
    published.wait(lambda: published.seqs("job-logs") == list(range(1, 13)), "12 lines after the reconnect")
    cluster.pod_status(pod, terminated("Completed", 0))
    settle(watcher)

    batches = [m["logs"] for m in published.all("job-logs") if "logs" in m]
    assert all(1 <= len(b) <= 3 for b in batches)
    assert [l["message"] for b in batches for l in b] == [f"line {i}" for i in range(1, 13)]
    assert len(k8s.calls("GET", r"/pods/.+/log$")) >= 2
    assert all("state" not in m for m in published.all("job-logs") if "logs" in m)


def test_restart_republishes_nothing_new_and_resends_logs_with_the_same_seqs(
    k8s: WatchableFakeKubernetesAPI, cluster: Cluster, start_watcher: Any, sync: Any
) -> None:
    job, job_obj = cluster.job("job-restart")
    pod = cluster.pod(job_obj, unschedulable())
    first, before = start_watcher()
    published_wait = before.wait
    cluster.pod_status(pod, running())
    k8s.append_pod_log(NS, pod, "a\nb\nc\n")
    published_wait(lambda: before.seqs("job-restart") == [1, 2, 3] and len(before.states("job-restart")) == 2, "Running and 3 lines")
    first.stop()
    assert first.join(5)

    store, status_sync = sync
    submitted(store, job, job_obj)
    apply_all(status_sync, before.all("job-restart"))
    applied = store.get("job-restart")
    assert (applied.status, applied.log_count) == (JobStatus.RUNNING, 3)

    k8s.append_pod_log(NS, pod, "d\ne\n")  # while no watcher runs
    second, after = start_watcher()
    after.wait(lambda: after.seqs("job-restart") == [1, 2, 3, 4, 5], "all 5 lines again")
    settle(second)
    # The restarted watcher's only state event is the one already applied, under the same event id.
    assert [m["event_id"] for m in after.all("job-restart") if "state" in m] == [
        m["event_id"] for m in before.all("job-restart") if m.get("state") == "Running"
    ]
    resent = [l for m in after.all("job-restart") for l in m.get("logs", [])]
    assert [(l["seq"], l["message"]) for l in resent] == [(1, "a"), (2, "b"), (3, "c"), (4, "d"), (5, "e")]

    apply_all(status_sync, after.all("job-restart"))
    again = store.get("job-restart")
    assert (again.status, again.log_count, again.started_at) == (JobStatus.RUNNING, 5, applied.started_at)
    assert [l.message for l in store.get_logs("job-restart")] == ["a", "b", "c", "d", "e"]

    cluster.pod_status(pod, terminated("OOMKilled", 137))
    cluster.job_status(job_obj, job_failed())
    after.wait(lambda: len(after.states("job-restart")) == 2, "Failed")
    settle(second)
    assert after.states("job-restart") == [("Running", None, None), ("Failed", "OOMKilled", 137)]
    apply_all(status_sync, [m for m in after.all("job-restart") if m.get("state") == "Failed"])
    final = store.get("job-restart")
    assert (final.status, final.status_reason, final.failure_class, final.exit_code, final.log_count) == (
        JobStatus.FAILED,
        "OOMKilled",
        FailureClass.USER,
        137,
        5,
    )


def test_observe_job_one_shot(k8s: WatchableFakeKubernetesAPI, cluster: Cluster) -> None:
    api = client.ApiClient(client.Configuration(host=k8s.url))
    batch, core = client.BatchV1Api(api), client.CoreV1Api(api)
    _, job_obj = cluster.job("job-observe")
    name = job_obj["metadata"]["name"]
    pod = cluster.pod(job_obj, pulling())
    scheduled = datetime.now(UTC)
    status = pulling()
    status["conditions"][0]["lastTransitionTime"] = scheduled.strftime("%Y-%m-%dT%H:%M:%SZ")
    cluster.pod_status(pod, status)

    soon = observe_job(batch, core, NS, name, now=scheduled + timedelta(seconds=10), image_pull_grace_seconds=60)
    assert soon is not None and (soon.state, soon.reason) == ("Waiting", "ImagePullBackOff")
    late = observe_job(batch, core, NS, name, now=scheduled + timedelta(seconds=120), image_pull_grace_seconds=60)
    assert late is not None and (late.state, late.reason) == ("Failed", "ImagePullBackOff")

    cluster.pod_status(pod, terminated("OOMKilled", 137))
    cluster.job_status(job_obj, job_failed())
    done = observe_job(batch, core, NS, name)
    assert done is not None and (done.state, done.reason, done.exit_code) == ("Failed", "OOMKilled", 137)
    assert observe_job(batch, core, NS, "no-such-job").state == "Deleted"  # type: ignore[union-attr]


def test_stop_ends_every_thread_promptly(k8s: WatchableFakeKubernetesAPI, cluster: Cluster, start_watcher: Any) -> None:
    _, job_obj = cluster.job("job-stop")
    pod = cluster.pod(job_obj, running())
    k8s.append_pod_log(NS, pod, "one\n")
    watcher, published = start_watcher(watch_timeout_seconds=300)
    published.wait(lambda: published.seqs("job-stop") == [1], "the log line")
    started = time.monotonic()
    watcher.stop()
    assert watcher.join(3)
    assert time.monotonic() - started < 1.0  # the open watches and the log stream were cut, not waited out


def test_build_watcher_publishes_to_training_events_ordered_by_job(k8s: WatchableFakeKubernetesAPI, cluster: Cluster) -> None:
    from functions.watcher import build_watcher
    from shared.settings import Settings

    class RecordingBus:
        kind = "recording"

        def __init__(self) -> None:
            self.sent: list[tuple[str, dict[str, Any], str | None]] = []

        def publish(self, topic: str, data: dict[str, Any], *, attributes: dict[str, str] | None = None, ordering_key: str | None = None) -> str:
            self.sent.append((topic, data, ordering_key))
            return str(len(self.sent))

    cluster.pod(cluster.job("job-entry")[1], running())
    bus = RecordingBus()
    settings = Settings(K8S_NAMESPACE=NS, TOPIC_TRAINING_EVENTS="events-topic")
    watcher = build_watcher(settings, bus=bus, api_client=client.ApiClient(client.Configuration(host=k8s.url)))
    watcher.follow_logs = False
    watcher.start()
    try:
        deadline = time.monotonic() + WAIT
        while not bus.sent and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        watcher.stop()
        assert watcher.join(5)
    assert [(t, d["state"], k) for t, d, k in bus.sent] == [("events-topic", "Running", "job-entry")]


def test_entry_point_runs_until_sigterm(k8s: WatchableFakeKubernetesAPI, tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys

    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: fake\n"
        f"clusters: [{{name: fake, cluster: {{server: '{k8s.url}'}}}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: fake, context: {cluster: fake, user: u}}]\n"
    )
    env = {
        **os.environ,
        "K8S_KUBECONFIG": str(kubeconfig),
        "K8S_NAMESPACE": NS,
        "GOOGLE_CLOUD_PROJECT": "p",
        "PUBSUB_EMULATOR_HOST": "127.0.0.1:9",
        "PYTHONUNBUFFERED": "1",
    }
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen([sys.executable, "-m", "functions.watcher"], cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            if "watching 0 Jobs and 0 Pods" in line or not line:
                break
        assert any("watching 0 Jobs and 0 Pods in default" in l for l in lines), "".join(lines)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        assert "cluster watcher stopped" in proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
