"""Per-job resources on Kubernetes (issue 15): `POST /train` on the embedded server's Kubernetes dry run
shows the manifest it would create (4 H100s with a deadline and a 4-process launch; 2 nodes x 8 GPUs
as an Indexed Job with its headless Service); a real launch against the fake API server creates the
Job, its Service and its Secret, both owned by the Job, exactly once; and the fake runs a two-index
job through the cluster watcher and status_sync: `running` once both indexes run, `failed` naming the
index that failed, each node's log lines tagged with it."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes.client as k8s_client
import pytest
import requests

from functions.dev.embedded import build_embedded
from functions.http.asgi import AsgiApi
from shared.adapters.kubernetes.backend import KubernetesBackend
from shared.adapters.kubernetes.config import KubernetesSettings
from shared.adapters.kubernetes.manifests import job_name
from shared.adapters.kubernetes.watcher import ClusterWatcher
from shared.adapters.sqlite_store import SqliteJobStore
from shared.domain.backends.kubernetes import KUBERNETES
from shared.domain.status import FailureClass, JobStatus
from shared.errors import TransientError
from shared.messages import Message
from shared.settings import Settings
from shared.usecases.launching import Launcher
from shared.usecases.service import OP_CANCEL, OP_SUBMIT, launch_message
from shared.usecases.status_sync import StatusSync
from tests.fakes.clock import Clock
from tests.fakes.jobs import README_KUBERNETES, job_from
from tests.fakes.kubernetes_watch import WatchableFakeKubernetesAPI
from tests.fakes.policy import BUILT_IN_RULES
from tests.fakes.polling import eventually

WAIT = 10.0
NS = "default"
INDEX = "batch.kubernetes.io/job-completion-index"


# ---- POST /train on the embedded server's dry run ---------------------------------------------------
@pytest.fixture
def embedded(tmp_path: Path, serve) -> Iterator[tuple[Any, str]]:
    settings = Settings(
        K8S_TRAINING_IMAGE="us-docker.pkg.dev/p/r/trainer:1",
        SQLITE_PATH=str(tmp_path / "embedded.db"),
        RECONCILE_INTERVAL_SECONDS=0,
        DEFAULT_TRAINING_BACKEND="kubernetes",
    )
    c = build_embedded(settings)
    try:
        yield c, serve(AsgiApi(c.api), asgi=True).url
    finally:
        c.bus.stop()
        c.store.close()


def train(url: str, resources: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """POST /train, wait for the dry run to end `submitted`, return (summary, GET /manifest)."""
    r = requests.post(f"{url}/train", json={**README_KUBERNETES, "resources": resources}, timeout=10)
    assert r.status_code == 202, r.text
    job_id = r.json()["job"]["id"]
    job = eventually(lambda: (j := requests.get(f"{url}/jobs/{job_id}", timeout=5).json()["job"])["status"] == "submitted" and j, WAIT, "the dry run")
    manifest = requests.get(f"{url}/jobs/{job_id}/manifest", timeout=5)
    assert manifest.status_code == 200
    return job, manifest.json()


def parts(view: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    kjob = next(o for o in view["objects"] if o["kind"] == "Job")
    pod = kjob["spec"]["template"]["spec"]
    return kjob, pod, pod["containers"][0]


def test_post_train_four_h100s_with_a_deadline_shows_its_manifest(embedded) -> None:
    _, url = embedded
    job, view = train(url, {"gpus": 4, "gpu_type": "H100", "max_duration_minutes": 720})
    assert job["dryRun"] is True and job["resources"] == {"gpus": 4, "gpu_type": "H100", "max_duration_minutes": 720}
    assert view["backend"] == "kubernetes" and view["dryRun"] is True
    assert [o["kind"] for o in view["objects"]] == ["Secret", "Job"]
    assert view["objects"][0]["stringData"] == {"HF_TOKEN": "[redacted]"} and "hf_xxx" not in str(view)
    kjob, pod, container = parts(view)
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "4" and container["resources"]["requests"]["nvidia.com/gpu"] == "4"
    assert pod["nodeSelector"]["cloud.google.com/gke-accelerator"] == "nvidia-h100-80gb"
    assert kjob["spec"]["activeDeadlineSeconds"] == 720 * 60
    assert container["command"] == ["python", "-m", "trainer.launch"] and container["args"][:2] == ["--nproc_per_node=4", "--"]
    assert container["args"][2:] == job["args"]  # the train.py flags, after the launcher's
    assert {"mountPath": "/dev/shm", "name": "dshm"} in container["volumeMounts"]


def test_post_train_two_nodes_of_eight_is_an_indexed_job_and_its_service(embedded) -> None:
    _, url = embedded
    _, view = train(url, {"nodes": 2, "gpus": 8})
    assert [o["kind"] for o in view["objects"]] == ["Secret", "Job", "Service"]
    kjob, pod, container = parts(view)
    service = view["objects"][2]
    assert (kjob["spec"]["completionMode"], kjob["spec"]["completions"], kjob["spec"]["parallelism"]) == ("Indexed", 2, 2)
    assert service["spec"]["clusterIP"] == "None" and pod["subdomain"] == service["metadata"]["name"] == kjob["metadata"]["name"]
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}
    assert env["PET_NNODES"] == "2" and env["PET_NPROC_PER_NODE"] == "8" and env["PET_MASTER_PORT"] == "29500"
    assert env["PET_MASTER_ADDR"] == f"{kjob['metadata']['name']}-0.{service['metadata']['name']}"
    assert env["PET_NODE_RANK"] == {"fieldRef": {"fieldPath": f"metadata.annotations['{INDEX}']"}}


@pytest.mark.parametrize(
    "body, field",
    [
        ({"resources": {"gpus": 32}}, "resources.gpus"),
        ({"resources": {"gpu_type": "TPU"}}, "resources.gpu_type"),
        ({"resources": {"nodes": 2}, "backend": "local", "dataset_file": "/tmp/d.jsonl"}, "resources.nodes"),
    ],
)
def test_post_train_refuses_what_it_cant_place(embedded, body, field) -> None:
    c, url = embedded
    r = requests.post(f"{url}/train", json={**README_KUBERNETES, **body}, timeout=10)
    assert r.status_code == 400
    assert [e["field"] for e in r.json()["errors"]] == [field]
    assert requests.get(f"{url}/jobs", timeout=5).json()["jobs"] == []  # nothing stored, nothing published


# ---- a real launch against the fake API server ------------------------------------------------------
@pytest.fixture
def fake() -> Iterator[WatchableFakeKubernetesAPI]:
    with WatchableFakeKubernetesAPI(namespaces=(NS,)) as server:  # validate=True: the strict schema on every create
        yield server  # type: ignore[misc]


def backend_for(fake: WatchableFakeKubernetesAPI) -> KubernetesBackend:
    configuration = k8s_client.Configuration(host=fake.url)
    configuration.retries = False
    return KubernetesBackend(
        KubernetesSettings(image="trainer:1", apply=True, namespace=NS), api_client=k8s_client.ApiClient(configuration), request_timeout=(2.0, 5.0)
    )


class Launch:
    def __init__(self, tmp_path: Path, fake: WatchableFakeKubernetesAPI, resources: dict[str, Any]):
        self.store = SqliteJobStore(tmp_path / "jobs.db")
        self.launcher = Launcher(store=self.store, backends={KUBERNETES: backend_for(fake)})
        self.job, self.env = job_from({**README_KUBERNETES, "resources": resources})
        self.store.create(self.job)
        self.n = 0

    def deliver(self, op: str = OP_SUBMIT) -> None:
        if op == OP_CANCEL:
            self.store.update(self.job.id, lambda j: j.replace(status=JobStatus.CANCELLING, cancel_requested=True))
        self.n += 1
        data = launch_message(self.job.id, op, self.env)
        self.launcher.handle(Message(id=f"m{self.n}", topic="train-requests", data=data, delivery_attempt=self.n))


def test_a_two_node_launch_creates_the_job_its_service_and_secret_once(fake, tmp_path) -> None:
    launch = Launch(tmp_path, fake, {"nodes": 2, "gpus": 8, "gpu_type": "H100"})
    # The first attempt dies between the Job and its Service (a 500): the next one creates the Service.
    fake.inject("POST", "/services$", status=500)
    with pytest.raises(TransientError):
        launch.deliver()
    assert launch.store.get(launch.job.id).status is JobStatus.SUBMITTING
    assert len(fake.objects("jobs", NS)) == 1 and fake.objects("services", NS) == []
    for _ in range(3):  # then redelivered: adopted, never a second object
        launch.deliver()
    job = launch.store.get(launch.job.id)
    assert job.status is JobStatus.SUBMITTED and not job.dry_run
    [kjob] = fake.objects("jobs", NS)
    [service] = fake.objects("services", NS)
    [secret] = fake.objects("secrets", NS)
    uid = kjob["metadata"]["uid"]
    assert [r["uid"] for r in service["metadata"]["ownerReferences"]] == [uid]
    assert [r["uid"] for r in secret["metadata"]["ownerReferences"]] == [uid]
    assert kjob["spec"]["completionMode"] == "Indexed" and service["metadata"]["name"] == kjob["metadata"]["name"]
    assert [o["kind"] for o in job.manifest["items"]] == ["Secret", "Job", "Service"]
    # Cancel: the Job goes in the foreground, and its Service and Secret with it.
    launch.deliver(OP_CANCEL)
    assert fake.objects("jobs", NS) == [] and fake.objects("services", NS) == [] and fake.objects("secrets", NS) == []


# ---- the fake runs a two-index job: the watcher and status_sync ------------------------------------
class Published:
    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def __call__(self, message: dict[str, Any]) -> None:
        with self._lock:
            self.messages.append(message)

    def states(self) -> list[tuple]:
        with self._lock:
            return [(m["state"], m.get("reason")) for m in self.messages if "state" in m]

    def log_lines(self) -> list[str]:
        with self._lock:
            return [line["message"] for m in self.messages for line in m.get("logs", [])]


def running() -> dict[str, Any]:
    return {"phase": "Running", "containerStatuses": [{"name": "trainer", "state": {"running": {"startedAt": "2026-11-29T12:00:00Z"}}}]}


def failed(code: int, at: str) -> dict[str, Any]:
    return {"phase": "Failed", "containerStatuses": [{"name": "trainer", "state": {"terminated": {"reason": "Error", "exitCode": code, "finishedAt": at}}}]}


def test_a_two_index_job_runs_when_both_run_and_fails_naming_the_index(fake, tmp_path) -> None:
    launch = Launch(tmp_path, fake, {"nodes": 2, "gpus": 1})
    launch.deliver()
    [kjob] = fake.objects("jobs", NS)
    name = kjob["metadata"]["name"]
    pods = fake.start_pods(NS, name)
    assert [p["metadata"]["annotations"][INDEX] for p in (fake.get("pods", NS, n) for n in pods)] == ["0", "1"]
    assert fake.get("pods", NS, pods[1])["spec"]["hostname"] == f"{name}-1"

    clock, published = Clock(), Published()
    watcher = ClusterWatcher(
        k8s_client.ApiClient(k8s_client.Configuration(host=fake.url)),
        NS,
        published,
        clock=clock,
        watch_timeout_seconds=5,
        tick_seconds=0.02,
        retry_seconds=0.05,
        log_batch_seconds=0.05,
        log_drain_seconds=1.0,
    )
    watcher.start()
    try:
        assert watcher.wait_synced(WAIT)
        eventually(lambda: published.states() == [("Pending", None)], WAIT, "Pending")
        fake.set_status("pods", NS, pods[0], running())
        time.sleep(0.2)  # index 1 still pending: not running yet
        assert published.states() == [("Pending", None)]
        fake.append_pod_log(NS, pods[1], "loading the model on node 1\n")
        fake.set_status("pods", NS, pods[1], running())
        eventually(lambda: published.states()[-1:] == [("Running", None)], WAIT, "Running")
        eventually(lambda: "[node 1] loading the model on node 1" in published.log_lines(), WAIT, "node 1's log")
        # Index 1 fails first; the Job controller then ends index 0 and marks the Job failed.
        fake.set_status("pods", NS, pods[1], failed(1, "2026-11-29T12:05:00Z"))
        fake.set_status("pods", NS, pods[0], failed(143, "2026-11-29T12:05:02Z"))
        fake.set_status(
            "jobs",
            NS,
            name,
            {
                "failed": 2,
                "conditions": [
                    {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"}
                ],
            },
        )
        eventually(lambda: published.states()[-1:] and published.states()[-1][0] == "Failed", WAIT, "Failed")
    finally:
        watcher.stop()
        assert watcher.join(5)

    failure = [m for m in published.messages if m.get("state") == "Failed"][-1]
    assert failure["message"].startswith(f"index 1 (pod {pods[1]})") and failure["exit_code"] == 1

    store = launch.store
    store.update(launch.job.id, lambda j: j.replace(status=JobStatus.SUBMITTED))
    sync = StatusSync(store=store, max_log_chars=100_000, rules=BUILT_IN_RULES, clock=clock)
    for i, data in enumerate(published.messages):
        sync.handle(Message(id=f"e{i}", topic="training-events", data=data, ordering_key=data["job_id"]))
    job = store.get(launch.job.id)
    assert job.status is JobStatus.FAILED and job.failure_class is FailureClass.USER and job.exit_code == 1
    assert job.error and "index 1" in job.error
    timeline = [e.data.get("to") for e in store.list_events(job.id) if e.kind == "status"]
    assert "running" in timeline and timeline[-1] == "failed"


def test_a_service_name_taken_by_something_else_fails_the_job_and_leaves_no_job(fake, tmp_path) -> None:
    launch = Launch(tmp_path, fake, {"nodes": 2})
    name = job_name(launch.job)
    fake.put("services", {"metadata": {"name": name, "namespace": NS, "labels": {"app": "someone-else"}}, "spec": {"clusterIP": "None"}})
    launch.deliver()
    job = launch.store.get(launch.job.id)
    assert job.status is JobStatus.FAILED and job.status_reason == "NameCollision"
    assert fake.objects("jobs", NS) == [] and fake.objects("secrets", NS) == []  # the Secret went with its Job
    assert fake.get("services", NS, name)["metadata"]["labels"] == {"app": "someone-else"}  # theirs, untouched
