"""The Kubernetes backend through the official client, over real HTTP, against tests/fakes' API server,
driven by the launcher's use case with a real SQLite store: exactly once under redelivery, crashes,
5xx and timeouts; permanent errors fail the job with a reason; secrets stay out of everything stored."""

from __future__ import annotations

import base64
import json
import logging
import socket
from pathlib import Path

import kubernetes.client as k8s_client
import pytest

from shared.adapters.kubernetes.backend import DRY_RUN_REASON, KubernetesBackend
from shared.adapters.kubernetes.config import KubernetesSettings
from shared.adapters.sqlite_store import SqliteJobStore
from shared.domain import naming
from shared.domain.backends.kubernetes import KUBERNETES
from shared.domain.status import FailureClass, JobStatus
from shared.errors import PermanentError, TransientError
from shared.messages import Message
from shared.usecases.launching import Launcher
from shared.usecases.service import OP_CANCEL, OP_SUBMIT, launch_message
from tests.fakes import FakeKubernetesAPI
from tests.fakes.backends import make_k8s_backend as make_backend
from tests.fakes.jobs import JOB_ID, README_KUBERNETES, README_VERTEX, job_from

SECRET = "hf_xxx"
JOB_NAME = "aml-qlora-k8s-4e6f8a90"
SECRET_NAME = "aml-qlora-k8s-4e6f8a90-env"
TIMEOUT = (2.0, 5.0)  # (connect, read) for ordinary calls: generous, a busy CI box must not flake
SHORT_TIMEOUT = (1.0, 0.5)  # for the injected-stall tests: a stall costs half a second


@pytest.fixture
def fake():
    with FakeKubernetesAPI(namespaces=("default", "ml-jobs")) as server:
        yield server


class Harness:
    """A launcher over a real SQLite store with one job from the README's Kubernetes example."""

    def __init__(self, tmp_path: Path, backend: KubernetesBackend, body=README_KUBERNETES, job_id: str = JOB_ID):
        self.db = tmp_path / "jobs.db"
        self.store = SqliteJobStore(self.db)
        self.backend = backend
        self.launcher = Launcher(store=self.store, backends={KUBERNETES: backend})
        self.job, self.env = job_from(body, job_id)
        self.store.create(self.job)
        self.deliveries = 0

    def deliver(self, op: str = OP_SUBMIT, env: dict | None = None) -> None:
        if op == OP_CANCEL:  # what the api's cancel does before it publishes the op
            self.store.update(
                self.job.id, lambda j: None if j.is_final() or j.cancel_requested else j.replace(status=JobStatus.CANCELLING, cancel_requested=True)
            )
        self.deliveries += 1
        data = launch_message(self.job.id, op, self.env if env is None else env)
        self.launcher.handle(Message(id=f"m{self.deliveries}", topic="train-requests", data=data, delivery_attempt=self.deliveries))

    def restart_with(self, backend: KubernetesBackend) -> None:
        """The next delivery reaches a fresh launcher instance (as Pub/Sub's redelivery would) over this backend."""
        self.backend = backend
        self.launcher = Launcher(store=self.store, backends={KUBERNETES: backend})

    def current(self):
        return self.store.get(self.job.id)

    def stored_bytes(self) -> bytes:
        return b"".join(p.read_bytes() for p in self.db.parent.glob("jobs.db*"))


def assert_no_secret(*texts: str | bytes) -> None:
    for text in texts:
        raw = text if isinstance(text, bytes) else text.encode()
        assert SECRET.encode() not in raw
        assert base64.b64encode(SECRET.encode()) not in raw


# ---- dry run ---------------------------------------------------------------------------------------


