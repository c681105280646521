"""Vertex AI backend: one job becomes one CustomJob (`aiplatform_v1.JobServiceClient`).

Rendering is pure (`render_custom_job`): the job and a `VertexConfig` give the CustomJob as REST JSON
(camelCase, the shape stored with the job and the one `CustomJob.from_json` reads). Secrets never
enter the spec: each secret variable is passed as a Secret Manager reference that the trainer resolves
at start (`HF_TOKEN` -> env `HF_TOKEN_SECRET=<VERTEX_HF_TOKEN_SECRET>`, a secret version resource
name). A secret with no configured reference is refused by the api when `VERTEX_SUBMIT=1` (a `400`
naming the field and the setting) and, should one reach the launcher, here (`PermanentError`, class
`user`) rather than dropped or passed by value. A dry run renders it as a visible placeholder
reference instead, so the spec can be shown.

Resources: `gpu_type` x `gpus` -> machine type and accelerator from one table
(`shared/domain/resources.py` `DEFAULT_VERTEX_MACHINE_TYPES`, `VERTEX_MACHINE_TYPES` over it); neither
set: `VERTEX_MACHINE_TYPE` / `VERTEX_ACCELERATOR_*` as before; `gpus: 0`: `VERTEX_CPU_MACHINE_TYPE`.
`nodes` (default `VERTEX_REPLICA_COUNT`) -> pool 0 with one replica (the chief) and pool 1 with
`nodes - 1`, same image and args; `max_duration_minutes` -> `scheduling.timeout`. The container runs
`python -m trainer.launch --nproc_per_node=<GPUs> -- <train.py flags>`; the launcher turns the
node-level `WORLD_SIZE` / `RANK` / `MASTER_ADDR` / `MASTER_PORT` Vertex sets into torchrun's.

Exactly once: CreateCustomJob takes no client-chosen id, so the job id goes in a label and every attempt
first lists CustomJobs filtered by it (`labels.job_id="<id>"`) and adopts what it finds. Two attempts
racing past that check (rare: Pub/Sub orders one job's messages) both create; each then lists again,
all agree the oldest is the job, and the others cancel their own. `VERTEX_SUBMIT=0` sends nothing.

Vendor errors (google.api_core, requests, google.auth) are wrapped once, here (`api_error`), through
the status table in `http_errors.py`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any, Callable

from shared.adapters.http_errors import error_for_status
from shared.domain import naming
from shared.domain import resources as res
from shared.domain.job import Job
from shared.domain.status import FailureClass
from shared.errors import PermanentError, PlatformError, TransientError
from shared.ports import Observation, Submission

log = logging.getLogger(__name__)

DRY_RUN_REASON = "DryRun: VERTEX_SUBMIT=0, so the CustomJob spec was rendered and stored but not sent to Vertex AI"
SECRET_REF_SUFFIX = "_SECRET"
LAUNCH_COMMAND = ["python", "-m", "trainer.launch"]
# A dry run's stand-in for a secret reference that isn't configured: shown, never resolvable.
UNSET_REFERENCE = "[no Secret Manager reference configured{hint}]"


@dataclass(frozen=True)
class VertexConfig:
    project: str | None = None
    region: str = "us-central1"
    image_uri: str | None = None
    machine_type: str = "a2-highgpu-1g"
    accelerator_type: str | None = "NVIDIA_TESLA_A100"
    accelerator_count: int = 1
    replica_count: int = 1
    service_account: str | None = None
    network: str | None = None
    submit: bool = False
    # Secret variable name -> Secret Manager secret version the trainer reads it from.
    secret_refs: dict[str, str] = field(default_factory=dict)
    # GPU type -> {"accelerator", "machines": {"<gpus>": machine type}} (VERTEX_MACHINE_TYPES over the defaults).
    machine_table: dict[str, dict[str, Any]] = field(default_factory=lambda: json.loads(json.dumps(res.DEFAULT_VERTEX_MACHINE_TYPES)))
    cpu_machine_type: str = "n1-standard-8"

    @classmethod
    def from_settings(cls, settings: Any) -> "VertexConfig":
        refs = settings.vertex_secret_refs
        return cls(
            project=settings.vertex_project,
            region=settings.vertex_region,
            image_uri=settings.vertex_image_uri,
            machine_type=settings.vertex_machine_type,
            accelerator_type=settings.vertex_accelerator_type,
            accelerator_count=settings.vertex_accelerator_count,
            replica_count=settings.vertex_replica_count,
            service_account=settings.vertex_service_account,
            network=settings.vertex_network,
            submit=settings.vertex_submit,
            secret_refs=refs,
            machine_table=settings.vertex_machine_table,
            cpu_machine_type=settings.vertex_cpu_machine_type,
        )

    @property
    def parent(self) -> str:
        return f"projects/{self.project}/locations/{self.region}"

    @property
    def api_endpoint(self) -> str:
        return f"{self.region}-aiplatform.googleapis.com"


def _config_error(message: str) -> PermanentError:
    return PermanentError(message, reason="InvalidConfig", failure_class=FailureClass.INFRA.value)


# ---- rendering (pure) ------------------------------------------------------------------------------


def _hint(names: list[str]) -> str:
    return " (for HF_TOKEN set VERTEX_HF_TOKEN_SECRET)" if "HF_TOKEN" in names else ""


def secret_env(env_names: list[str] | tuple[str, ...], cfg: VertexConfig) -> list[dict[str, str]]:
    """`NAME_SECRET=<secret version>` for each secret variable. One with no reference: a placeholder on a
    dry run (so the spec can be shown), else a PermanentError."""
    unmapped = [n for n in sorted(env_names) if n not in cfg.secret_refs]
    if unmapped and not cfg.submit:
        hints = {"HF_TOKEN": ": set VERTEX_HF_TOKEN_SECRET"}
        refs = {**{n: UNSET_REFERENCE.format(hint=hints.get(n, "")) for n in unmapped}, **cfg.secret_refs}
        return [{"name": f"{n}{SECRET_REF_SUFFIX}", "value": refs[n]} for n in sorted(env_names)]
    if unmapped:
        hint = _hint(unmapped)
        raise PermanentError(
            f"the vertex backend passes secrets only as Secret Manager references, and none is configured for "
            f"{', '.join(unmapped)}{hint}; their values are never put in the CustomJob",
            reason="SecretNotSupported",
            failure_class=FailureClass.USER.value,
        )
    return [{"name": f"{n}{SECRET_REF_SUFFIX}", "value": cfg.secret_refs[n]} for n in sorted(env_names)]


def machine_spec(job: Job, cfg: VertexConfig) -> dict[str, Any]:
    """The machine of every replica: from the table when the request names GPUs, else the settings."""
    r = job.resources
    if r.gpus == 0:
        return {"machineType": cfg.cpu_machine_type}
    if r.gpu_type is None and r.gpus is None:
        machine: dict[str, Any] = {"machineType": cfg.machine_type}
        if cfg.accelerator_type and cfg.accelerator_count > 0:
            machine["acceleratorType"] = cfg.accelerator_type
            machine["acceleratorCount"] = cfg.accelerator_count
        return machine
    placement = res.vertex_placement(cfg.machine_table, cfg.accelerator_type, cfg.accelerator_count)
    problems = res.placement_problems(r, placement)
    gpu_type = r.gpu_type or placement.default_gpu_type
    if problems or gpu_type is None:  # the api checks the same table; a changed one lands here
        raise PermanentError(
            "; ".join(f"{p.field}: {p.message}" for p in problems) or "no GPU type for resources.gpus",
            reason="Unplaceable",
            failure_class=FailureClass.USER.value,
        )
    machine_type, accelerator, count = res.vertex_machine(cfg.machine_table, gpu_type, r.gpus, cfg.accelerator_count)
    return {"machineType": machine_type, "acceleratorType": accelerator, "acceleratorCount": count}


def render_custom_job(job: Job, env_names: list[str] | tuple[str, ...], cfg: VertexConfig) -> dict[str, Any]:
    """The CustomJob as REST JSON. More than one node: Vertex wants the first pool (the chief) to
    have exactly one replica, so the others go in a second, identical pool."""
    if not cfg.project:
        raise _config_error("VERTEX_PROJECT (or PROJECT_ID) is not set")
    if not cfg.image_uri:
        raise _config_error("VERTEX_IMAGE_URI is not set")
    machine = machine_spec(job, cfg)
    nproc = max(int(machine.get("acceleratorCount") or 0), 1)
    container: dict[str, Any] = {
        "imageUri": cfg.image_uri,
        "command": list(LAUNCH_COMMAND),
        "args": [f"--nproc_per_node={nproc}", "--", *job.args],
    }
    env = secret_env(env_names, cfg)
    if env:
        container["env"] = env
    chief = {"machineSpec": machine, "replicaCount": 1, "containerSpec": container}
    pools = [chief]
    nodes = job.resources.nodes or cfg.replica_count
    if nodes > 1:
        pools.append({"machineSpec": dict(machine), "replicaCount": nodes - 1, "containerSpec": json.loads(json.dumps(container))})
    spec: dict[str, Any] = {"workerPoolSpecs": pools}
    if job.resources.max_duration_minutes is not None:
        spec["scheduling"] = {"timeout": f"{job.resources.max_duration_minutes * 60}s"}
    if cfg.service_account:
        spec["serviceAccount"] = cfg.service_account
    if cfg.network:
        spec["network"] = cfg.network
    return {
        "displayName": naming.vertex_display_name(job.name, job.id),
        "labels": {
            naming.VERTEX_JOB_ID_LABEL: naming.gcp_label_value(job.id),
            naming.VERTEX_MANAGED_BY_LABEL: naming.MANAGED_BY,
        },
        "jobSpec": spec,
    }


def to_proto(spec: dict[str, Any]) -> Any:
    """The client's `CustomJob` from our JSON; a bad enum name (VERTEX_ACCELERATOR_TYPE) is an InvalidSpec."""
    from google.cloud import aiplatform_v1

    try:
        return aiplatform_v1.CustomJob.from_json(json.dumps(spec))
    except Exception as exc:  # noqa: BLE001 - json_format.ParseError and friends
        raise PermanentError(
            f"the rendered CustomJob is invalid: {exc}", reason="InvalidSpec", failure_class=FailureClass.INFRA.value
        ) from exc


