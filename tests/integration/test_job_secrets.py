"""A job's secret variables (`HF_TOKEN`, the per-source credentials in `TRAINING_PLATFORM_CREDENTIALS`)
reach the trainer on each backend and nothing else: the local process environment (with every leaf of
the credentials JSON redacted from the output), the per-job Kubernetes Secret owned by its Job, and on
Vertex a per-job Secret Manager secret the launcher creates, the trainer resolves at start, and
status_sync / reconcile delete once the job is final (at once when the submit is refused)."""

from __future__ import annotations

import base64
import json
import logging
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import kubernetes.client as k8s_client
import pytest
import requests
from google.auth.credentials import AnonymousCredentials
from google.cloud import aiplatform_v1

from shared.adapters.kubernetes.backend import KubernetesBackend
from shared.adapters.kubernetes.config import KubernetesSettings
from shared.adapters.local_backend import LocalBackend
from shared.adapters.sqlite_store import SqliteJobStore
from shared.adapters.vertex_backend import VertexBackend
from shared.adapters.vertex_secrets import JOB_SECRET_ENV, SecretManager, job_secret_id
from shared.adapters.vertex_settings import VertexSettings
from shared.domain.backends.kubernetes import KUBERNETES
from shared.domain.backends.vertex import VERTEX
from shared.domain.events import TrainingEvent
from shared.domain.redaction import redact, secret_values
from shared.domain.request import normalise_request
from shared.domain.status import JobStatus
from shared.errors import TransientError, ValidationFailed
from shared.messages import Message
from shared.settings import REPO_ROOT, Settings
from shared.usecases.launching import Launcher
from shared.usecases.reconcile import Reconciler
from shared.usecases.service import OP_SUBMIT, build_job, launch_message
from shared.usecases.status_sync import StatusSync
from tests.fakes import FakeKubernetesAPI, FakeVertexAPI
from tests.fakes.jobs import JOB_ID, README_KUBERNETES, README_VERTEX, job_from
from tests.fakes.policy import BUILT_IN_RULES
from trainer import job_secrets
from trainer.flags import CREDENTIALS_ENV

HF = "hf_job_secret_token_7731"
KEY_ID = "AKIAJOBSECRET0000001"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYJOBSECRETKEY"
SESSION = "FQoGZXIvYXdzE" + "s3ss10n" * 150  # a session token is long: ~1 KB
ARTIFACT_KEY = "artifactSecretKey/abc123XYZ"
ROLE = "arn:aws:iam::123456789012:role/studio-data-reader"
CREDENTIALS = {
    "datasets": [
        {"aws_access_key_id": KEY_ID, "aws_secret_access_key": SECRET_KEY, "aws_session_token": SESSION, "aws_region": "us-east-1"},
        None,
        {"role_arn": ROLE},
        # A large value (many sources, long session tokens) must pass too.
        *(
            {"aws_access_key_id": f"AKIAFILL{i:012d}", "aws_secret_access_key": f"fill-secret-{i}-" + "x" * 30, "aws_session_token": f"tok{i}" + SESSION}
            for i in range(8)
        ),
    ],
    "artifacts": {"aws_access_key_id": "AKIAARTIFACTS0000001", "aws_secret_access_key": ARTIFACT_KEY},
}
CREDS_JSON = json.dumps(CREDENTIALS)
LEAVES = [HF, KEY_ID, SECRET_KEY, SESSION, ARTIFACT_KEY, ROLE]
# As the studio's spec sets it: the platform's own variable (a request's `env` can't), named by its field.
PLATFORM_ENV = {CREDENTIALS_ENV: (CREDS_JSON, "datasets[0].auth")}
PROJECT = "acme-ml"
NOW = datetime(2026, 11, 29, 5, 0, tzinfo=UTC)


def secret_job(body: dict, job_id: str = JOB_ID, policy=None):
    """(the queued job, its secret env) as the api stores and publishes them, with the credentials."""
    from tests.fakes.policy import make_policy

    req = normalise_request(json.loads(json.dumps(body)), policy or make_policy(), platform_env=PLATFORM_ENV)
    return build_job(req, job_id=job_id, now=NOW, idempotency_key=None), dict(req.env)


def assert_clean(*texts: str | bytes) -> None:
    """No secret value, whole, as a leaf, or base64'd, in any of `texts`."""
    for text in texts:
        raw = text if isinstance(text, bytes) else text.encode()
        for value in [*LEAVES, CREDS_JSON]:
            assert value.encode() not in raw, value[:24]
            assert base64.b64encode(value.encode()) not in raw, value[:24]


