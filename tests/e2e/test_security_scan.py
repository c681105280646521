"""A full run with secrets everywhere, then a scan of everything the platform wrote or said.

Two embedded servers as subprocesses (`python -m functions.dev.embedded`), both with `API_TOKENS` and
`CORS_ORIGINS`: server A with `K8S_APPLY=1` against the fake Kubernetes API and the local backend
running `tests/fakes/fake_trainer.py` (which echoes its secret variables, `FAKE_TRAINER_ECHO_ENV`);
server B with `K8S_APPLY=0` (the dry run, which stores the rendered manifest). Jobs carry secrets in
`hf_token` and `env`; one is cancelled; a rejected request carries secrets too.

Then every secret value — in plain text and base64 — is looked for in: every response body the test
received, both SQLite databases (the file, its -wal and -shm), both servers' stdout/stderr, the stored
manifests, and every request the fake Kubernetes API received except the Secret create, which must hold
each value (that is where it belongs) and is the only place it may be. Also: with tokens configured
every route but `/health` answers 401 without a token and with a wrong one; CORS headers only for the
configured origin.
"""

from __future__ import annotations

import base64
import json
import os
import secrets as pysecrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from functions.dev.local_stack import free_port, stop_group, wait_http
from shared.adapters.sqlite_store import SqliteJobStore
from tests.fakes import FAKE_TRAINER, FakeKubernetesAPI, write_kubeconfig

REPO = Path(__file__).resolve().parents[2]
NS = "training"
ORIGIN = "https://studio.example.com"

pytestmark = pytest.mark.slow


def _secret(tag: str) -> str:
    return f"{tag}_{pysecrets.token_hex(12)}"


TOKENS = (_secret("apitokA"), _secret("apitokB"))
K8S_HF = _secret("hf_k8s")
K8S_WANDB = _secret("wandb_k8s")
DRY_HF = _secret("hf_dry")
DRY_ENV = _secret("dry_env")
LOCAL_HF = _secret("hf_local")
LOCAL_ENV = _secret("local_env")
REJECTED_HF = _secret("hf_rejected")
REJECTED_ENV = _secret("rejected_env")
JOB_SECRETS = (K8S_HF, K8S_WANDB, DRY_HF, DRY_ENV, LOCAL_HF, LOCAL_ENV, REJECTED_HF, REJECTED_ENV)
ALL_SECRETS = JOB_SECRETS + TOKENS


def forms(value: str) -> set[bytes]:
    """The ways a value could be written down: plain, JSON-escaped, and base64 (standard and URL-safe)."""
    raw = value.encode()
    out = {raw, json.dumps(value)[1:-1].encode(), base64.b64encode(raw), base64.urlsafe_b64encode(raw)}
    # Base64 inside a longer base64 text: the value at each of the three alignments, without the padding
    # edges (what a scanner sees when the secret was base64-encoded together with other bytes).
    for pad in (b"", b"x", b"xx"):
        enc = base64.b64encode(pad + raw)
        out.add(enc[4 if pad else 0 : -4])
    return {f for f in out if len(f) >= 8}


def hits(blob: bytes | str, values: tuple[str, ...] = ALL_SECRETS) -> list[str]:
    data = blob.encode() if isinstance(blob, str) else blob
    return [v for v in values if any(f in data for f in forms(v))]


class Server:
    def __init__(self, name: str, tmp: Path, env: dict[str, str]):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.db = tmp / f"{name}.db"
        self.log = tmp / f"{name}.log"
        full = {
            **os.environ,
            "PORT": str(self.port),
            "SQLITE_PATH": str(self.db),
            "API_TOKENS": ",".join(TOKENS),
            "CORS_ORIGINS": ORIGIN,
            "RECONCILE_INTERVAL_SECONDS": "0",
            **env,
        }
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "functions.dev.embedded"], cwd=REPO, env=full, start_new_session=True, stdout=out, stderr=subprocess.STDOUT
            )
        wait_http(f"{self.url}/health", 60, proc=self.proc)

    def stop(self) -> None:
        if self.proc.poll() is None:
            stop_group(self.proc)