# ---- errors ----------------------------------------------------------------------------------------


def _google_status(exc: Any) -> str | None:
    """The `error.status` word (`FAILED_PRECONDITION`, ...) of a REST error response, when there is one."""
    response = getattr(exc, "response", None)
    try:
        return response.json()["error"]["status"]  # type: ignore[union-attr]
    except Exception:  # noqa: BLE001
        return None


def api_error(exc: BaseException, what: str) -> PlatformError:
    import requests
    from google.api_core import exceptions as gexc
    from google.auth import exceptions as auth_exc

    if isinstance(exc, gexc.GoogleAPICallError):
        return error_for_status(exc.code if isinstance(exc.code, int) else None, exc.message or "", what=what)
    if isinstance(exc, gexc.RetryError):
        return TransientError(f"{what}: retries exhausted: {exc}")
    if isinstance(exc, (requests.exceptions.Timeout, requests.exceptions.ConnectionError)):
        return TransientError(f"{what}: {type(exc).__name__}")
    if isinstance(exc, auth_exc.DefaultCredentialsError):
        return PermanentError(f"{what}: no Google credentials: {exc}", reason="CredentialsError", failure_class=FailureClass.INFRA.value)
    if isinstance(exc, (auth_exc.RefreshError, auth_exc.TransportError)):
        return TransientError(f"{what}: could not refresh credentials: {exc}")
    return PermanentError(f"{what}: {type(exc).__name__}: {exc}", reason="VertexError", failure_class=FailureClass.INFRA.value)


