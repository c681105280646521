"""Backends over their fakes, as the integration tests build them (one place, no test module imports another).

- local: `Events` (the `events` callable, collecting envelopes as the bus would), `local_job`,
  `make_local_backend` (the real `LocalBackend` running `tests/fakes/fake_trainer.py`), `assert_gone`.
- Vertex: `make_vertex_backend` (the real `VertexBackend` over `FakeVertexAPI`'s REST).
- Kubernetes: `make_k8s_backend` (the real `KubernetesBackend` over `FakeKubernetesAPI`).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shared.settings import REPO_ROOT
from tests.fakes import FAKE_TRAINER
from tests.fakes.jobs import JOB_ID, job_from

if TYPE_CHECKING:
    from shared.adapters.kubernetes.backend import KubernetesBackend
    from shared.adapters.local_backend import LocalBackend
    from shared.adapters.vertex_backend import VertexBackend
    from shared.domain.job import Job
    from tests.fakes import FakeKubernetesAPI, FakeVertexAPI

LOCAL_BODY = {"backend": "local", "job_name": "local-run", "dataset_file": "/tmp/data.jsonl", "output_dir": "/tmp/out", "hf_token": "hf_local_secret_42"}
LOCAL_POLICY_ROOTS = ("/tmp",)
VERTEX_HF_REF = "projects/acme-ml/secrets/hf-token/versions/2"
K8S_TIMEOUT = (2.0, 5.0)  # (connect, read) for ordinary calls: generous, a busy CI box must not flake


class Events:
    """The `events` callable: collects envelopes as the bus would receive them."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def __call__(self, message: dict[str, Any]) -> None:
        with self.lock:
            self.messages.append(message)

    def states(self) -> list[str]:
        return [m["state"] for m in self.messages if "state" in m]

    def lines(self) -> list[dict[str, Any]]:
        return [line for m in self.messages for line in m.get("logs", [])]


def local_job(job_id: str = JOB_ID, **body: Any) -> tuple[Job, dict[str, str]]:
    from tests.fakes.policy import make_policy

    return job_from({**LOCAL_BODY, **body}, job_id, make_policy(local_roots=LOCAL_POLICY_ROOTS, local_base=str(REPO_ROOT)))


def make_local_backend(events: Events, *, grace: float = 5.0, batch_lines: int = 200, runs_dir: str | Path | None = None, **env: str) -> LocalBackend:
    """Without `runs_dir`, a fresh folder of its own (the same job id runs again in the next test)."""
    from shared.adapters.local_backend import LocalBackend

    base_env = {"PATH": os.environ.get("PATH", ""), **env}
    return LocalBackend(
        python_bin=sys.executable,
        script=FAKE_TRAINER,
        cwd=REPO_ROOT,
        events=events,
        base_env=base_env,
        grace_seconds=grace,
        batch_lines=batch_lines,
        batch_seconds=0.2,
        runs_dir=runs_dir,
    )


def assert_gone(pid: int, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        # A zombie still answers kill(0); it is dead if its state is Z.
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().split()[2] == "Z":
                    return
        except FileNotFoundError:
            return
        time.sleep(0.05)
    raise AssertionError(f"process {pid} still alive")


def make_vertex_backend(fake: FakeVertexAPI, *, submit: bool = True, timeout: float = 10.0, **config: Any) -> VertexBackend:
    # Imported here: the Vertex client is slow to import and only these tests need it.
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import aiplatform_v1

    from shared.adapters.vertex_backend import VertexBackend
    from shared.adapters.vertex_settings import VertexSettings

    client = aiplatform_v1.JobServiceClient(transport="rest", client_options={"api_endpoint": fake.url}, credentials=AnonymousCredentials())
    # Per-job secrets off: these tests pin the per-name references (tests/integration/test_job_secrets.py has the per-job secrets).
    config = {"job_secrets": False, **config}
    cfg = VertexSettings(project="acme-ml", image_uri="us-docker.pkg.dev/acme/trainer:1.0", submit=submit, hf_token_secret=VERTEX_HF_REF, **config)
    return VertexBackend(cfg, client=client, timeout=timeout)


def make_k8s_backend(fake: FakeKubernetesAPI, *, apply: bool = True, timeout: Any = K8S_TIMEOUT, **config: Any) -> KubernetesBackend:
    import kubernetes.client as k8s_client

    from shared.adapters.kubernetes.backend import KubernetesBackend
    from shared.adapters.kubernetes.config import KubernetesSettings

    configuration = k8s_client.Configuration(host=fake.url)
    configuration.retries = False  # the launcher owns retries
    cfg = KubernetesSettings(
        image="ghcr.io/acme/trainer:1.0",
        apply=apply,
        tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        resource_limits={"nvidia.com/gpu": 1},
        **config,
    )
    return KubernetesBackend(cfg, api_client=k8s_client.ApiClient(configuration), request_timeout=timeout)