class Client:
    """Every response body the test receives is kept, to be scanned."""

    def __init__(self) -> None:
        self.session = requests.Session()
        self.bodies: list[tuple[str, bytes]] = []

    def call(self, method: str, url: str, *, token: str | None = TOKENS[0], **kw: Any) -> requests.Response:
        headers = dict(kw.pop("headers", {}))
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        r = self.session.request(method, url, headers=headers, timeout=30, **kw)
        self.bodies.append((f"{method} {url} -> {r.status_code}", r.content + json.dumps(dict(r.headers)).encode()))
        return r

    def wait_status(self, url: str, job_id: str, statuses: set[str], timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            job = self.call("GET", f"{url}/jobs/{job_id}").json()["job"]
            if job["status"] in statuses or time.monotonic() > deadline:
                return job
            time.sleep(0.2)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("security")
    client = Client()
    with FakeKubernetesAPI(namespaces=(NS,), validate=False) as k8s:
        kube = write_kubeconfig(k8s.url, tmp / "kubeconfig")
        common = {"K8S_TRAINING_IMAGE": "trainer:scan", "K8S_KUBECONFIG": str(kube), "K8S_NAMESPACE": NS, "LOCAL_ALLOWED_ROOTS": str(tmp)}
        a = Server(
            "a",
            tmp,
            {
                **common,
                "K8S_APPLY": "1",
                "TRAIN_SCRIPT_PATH": str(FAKE_TRAINER),
                "FAKE_TRAINER_ECHO_ENV": "HF_TOKEN,RUN_SECRET",
                "FAKE_TRAINER_LINES": "2",
            },
        )
        b = Server("b", tmp, {**common, "K8S_APPLY": "0"})
        try:
            ids: dict[str, str] = {}
            # Kubernetes, applied: hf_token and an env secret -> a Secret and a Job on the fake API.
            r = client.call(
                "POST",
                f"{a.url}/train",
                json={
                    "backend": "kubernetes",
                    "job_name": "scan-k8s",
                    "model": "m/llama",
                    "dataset_file": "gs://b/d.jsonl",
                    "output_dir": "/tmp/o",
                    "hf_token": K8S_HF,
                    "env": {"WANDB_API_KEY": K8S_WANDB},
                },
                headers={"Idempotency-Key": "scan-k8s-1"},
            )
            assert r.status_code == 202, r.text
            ids["k8s"] = r.json()["job"]["id"]
            # The same again (an idempotent replay): nothing new, and still no secret in the answer.
            assert client.call("POST", f"{a.url}/train", json=json.loads(r.request.body), headers={"Idempotency-Key": "scan-k8s-1"}).status_code == 202
            # Kubernetes, dry run: the manifest is rendered and stored.
            r = client.call(
                "POST",
                f"{b.url}/train",
                json={
                    "backend": "kubernetes",
                    "job_name": "scan-dry",
                    "dataset_file": "s3://b/d.jsonl",
                    "output_dir": "/tmp/o",
                    "trainer_args": {"hf_token": DRY_HF},
                    "env": {"DRY_SECRET": DRY_ENV},
                },
            )
            assert r.status_code == 202, r.text
            ids["dry"] = r.json()["job"]["id"]
            # Local: the fake trainer prints HF_TOKEN=... and RUN_SECRET=... (values must come out redacted).
            r = client.call(
                "POST",
                f"{a.url}/train",
                json={
                    "backend": "local",
                    "job_name": "scan-local",
                    "dataset_file": str(tmp / "d.jsonl"),
                    "output_dir": str(tmp / "out"),
                    "hf_token": LOCAL_HF,
                    "env": {"RUN_SECRET": LOCAL_ENV},
                },
            )
            assert r.status_code == 202, r.text
            ids["local"] = r.json()["job"]["id"]
            # Rejected, with secrets in it: the 400 must not echo them.
            r = client.call(
                "POST",
                f"{a.url}/train",
                json={
                    "backend": "kubernetes",
                    "dataset_file": "gs://b/d",
                    "output_dir": "/o",
                    "hf_token": REJECTED_HF,
                    "env": {"PATH": REJECTED_ENV, "OK_NAME": REJECTED_ENV},
                    "learning_rate": REJECTED_ENV,
                },
            )
            assert r.status_code == 400, r.text

            k8s_job = client.wait_status(a.url, ids["k8s"], {"submitted", "failed"})
            assert k8s_job["status"] == "submitted", k8s_job
            dry_job = client.wait_status(b.url, ids["dry"], {"submitted", "failed"})
            assert dry_job["status"] == "submitted" and dry_job["dryRun"] is True, dry_job
            local_job = client.wait_status(a.url, ids["local"], {"succeeded", "failed"})
            assert local_job["status"] == "succeeded", local_job

            # Read everything back through every read route.
            for url in (a.url, b.url):
                client.call("GET", f"{url}/jobs")
                client.call("GET", f"{url}/health", token=None)
                client.call("GET", f"{url}/openapi.json")
            for name, url in (("k8s", a.url), ("dry", b.url), ("local", a.url)):
                job_id = ids[name]
                client.call("GET", f"{url}/jobs/{job_id}")
                client.call("GET", f"{url}/jobs/{job_id}/logs")
                client.call("GET", f"{url}/jobs/{job_id}/events")
                client.call("GET", f"{url}/jobs/{job_id}/logs", params={"tail": 50})
            r = client.call("GET", f"{a.url}/jobs/{ids['local']}/logs", params={"follow": "true"}, stream=False)
            assert r.status_code == 200 and "event: end" in r.text
            # Cancel the applied Kubernetes job: the launcher deletes the Job (and its Secret with it).
            assert client.call("POST", f"{a.url}/jobs/{ids['k8s']}/cancel").status_code == 202
            deadline = time.monotonic() + 30
            while not k8s.calls("DELETE", r"/jobs/") and time.monotonic() < deadline:
                time.sleep(0.2)
            client.call("GET", f"{a.url}/jobs/{ids['k8s']}")
            yield {"a": a, "b": b, "k8s": k8s, "client": client, "ids": ids, "tmp": tmp}
        finally:
            a.stop()
            b.stop()


# ---- tokens and CORS on a real server ------------------------------------------------------------

ROUTES = [
    ("GET", "/jobs"),
    ("POST", "/train"),
    ("GET", "/jobs/{id}"),
    ("POST", "/jobs/{id}/cancel"),
    ("GET", "/jobs/{id}/logs"),
    ("GET", "/jobs/{id}/events"),
    ("GET", "/submissions/batch-1"),
    ("GET", "/openapi.json"),
    ("GET", "/nope"),
    ("PUT", "/train"),
    ("DELETE", "/jobs/{id}"),
    ("GET", "/jobs/{id}/logs?follow=true"),
]


@pytest.mark.parametrize("method,path", ROUTES, ids=[f"{m} {p}" for m, p in ROUTES])
def test_every_route_but_health_needs_a_token(run, method: str, path: str) -> None:
    a, client = run["a"], run["client"]
    url = a.url + path.format(id=run["ids"]["local"])
    body = {"json": {"dataset_file": "gs://b/d", "output_dir": "/o"}} if method == "POST" else {}
    for header in (None, f"Bearer {TOKENS[0]}x", f"Bearer {TOKENS[0][:-1]}", f"Basic {TOKENS[0]}", "Bearer ", TOKENS[0], f"Bearer {TOKENS[0]},{TOKENS[1]}"):
        headers = {"Authorization": header} if header is not None else {}
        r = client.call(method, url, token=None, headers=headers, **body)
        assert r.status_code == 401, (header, r.status_code, r.text[:200])
        assert r.headers["WWW-Authenticate"] == "Bearer" and r.json()["error"]
    assert client.call("GET", f"{a.url}/health", token=None).status_code == 200


def test_either_configured_token_is_accepted(run) -> None:
    for token in TOKENS:
        assert run["client"].call("GET", f"{run['a'].url}/jobs", token=token).status_code == 200


def test_rejected_requests_left_nothing(run) -> None:
    """All those 401s (POST /train among them) stored and launched nothing."""
    a = SqliteJobStore(run["a"].db)
    from shared.ports import JobQuery

    assert {j.id for j in a.list(JobQuery(limit=500)).items} == {run["ids"]["k8s"], run["ids"]["local"]}


@pytest.mark.parametrize("path,method", [("/health", "GET"), ("/jobs", "GET"), ("/train", "OPTIONS"), ("/jobs", "OPTIONS")])
def test_cors_headers_only_for_the_configured_origin(run, path: str, method: str) -> None:
    client, url = run["client"], run["a"].url + path
    pre = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization,content-type"}
    ok = client.call(method, url, headers={"Origin": ORIGIN, **pre})
    assert ok.headers.get("Access-Control-Allow-Origin") == ORIGIN and "Origin" in ok.headers.get("Vary", "")
    assert "Authorization" in ok.headers["Access-Control-Allow-Headers"]
    assert "Access-Control-Allow-Credentials" not in ok.headers
    for origin in ("https://evil.example.com", "https://studio.example.com.evil.com", "http://studio.example.com", "null", "*", ORIGIN + "/"):
        r = client.call(method, url, headers={"Origin": origin, **pre})
        assert not [h for h in r.headers if h.lower().startswith("access-control-")], (origin, dict(r.headers))


def test_cors_headers_on_a_401_only_for_the_configured_origin(run) -> None:
    client, url = run["client"], f"{run['a'].url}/jobs"
    r = client.call("GET", url, token=None, headers={"Origin": ORIGIN})
    assert r.status_code == 401 and r.headers.get("Access-Control-Allow-Origin") == ORIGIN
    r = client.call("GET", url, token=None, headers={"Origin": "https://evil.example.com"})
    assert r.status_code == 401 and "Access-Control-Allow-Origin" not in r.headers


# ---- the scan (last: after every request above, the 401s included) ----------------------------------


def test_the_secrets_reached_where_they_belong(run) -> None:
    """The scan below means something only if the values really travelled: the Secret on the API
    server holds each Kubernetes value, and the local trainer printed its (redacted) variables."""
    k8s, ids = run["k8s"], run["ids"]
    creates = run["k8s"].calls("POST", rf"/api/v1/namespaces/{NS}/secrets$")
    assert len(creates) == 1
    body = creates[0].body
    values = {**body.get("stringData", {}), **{k: base64.b64decode(v).decode() for k, v in body.get("data", {}).items()}}
    assert values == {"HF_TOKEN": K8S_HF, "WANDB_API_KEY": K8S_WANDB}
    stored = k8s.objects("secrets", NS)
    # The cancel deleted the Job in the foreground, which takes its Secret along (or it is still there).
    for obj in stored:
        assert {k: base64.b64decode(v).decode() for k, v in obj["data"].items()} == values
    logs = run["client"].call("GET", f"{run['a'].url}/jobs/{ids['local']}/logs").json()["logs"]
    messages = [l["message"] for l in logs]
    assert "HF_TOKEN=[redacted]" in messages and "RUN_SECRET=[redacted]" in messages, messages
    job = run["client"].call("GET", f"{run['a'].url}/jobs/{ids['local']}").json()["job"]
    assert job["env"] == {"HF_TOKEN": "[redacted]", "RUN_SECRET": "[redacted]"}


def test_no_secret_in_any_response_body(run) -> None:
    found = {what: hits(body) for what, body in run["client"].bodies}
    assert {k: v for k, v in found.items() if v} == {}
    assert len(run["client"].bodies) > 25


def test_no_secret_in_the_databases(run) -> None:
    checked = 0
    for server in (run["a"], run["b"]):
        for suffix in ("", "-wal", "-shm", "-journal"):
            path = Path(f"{server.db}{suffix}")
            if path.exists():
                checked += 1
                assert hits(path.read_bytes()) == [], path
    assert checked >= 2


def test_no_secret_in_the_server_logs(run) -> None:
    for server in (run["a"], run["b"]):
        text = server.log.read_bytes()
        assert text, f"{server.log} is empty"
        assert hits(text) == [], server.log


def test_no_secret_in_the_stored_manifests(run) -> None:
    ids = run["ids"]
    a = SqliteJobStore(run["a"].db)
    b = SqliteJobStore(run["b"].db)
    applied, dry = a.get(ids["k8s"]), b.get(ids["dry"])
    assert applied.manifest and dry.manifest  # the rendered manifest is kept (not in the api's summary)
    for job in (applied, dry, a.get(ids["local"])):
        assert hits(json.dumps(job.manifest)) == [] and hits(job.command or "") == [] and hits(job.log_tail) == []
    # The dry run's manifest shows the Secret it would create, with the values redacted, and the Job
    # reading each variable from it.
    items = dry.manifest.get("items", [dry.manifest])
    secret = next(i for i in items if i["kind"] == "Secret")
    assert set(secret["stringData"]) == {"HF_TOKEN", "DRY_SECRET"} and set(secret["stringData"].values()) == {"[redacted]"}
    container = next(i for i in items if i["kind"] == "Job")["spec"]["template"]["spec"]["containers"][0]
    assert {e["name"]: "valueFrom" in e for e in container["env"] if e["name"] in ("HF_TOKEN", "DRY_SECRET")} == {"HF_TOKEN": True, "DRY_SECRET": True}
    assert container["image"] == "trainer:scan"


def test_no_secret_in_the_kubernetes_api_requests_but_the_secret_create(run) -> None:
    k8s = run["k8s"]
    others = [r for r in k8s.requests if not (r.method == "POST" and r.path == f"/api/v1/namespaces/{NS}/secrets")]
    assert any(r.method == "POST" and r.path.endswith("/jobs") for r in others)
    for r in others:
        blob = r.raw + r.path.encode() + json.dumps(r.query).encode() + json.dumps(r.headers).encode()
        assert hits(blob) == [], (r.method, r.path)
    # The Job itself names the secret variables, never their values.
    job_create = next(r for r in others if r.method == "POST" and r.path.endswith("/jobs"))
    env = job_create.body["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {e["name"] for e in env if "valueFrom" in e} >= {"HF_TOKEN", "WANDB_API_KEY"}
    assert all("value" not in e for e in env if e["name"] in ("HF_TOKEN", "WANDB_API_KEY"))
    # The Secret create holds only the two Kubernetes values, not another job's or an api token.
    create = next(r for r in k8s.requests if r.method == "POST" and r.path == f"/api/v1/namespaces/{NS}/secrets")
    assert sorted(hits(create.raw)) == sorted([K8S_HF, K8S_WANDB])


# ---- multi-line secrets ----------------------------------------------------------------------------


def test_multi_line_env_secret_echoed_by_the_trainer_is_redacted(tmp_path: Path) -> None:
    part1, part2 = _secret("pemline1"), _secret("pemline2")
    server = Server(
        "multi",
        tmp_path,
        {
            "TRAIN_SCRIPT_PATH": str(FAKE_TRAINER),
            "FAKE_TRAINER_ECHO_ENV": "PEM_KEY",
            "LOCAL_ALLOWED_ROOTS": str(tmp_path),
        },
    )
    client = Client()
    try:
        r = client.call(
            "POST",
            f"{server.url}/train",
            json={
                "backend": "local",
                "dataset_file": str(tmp_path / "d.jsonl"),
                "output_dir": str(tmp_path / "o"),
                "env": {"PEM_KEY": f"{part1}\n{part2}"},
            },
        )
        assert r.status_code == 202, r.text
        job = client.wait_status(server.url, r.json()["job"]["id"], {"succeeded", "failed"})
        assert job["status"] == "succeeded"
        logs = client.call("GET", f"{server.url}/jobs/{job['id']}/logs").json()["logs"]
        assert any(l["message"].startswith("PEM_KEY=") for l in logs)
    finally:
        server.stop()
    leaked = hits(b"".join(b for _, b in client.bodies) + server.log.read_bytes() + server.db.read_bytes(), (part1, part2))
    assert leaked == []