# ---- the adapter -----------------------------------------------------------------------------------


def make_client(cfg: VertexConfig) -> Any:
    from google.cloud import aiplatform_v1

    try:
        return aiplatform_v1.JobServiceClient(transport="rest", client_options={"api_endpoint": cfg.api_endpoint})
    except Exception as exc:  # noqa: BLE001 - credentials and the like
        raise api_error(exc, "create the Vertex AI client") from exc


@dataclass
class VertexBackend:
    """`Backend` for Vertex AI. `client` (a JobServiceClient) is built on first use unless given."""

    config: VertexConfig
    client: Any = None
    client_factory: Callable[[VertexConfig], Any] = make_client
    timeout: float = 30.0  # seconds per call
    name: str = field(default="vertex", init=False)

    def submit(self, job: Job, env: dict[str, str]) -> Submission:
        cfg = self.config
        names = sorted(set(env) | set(job.env_names))
        spec = render_custom_job(job, names, cfg)
        proto = to_proto(spec)
        if not cfg.submit:
            return Submission(external_id=spec["displayName"], manifest=spec, dry_run=True, status_reason=DRY_RUN_REASON)

        existing = self._find(job)
        if existing:
            adopted = self._oldest(existing)
            log.info("job %s: adopted the existing CustomJob %s", job.id, adopted.name)
            return Submission(external_id=adopted.name, manifest=spec)
        try:
            created = self._get_client().create_custom_job(parent=cfg.parent, custom_job=proto, timeout=self.timeout)
        except Exception as exc:  # noqa: BLE001
            raise api_error(exc, f"create CustomJob in {cfg.parent}") from exc
        # Converge when two attempts raced past the list: the oldest wins, the others cancel themselves.
        winner = self._oldest(self._find(job) or [created])
        if winner.name != created.name:
            log.warning("job %s: a concurrent attempt created %s first; cancelling our %s", job.id, winner.name, created.name)
            self._cancel_name(created.name)
        return Submission(external_id=winner.name, manifest=spec)

    def cancel(self, job: Job) -> bool | None:
        """`cancel_custom_job`. True: requested (Vertex reports JOB_STATE_CANCELLED later); False: no
        such CustomJob; None: it had already finished (its own final state stands)."""
        name = job.external_id
        if not name or "/customJobs/" not in name:
            found = self._find(job)
            if not found:
                return False
            name = self._oldest(found).name
        return self._cancel_name(name)

    def observe(self, job: Job) -> Observation | None:
        """For reconcile: the CustomJob's `JOB_STATE_*` (and its error message), None if Vertex has no such
        job (never a guessed terminal state)."""
        from google.api_core import exceptions as gexc

        name = job.external_id
        if not name or "/customJobs/" not in name:
            found = self._find(job)
            if not found:
                return None
            name = self._oldest(found).name
        try:
            current = self._get_client().get_custom_job(name=name, timeout=self.timeout)
        except gexc.NotFound:
            return None
        except Exception as exc:  # noqa: BLE001
            raise api_error(exc, f"get CustomJob {name}") from exc
        state = getattr(current.state, "name", None) or str(current.state)
        message = current.error.message if getattr(current, "error", None) and current.error.message else None
        return Observation(state, message=message)

    # ---- helpers -------------------------------------------------------------------------------
    def _get_client(self) -> Any:
        if self.client is None:
            self.client = self.client_factory(self.config)
        return self.client

    def _find(self, job: Job) -> list[Any]:
        request = {"parent": self.config.parent, "filter": naming.vertex_label_filter(job.id)}
        try:
            return list(self._get_client().list_custom_jobs(request=request, timeout=self.timeout))
        except Exception as exc:  # noqa: BLE001
            raise api_error(exc, f"list CustomJobs in {self.config.parent}") from exc

    @staticmethod
    def _oldest(jobs: list[Any]) -> Any:
        def key(j: Any) -> tuple[str, int, str]:
            created = j.create_time.isoformat() if getattr(j, "create_time", None) else ""
            return (created, len(j.name), j.name)

        return min(jobs, key=key)

    def _cancel_name(self, name: str) -> bool | None:
        from google.api_core import exceptions as gexc

        try:
            self._get_client().cancel_custom_job(name=name, timeout=self.timeout)
            return True
        except gexc.NotFound:
            log.info("CustomJob %s is gone: nothing to cancel", name)
            return False
        except gexc.GoogleAPICallError as exc:
            if exc.code == 400 and _google_status(exc) == "FAILED_PRECONDITION":
                log.info("CustomJob %s already finished: nothing to cancel", name)
                return None
            raise api_error(exc, f"cancel CustomJob {name}") from exc
        except Exception as exc:  # noqa: BLE001
            raise api_error(exc, f"cancel CustomJob {name}") from exc