def stored_bytes(db: Path) -> bytes:
    return b"".join(p.read_bytes() for p in db.parent.glob(db.name + "*"))


def deliver(launcher: Launcher, job_id: str, env: dict[str, str], n: int = 1) -> None:
    launcher.handle(Message(id=f"m{n}", topic="train-requests", data=launch_message(job_id, OP_SUBMIT, env), delivery_attempt=n))


# ---- redaction (pure) ---------------------------------------------------------------------------------


def test_secret_values_holds_each_leaf_of_a_json_credential():
    values = secret_values({"HF_TOKEN": HF, CREDENTIALS_ENV: CREDS_JSON, "MULTI": "line-one-x\nline-two-y"})
    for leaf in [*LEAVES, CREDS_JSON, "line-one-x", "line-two-y"]:
        assert leaf in values
    assert "us-east-1" not in values  # a region names where, not who: it stays readable in the logs
    text = f"reading with {KEY_ID} / {SECRET_KEY} as {ROLE}; token {SESSION[:40]}"
    assert redact(text, values) == f"reading with [redacted] / [redacted] as [redacted]; token {SESSION[:40]}"
    assert secret_values({"A": "{not json", "B": ""}) == ("{not json",)


# ---- local: the child's environment, and nothing in the run folder or the command ---------------------

TRAINER = """
import json, os, sys
creds = json.loads(os.environ["TRAINING_PLATFORM_CREDENTIALS"])
with open(sys.argv[-1], "w") as f:  # outside the run folder: what the trainer got, for the test
    json.dump({"HF_TOKEN": os.environ.get("HF_TOKEN"), "creds": creds}, f)
first = creds["datasets"][0]
print("dataset 0 key", first["aws_access_key_id"], "secret", first["aws_secret_access_key"], flush=True)
print("session", first["aws_session_token"], file=sys.stderr, flush=True)
print("role", creds["datasets"][2]["role_arn"], "artifacts", creds["artifacts"]["aws_secret_access_key"], flush=True)
print("token", os.environ["HF_TOKEN"], flush=True)
"""


def test_local_backend_passes_the_secrets_in_the_environment_and_redacts_every_leaf(tmp_path):
    from tests.fakes.policy import make_policy

    script = tmp_path / "trainer.py"
    script.write_text(TRAINER)
    got = tmp_path / "got.json"
    body = {"backend": "local", "job_name": "local-secrets", "dataset_file": "/tmp/data.jsonl", "output_dir": "/tmp/out", "hf_token": HF, "trainer_args": {}}
    job, env = secret_job(body, JOB_ID, make_policy(local_roots=("/tmp",), local_base=str(REPO_ROOT)))
    job = job.replace(args=(*job.args, str(got)))
    assert set(env) == {"HF_TOKEN", CREDENTIALS_ENV} and set(job.env_names) == set(env)
    messages: list[dict] = []
    backend = LocalBackend(
        python_bin=sys.executable,
        script=script,
        cwd=REPO_ROOT,
        events=messages.append,
        base_env={"PATH": os.environ.get("PATH", "")},
        runs_dir=tmp_path / "runs",
        batch_seconds=0.05,
    )
    sub = backend.submit(job, env)
    assert backend.wait(job.id, 20) == 0
    assert json.loads(got.read_text()) == {"HF_TOKEN": HF, "creds": CREDENTIALS}  # the trainer got every value
    lines = [line["message"] for m in messages for line in m.get("logs", [])]
    assert "dataset 0 key [redacted] secret [redacted]" in lines and "token [redacted]" in lines
    assert "role [redacted] artifacts [redacted]" in lines and "session [redacted]" in lines
    folder = backend.run_folder(job.id)
    assert_clean(sub.command, json.dumps(messages), json.dumps(job.to_summary()), *(p.read_bytes() for p in folder.iterdir() if p.is_file()))
    assert sub.command.startswith(f"HF_TOKEN=[redacted] {CREDENTIALS_ENV}=[redacted] ")


# ---- Kubernetes: the per-job Secret, owned by its Job ---------------------------------------------------