def test_dry_run_sends_nothing_and_stores_the_redacted_manifest(fake, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    h = Harness(tmp_path, make_backend(fake, apply=False))
    h.deliver()
    job = h.current()
    assert job.status is JobStatus.SUBMITTED and job.dry_run
    assert job.status_reason == DRY_RUN_REASON and "K8S_APPLY=0" in job.status_reason
    assert job.external_id == f"default/{JOB_NAME}"
    assert [i["kind"] for i in job.manifest["items"]] == ["Secret", "Job"]
    assert job.manifest["items"][0]["stringData"] == {"HF_TOKEN": "[redacted]"}
    assert fake.requests == []  # nothing sent, and no client was even needed
    assert_no_secret(h.stored_bytes(), json.dumps(job.to_summary()), caplog.text)
    # A cancel of a dry run has nothing to delete: the launcher skips it.
    h.deliver(OP_CANCEL)
    assert fake.requests == []


def test_dry_run_never_builds_a_client():
    def explode(cfg):
        raise AssertionError("no client for a dry run")

    backend = KubernetesBackend(KubernetesSettings(image="img"), api_client_factory=explode)
    job, env = job_from(README_KUBERNETES)
    sub = backend.submit(job, env)
    assert sub.dry_run and sub.external_id == f"default/{JOB_NAME}"


# ---- apply: exactly once ---------------------------------------------------------------------------


def test_ten_deliveries_make_one_job_and_one_owned_secret(fake, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    h = Harness(tmp_path, make_backend(fake))
    for _ in range(10):
        h.deliver()
    job = h.current()
    assert job.status is JobStatus.SUBMITTED and not job.dry_run and job.status_reason is None
    assert job.external_id == f"default/{JOB_NAME}"
    jobs = fake.objects("jobs", "default", selector=naming.k8s_job_selector(JOB_ID))
    secrets = fake.objects("secrets", "default", selector=naming.k8s_job_selector(JOB_ID))
    assert [j["metadata"]["name"] for j in jobs] == [JOB_NAME]
    assert [s["metadata"]["name"] for s in secrets] == [SECRET_NAME]
    assert len(fake.calls("POST", "/jobs$")) == 1 and len(fake.calls("POST", "/secrets$")) == 1
    # The Secret is owned by the Job and carries the value; the Job reads it by reference.
    owner = secrets[0]["metadata"]["ownerReferences"]
    assert owner == [{"apiVersion": "batch/v1", "kind": "Job", "name": JOB_NAME, "uid": jobs[0]["metadata"]["uid"]}]
    assert base64.b64decode(secrets[0]["data"]["HF_TOKEN"]).decode() == SECRET
    container = jobs[0]["spec"]["template"]["spec"]["containers"][0]
    assert container["env"] == [{"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": SECRET_NAME, "key": "HF_TOKEN"}}}]
    assert jobs[0]["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    # Order of writes: Secret first, then the Job, then the Secret's ownerReference.
    writes = [(r.method, r.path.rsplit("/namespaces/default/", 1)[1]) for r in fake.requests if r.method != "GET"]
    assert writes == [("POST", "secrets"), ("POST", "jobs"), ("PATCH", f"secrets/{SECRET_NAME}")]
    # What we stored and logged has no secret value; only the Secret's own create carried it.
    assert_no_secret(h.stored_bytes(), json.dumps(job.to_summary()), json.dumps(job.manifest), caplog.text)
    carrying = [r for r in fake.requests if SECRET.encode() in r.raw]
    assert [(r.method, r.path) for r in carrying] == [("POST", "/api/v1/namespaces/default/secrets")]


def test_crash_after_create_adopts_the_existing_job(fake, tmp_path):
    h = Harness(tmp_path, make_backend(fake))
    # The first attempt created everything, then the process died before recording it.
    h.backend.submit(h.job, h.env)
    h.store.update(h.job.id, lambda j: j.replace(status=JobStatus.SUBMITTING))
    first_uid = fake.get("jobs", "default", JOB_NAME)["metadata"]["uid"]
    fake.reset_log()
    h.deliver()
    job = h.current()
    assert job.status is JobStatus.SUBMITTED and job.external_id == f"default/{JOB_NAME}"
    assert [j["metadata"]["uid"] for j in fake.objects("jobs")] == [first_uid]
    assert [r.status for r in fake.calls("POST")] == [409, 409]  # Secret and Job both adopted
    assert fake.calls("PATCH") == []  # the Secret was already owned: nothing to write


def test_crash_between_secret_and_job_is_repaired(fake, tmp_path):
    h = Harness(tmp_path, make_backend(fake))
    fake.inject("POST", "/jobs$", status=500)
    with pytest.raises(TransientError):
        h.deliver()
    assert h.current().status is JobStatus.SUBMITTING
    orphan = fake.get("secrets", "default", SECRET_NAME)
    assert orphan is not None and "ownerReferences" not in orphan["metadata"]
    h.deliver()
    job_obj = fake.get("jobs", "default", JOB_NAME)
    secret = fake.get("secrets", "default", SECRET_NAME)
    assert secret["metadata"]["ownerReferences"][0]["uid"] == job_obj["metadata"]["uid"]
    assert h.current().status is JobStatus.SUBMITTED and len(fake.objects("jobs")) == 1


@pytest.mark.parametrize("status", [500, 503, 429, 504])
def test_transient_statuses_are_retried_then_one_job(fake, tmp_path, status):
    h = Harness(tmp_path, make_backend(fake))
    fake.inject("POST", "/jobs$", status=status, times=2)
    for _ in range(2):
        with pytest.raises(TransientError) as info:
            h.deliver()
        assert f"HTTP {status}" in str(info.value)
        assert h.current().status is JobStatus.SUBMITTING
    h.deliver()
    assert h.current().status is JobStatus.SUBMITTED
    assert len(fake.objects("jobs")) == 1 and len(fake.objects("secrets")) == 1


def test_timeout_after_the_server_created_the_job_adopts_it(fake, tmp_path):
    h = Harness(tmp_path, make_backend(fake, timeout=SHORT_TIMEOUT))
    fake.inject("POST", "/jobs$", delay=2.0, apply=True)  # created, but the answer comes too late
    with pytest.raises(TransientError) as info:
        h.deliver()
    assert "Timeout" in str(info.value)
    assert len(fake.objects("jobs")) == 1  # it exists; the store doesn't know yet
    h.restart_with(make_backend(fake))  # the redelivery runs with ordinary timeouts: only the injected stall is short
    h.deliver()
    assert h.current().status is JobStatus.SUBMITTED
    assert len(fake.objects("jobs")) == 1
    assert [r.status for r in fake.calls("POST", "/jobs$")] == [None, 409]


def test_connection_refused_is_transient(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    configuration = k8s_client.Configuration(host=f"http://127.0.0.1:{port}")
    configuration.retries = False
    backend = KubernetesBackend(KubernetesSettings(image="img", apply=True), api_client=k8s_client.ApiClient(configuration), request_timeout=SHORT_TIMEOUT)
    job, env = job_from(README_KUBERNETES)
    with pytest.raises(TransientError) as info:
        backend.submit(job, env)
    assert isinstance(info.value.__cause__, Exception) and SECRET not in str(info.value)


# ---- permanent errors ------------------------------------------------------------------------------


def test_forbidden_fails_the_job_with_reason_and_class_and_cleans_up(fake, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    h = Harness(tmp_path, make_backend(fake))
    fake.inject("POST", "/jobs$", status=403)
    h.deliver()  # acked: no exception
    job = h.current()
    assert job.status is JobStatus.FAILED
    assert job.status_reason == "Forbidden" and job.failure_class is FailureClass.INFRA
    assert "HTTP 403" in job.error and f"create Job default/{JOB_NAME}" in job.error
    assert fake.objects("jobs") == [] and fake.objects("secrets") == []  # the Secret it made is deleted
    assert_no_secret(h.stored_bytes(), job.error, caplog.text)
    h.deliver()  # redelivery of a failed job does nothing
    assert len(fake.calls("POST", "/jobs$")) == 1


def test_missing_namespace_is_permanent_not_found(fake, tmp_path):
    h = Harness(tmp_path, make_backend(fake, namespace="nope"))
    h.deliver()
    job = h.current()
    assert job.status is JobStatus.FAILED and job.status_reason == "NotFound"
    assert 'namespaces "nope" not found' in job.error


def test_server_side_invalid_is_permanent(fake, tmp_path):
    h = Harness(tmp_path, make_backend(fake))
    fake.inject("POST", "/secrets$", status=422)
    h.deliver()
    job = h.current()
    assert job.status is JobStatus.FAILED and job.status_reason == "InvalidSpec" and job.failure_class is FailureClass.INFRA


def test_name_collision_with_another_jobs_object_is_refused(fake, tmp_path):
    fake.put("jobs", {"metadata": {"name": JOB_NAME, "namespace": "default", "labels": {naming.K8S_JOB_ID_LABEL: "someone-else"}}, "spec": {}})
    h = Harness(tmp_path, make_backend(fake), body=README_VERTEX | {"backend": "kubernetes", "job_name": "aml-qlora-k8s"})
    h.deliver()
    job = h.current()
    assert job.status is JobStatus.FAILED and job.status_reason == "NameCollision"
    assert fake.get("jobs", "default", JOB_NAME)["metadata"]["labels"][naming.K8S_JOB_ID_LABEL] == "someone-else"


def test_two_jobs_with_one_name_get_two_kubernetes_jobs(fake, tmp_path):
    other_id = "0b7e1f3a-1111-4c2d-8e9f-000000000001"
    backend = make_backend(fake)
    for job_id in (JOB_ID, other_id):
        job, env = job_from(README_KUBERNETES, job_id)
        backend.submit(job, env)
    names = sorted(j["metadata"]["name"] for j in fake.objects("jobs"))
    assert names == sorted([JOB_NAME, naming.k8s_job_name("aml-qlora-k8s", other_id)]) and len(set(names)) == 2
    assert [j["metadata"]["name"] for j in fake.objects("jobs", selector=naming.k8s_job_selector(other_id))] == [naming.k8s_job_name("aml-qlora-k8s", other_id)]


# ---- secrets on a retried launch -------------------------------------------------------------------


def test_relaunch_without_values_adopts_the_earlier_secret(fake, tmp_path):
    h = Harness(tmp_path, make_backend(fake))
    fake.inject("POST", "/jobs$", status=503)
    with pytest.raises(TransientError):
        h.deliver()
    h.deliver(env={})  # e.g. the embedded server's recovery, which has no secret values
    assert h.current().status is JobStatus.SUBMITTED
    secret = fake.get("secrets", "default", SECRET_NAME)
    assert base64.b64decode(secret["data"]["HF_TOKEN"]).decode() == SECRET and secret["metadata"]["ownerReferences"]


def test_relaunch_without_values_and_no_secret_fails_clearly(fake, tmp_path):
    h = Harness(tmp_path, make_backend(fake))
    h.deliver(env={})
    job = h.current()
    assert job.status is JobStatus.FAILED and job.status_reason == "SecretValuesUnavailable"
    assert fake.objects("jobs") == []


# ---- cancel ----------------------------------------------------------------------------------------


def test_cancel_deletes_the_job_in_the_foreground_and_its_secret_goes_with_it(fake, tmp_path):
    h = Harness(tmp_path, make_backend(fake))
    h.deliver()
    fake.put(
        "pods",
        {
            "metadata": {
                "name": f"{JOB_NAME}-abcde",
                "namespace": "default",
                "ownerReferences": [
                    {"apiVersion": "batch/v1", "kind": "Job", "name": JOB_NAME, "uid": fake.get("jobs", "default", JOB_NAME)["metadata"]["uid"]}
                ],
            }
        },
    )
    fake.reset_log()
    h.deliver(OP_CANCEL)
    delete = fake.calls("DELETE", f"/jobs/{JOB_NAME}$")
    assert len(delete) == 1 and delete[0].body["propagationPolicy"] == "Foreground" and delete[0].status == 200
    assert fake.objects("jobs") == [] and fake.objects("secrets") == [] and fake.objects("pods") == []
    assert h.current().status is JobStatus.CANCELLED  # deleted: no event will ever come from it
    assert h.backend.cancel(h.current()) is False  # already gone: not an error, and nothing runs
    assert fake.calls("DELETE", f"/jobs/{JOB_NAME}$")[-1].status == 404


def test_cancel_transient_and_permanent(fake, tmp_path):
    h = Harness(tmp_path, make_backend(fake))
    h.deliver()
    job = h.current()
    fake.inject("DELETE", "/jobs/", status=503)
    with pytest.raises(TransientError):
        h.backend.cancel(job)
    fake.inject("DELETE", "/jobs/", status=403)
    with pytest.raises(PermanentError) as info:
        h.backend.cancel(job)
    assert info.value.reason == "Forbidden"
    assert h.backend.cancel(job) is True
    assert fake.objects("jobs") == []


# ---- the fake itself (the watcher and the benchmark build on it) ----------------------------------


def test_fake_label_selectors_resource_versions_and_watch(fake):
    api = k8s_client.ApiClient(k8s_client.Configuration(host=fake.url))
    core = k8s_client.CoreV1Api(api)
    for name, labels in [("a", {"tier": "gpu", "team": "x"}), ("b", {"tier": "cpu"}), ("c", {})]:
        core.create_namespaced_pod(
            "default", {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels}, "spec": {"containers": [{"name": "c", "image": "i"}]}}
        )

    def names(selector):
        raw = core.list_namespaced_pod("default", label_selector=selector, _preload_content=False)
        return [p["metadata"]["name"] for p in json.loads(raw.data)["items"]]

    assert names("tier=gpu") == ["a"]
    assert names("tier!=gpu") == ["b", "c"]
    assert names("tier in (gpu,cpu)") == ["a", "b"]
    assert names("tier notin (gpu)") == ["b", "c"]
    assert names("team") == ["a"] and names("!team") == ["b", "c"]
    assert names("tier=gpu,team=y") == []
    versions = [int(p["metadata"]["resourceVersion"]) for p in fake.objects("pods")]
    assert versions == sorted(versions) and len(set(versions)) == 3
    before = fake.get("pods", "default", "a")["metadata"]["resourceVersion"]
    fake.set_status("pods", "default", "a", {"phase": "Running"})
    assert int(fake.get("pods", "default", "a")["metadata"]["resourceVersion"]) > int(before)

    raw = core.list_namespaced_pod("default", watch=True, resource_version=before, timeout_seconds=1, label_selector="tier=gpu", _preload_content=False)
    events = [json.loads(line) for line in raw.data.decode().splitlines() if line]
    assert [(e["type"], e["object"]["status"]["phase"]) for e in events] == [("MODIFIED", "Running")]