def test_kubernetes_secret_holds_the_large_credentials_value_and_is_owned_by_the_job(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    with FakeKubernetesAPI() as fake:
        configuration = k8s_client.Configuration(host=fake.url)
        configuration.retries = False
        backend = KubernetesBackend(KubernetesSettings(image="ghcr.io/acme/trainer:1.0", apply=True), api_client=k8s_client.ApiClient(configuration))
        store = SqliteJobStore(tmp_path / "jobs.db")
        job, env = secret_job({**README_KUBERNETES, "env": {"HF_TOKEN": HF}})
        assert len(env[CREDENTIALS_ENV]) > 10_000
        store.create(job)
        deliver(Launcher(store=store, backends={KUBERNETES: backend}), job.id, env)
        stored = store.get(job.id)
        assert stored.status is JobStatus.SUBMITTED
        [secret] = fake.objects("secrets", "default")
        data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
        assert data == {"HF_TOKEN": HF, CREDENTIALS_ENV: CREDS_JSON}
        [k8s_job] = fake.objects("jobs", "default")
        [owner] = secret["metadata"]["ownerReferences"]
        assert (owner["kind"], owner["uid"]) == ("Job", k8s_job["metadata"]["uid"])
        container = k8s_job["spec"]["template"]["spec"]["containers"][0]
        by_ref = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"] if "valueFrom" in e}
        assert by_ref[CREDENTIALS_ENV] == {"name": secret["metadata"]["name"], "key": CREDENTIALS_ENV}
        assert_clean(
            json.dumps(stored.to_summary()),
            json.dumps(stored.manifest),
            stored.command or "",
            stored_bytes(tmp_path / "jobs.db"),
            json.dumps(k8s_job),
            caplog.text,
        )


# ---- Vertex: the per-job Secret Manager secret ----------------------------------------------------------


class Vertex:
    """The launcher, status_sync and reconcile over a real SQLite store, the Vertex backend through the
    real client and Secret Manager over REST, both against the fake."""

    def __init__(self, tmp_path: Path, fake: FakeVertexAPI, *, submit: bool = True, job_id: str = JOB_ID, **config):
        client = aiplatform_v1.JobServiceClient(transport="rest", client_options={"api_endpoint": fake.url}, credentials=AnonymousCredentials())
        cfg = VertexSettings(project=PROJECT, image_uri="us-docker.pkg.dev/acme/trainer:1.0", submit=submit, secret_endpoint=fake.url, **config)
        self.fake = fake
        self.backend = VertexBackend(
            cfg, client=client, timeout=10, secrets=SecretManager(cfg.secrets_parent, endpoint=fake.url, session=requests.Session(), timeout=10)
        )
        self.db = tmp_path / "jobs.db"
        self.store = SqliteJobStore(self.db)
        backends = {VERTEX: self.backend}
        self.launcher = Launcher(store=self.store, backends=backends)
        self.sync = StatusSync(store=self.store, max_log_chars=10_000, rules=BUILT_IN_RULES, backends=backends)
        self.reconciler = Reconciler(store=self.store, backends=backends, status_sync=self.sync, bus=None, requests_topic="train-requests")  # type: ignore[arg-type]
        self.job, self.env = secret_job({**README_VERTEX, "hf_token": HF}, job_id)
        self.store.create(self.job)
        self.n = 0

    def deliver(self, env: dict[str, str] | None = None) -> None:
        self.n += 1
        deliver(self.launcher, self.job.id, self.env if env is None else env, self.n)

    def event(self, state: str) -> None:
        self.sync.apply_event(TrainingEvent(job_id=self.job.id, source="vertex", observed_at=datetime.now(UTC), state=state))

    def current(self):
        return self.store.get(self.job.id)

    @property
    def secret_name(self) -> str:
        return f"projects/{PROJECT}/secrets/{job_secret_id(self.job.id)}"

    def container(self) -> dict:
        [custom_job] = self.fake.jobs.values()
        return custom_job["jobSpec"]["workerPoolSpecs"][0]["containerSpec"]

    def everything(self) -> list[bytes | str]:
        job = self.current()
        custom_jobs = [r.raw for r in self.fake.requests if "/customJobs" in r.path]
        return [json.dumps(job.to_summary()), json.dumps(job.manifest), stored_bytes(self.db), *custom_jobs, json.dumps(list(self.fake.jobs.values()))]


@pytest.fixture
def fake():
    with FakeVertexAPI() as server:
        yield server


def test_vertex_submit_creates_the_job_secret_the_trainer_resolves_and_the_end_deletes(fake, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    v = Vertex(tmp_path, fake)
    v.deliver()
    v.deliver()  # redelivered: the CustomJob is adopted, no second secret
    job = v.current()
    assert job.status is JobStatus.SUBMITTED and len(fake.jobs) == 1
    secret = fake.secrets[v.secret_name]
    assert secret["labels"] == {"job_id": JOB_ID, "managed-by": "training-platform"}
    assert secret["annotations"] == {"training-platform/job-id": JOB_ID} and secret["ttl"] == f"{8 * 24 * 3600}s"
    assert json.loads(secret["versions"][1]) == {"HF_TOKEN": HF, CREDENTIALS_ENV: CREDS_JSON}
    env = {e["name"]: e["value"] for e in v.container()["env"]}
    assert env == {JOB_SECRET_ENV: f"{v.secret_name}/versions/1", "TRAINING_PLATFORM_SECRET_ENDPOINT": fake.url}
    assert job.manifest["jobSpec"]["workerPoolSpecs"][0]["containerSpec"]["env"] == v.container()["env"]

    # The trainer's side: the references in, the values out, the references gone.
    trainer_env = {"PATH": "/usr/bin", **env}
    assert job_secrets.resolve(trainer_env) == ["HF_TOKEN", CREDENTIALS_ENV]
    assert trainer_env == {"PATH": "/usr/bin", "HF_TOKEN": HF, CREDENTIALS_ENV: CREDS_JSON}

    v.event("JOB_STATE_RUNNING")
    assert fake.deleted_secrets == []  # it runs: the secret stays (a restarted replica reads it again)
    v.event("JOB_STATE_SUCCEEDED")
    assert v.current().status is JobStatus.SUCCEEDED
    assert fake.deleted_secrets == [v.secret_name] and fake.secrets == {}
    v.event("JOB_STATE_SUCCEEDED")  # a redelivery: deleting what is gone is fine
    assert v.current().status is JobStatus.SUCCEEDED
    assert_clean(*v.everything(), caplog.text)


def test_the_trainer_launcher_exports_the_secrets_before_the_trainer_starts(fake, tmp_path):
    v = Vertex(tmp_path, fake)
    v.deliver()
    script = tmp_path / "trainer.py"
    script.write_text("import json, os, sys\njson.dump({k: os.environ.get(k) for k in sys.argv[1:]}, open(os.environ['OUT_FILE'], 'w'))\n")
    out = tmp_path / "got.json"
    env = {"PATH": os.environ["PATH"], "OUT_FILE": str(out), **{e["name"]: e["value"] for e in v.container()["env"]}}
    argv = [sys.executable, "-m", "trainer.launch", "--nproc_per_node", "1", "--script", str(script), "--", "HF_TOKEN", CREDENTIALS_ENV, JOB_SECRET_ENV]
    result = subprocess.run(argv, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(out.read_text()) == {"HF_TOKEN": HF, CREDENTIALS_ENV: CREDS_JSON, JOB_SECRET_ENV: None}
    assert_clean(result.stdout, result.stderr)


def test_trainer_resolves_the_old_per_name_reference_too_and_fails_clearly_without_access(fake):
    fake.secrets["projects/acme-ml/secrets/hf"] = {"name": "projects/acme-ml/secrets/hf", "versions": {3: b"hf_operator_token"}}
    env = {"HF_TOKEN_SECRET": "projects/acme-ml/secrets/hf/versions/3", "TRAINING_PLATFORM_SECRET_ENDPOINT": fake.url, "OTHER_SECRET": "not a reference"}
    assert job_secrets.resolve(env) == ["HF_TOKEN"]
    assert env == {"HF_TOKEN": "hf_operator_token", "OTHER_SECRET": "not a reference"}
    missing = {JOB_SECRET_ENV: "projects/acme-ml/secrets/gone/versions/1", "TRAINING_PLATFORM_SECRET_ENDPOINT": fake.url}
    with pytest.raises(job_secrets.SecretError, match="HTTP 404"):
        job_secrets.resolve(missing)
    fake.inject("GET", ":access$", status=503, times=None)
    waits: list[float] = []
    with pytest.raises(job_secrets.SecretError, match="after 5 attempts: HTTP 503"):
        job_secrets.resolve({"HF_TOKEN_SECRET": "projects/acme-ml/secrets/hf/versions/3", "TRAINING_PLATFORM_SECRET_ENDPOINT": fake.url}, sleep=waits.append)
    assert waits == [1.0, 2.0, 4.0, 8.0]


def test_a_refused_submit_deletes_the_secret_a_transient_one_keeps_it(fake, tmp_path):
    v = Vertex(tmp_path, fake)
    fake.inject("POST", "/customJobs$", status=503)
    with pytest.raises(TransientError):
        v.deliver()
    assert list(fake.secrets) == [v.secret_name]  # the create may have happened: the retry needs the secret
    fake.clear_faults()
    fake.inject("POST", "/customJobs$", status=400)
    v.deliver()
    assert v.current().status is JobStatus.FAILED
    # Created by the first attempt, not this one: the sweep of what is still held deletes it.
    assert list(fake.secrets) == [v.secret_name]
    report = v.reconciler.run_once()
    assert report.released == [JOB_ID] and fake.secrets == {}

    (tmp_path / "b").mkdir()
    other = Vertex(tmp_path / "b", fake, job_id="0d5f4c1e-1111-4b7e-9c3a-2b1d4e6f8a90")
    fake.inject("POST", "/customJobs$", status=400)
    other.deliver()
    assert other.current().status is JobStatus.FAILED and other.current().status_reason == "InvalidSpec"
    assert other.secret_name in fake.deleted_secrets and fake.secrets == {}  # this attempt created it: deleted at once
    assert_clean(*other.everything())


def test_a_failed_release_is_retried_by_redelivery_and_by_reconcile(fake, tmp_path):
    v = Vertex(tmp_path, fake)
    v.deliver()
    fake.inject("DELETE", "/secrets/", status=503, times=None)
    with pytest.raises(TransientError):
        v.event("JOB_STATE_FAILED")
    assert v.current().status is JobStatus.FAILED  # the status was written first
    assert v.reconciler.run_once().errors  # still failing: reported, retried next time
    fake.clear_faults()
    assert v.backend.held() == [JOB_ID]
    assert v.reconciler.run_once().released == [JOB_ID]
    assert fake.secrets == {} and v.backend.held() == []


def test_a_relaunch_without_the_values_adopts_the_job_or_fails_clearly(fake, tmp_path):
    v = Vertex(tmp_path, fake)
    v.deliver(env={})  # the values were lost (a relaunch) and nothing was created yet
    job = v.current()
    assert job.status is JobStatus.FAILED and job.status_reason == "SecretValuesUnavailable"
    assert fake.secrets == {} and fake.jobs == {}


def test_a_dry_run_shows_a_placeholder_and_creates_nothing(fake, tmp_path):
    v = Vertex(tmp_path, fake, submit=False)
    v.deliver()
    job = v.current()
    [item] = job.manifest["jobSpec"]["workerPoolSpecs"][0]["containerSpec"]["env"][:1]
    assert item["name"] == JOB_SECRET_ENV and "created at submit" in item["value"] and "HF_TOKEN" in item["value"]
    assert fake.requests == []


def test_per_job_secrets_switched_off_keep_the_per_name_references(fake, tmp_path):
    v = Vertex(tmp_path, fake, job_secrets=False, hf_token_secret="projects/acme-ml/secrets/hf/versions/2")
    v.job, v.env = job_from({**README_VERTEX, "hf_token": HF}, "0d5f4c1e-2222-4b7e-9c3a-2b1d4e6f8a90")
    v.store.create(v.job)
    v.deliver()
    assert v.container()["env"] == [{"name": "HF_TOKEN_SECRET", "value": "projects/acme-ml/secrets/hf/versions/2"}]
    assert fake.secrets == {}


# ---- the api: any secret on Vertex with per-job secrets, a clear 400 without ---------------------------


def test_the_api_accepts_any_vertex_secret_with_per_job_secrets_and_names_the_setting_without():
    body = {**README_VERTEX, "hf_token": HF, "env": {"WANDB_API_KEY": "wandb-key-0001"}}
    base = {"VERTEX_PROJECT": PROJECT, "VERTEX_IMAGE_URI": "us-docker.pkg.dev/acme/trainer:1.0", "VERTEX_SUBMIT": "1"}
    req = normalise_request(dict(body), Settings(**base).request_policy(), platform_env=PLATFORM_ENV)
    assert req.env == {"HF_TOKEN": HF, "WANDB_API_KEY": "wandb-key-0001", CREDENTIALS_ENV: CREDS_JSON}
    with pytest.raises(ValidationFailed) as info:
        normalise_request(dict(body), Settings(**base, VERTEX_JOB_SECRETS="0").request_policy(), platform_env=PLATFORM_ENV)
    errors = {e.field: e.message for e in info.value.errors}
    assert set(errors) == {"hf_token", "env.WANDB_API_KEY", "datasets[0].auth"}
    assert all("VERTEX_JOB_SECRETS=1" in m for m in errors.values()) and "VERTEX_HF_TOKEN_SECRET" in errors["hf_token"]
    assert_clean(json.dumps(errors))
