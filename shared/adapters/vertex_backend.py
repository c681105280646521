"""Vertex AI backend: one job becomes one CustomJob (`aiplatform_v1.JobServiceClient`).

Rendering is pure (`render_custom_job`): the job and a `VertexConfig` give the CustomJob as REST JSON
(camelCase, the shape stored with the job and the one `CustomJob.from_json` reads). Secrets never
enter the spec. With per-job secrets (`VERTEX_JOB_SECRETS=1`, the default) the launcher puts the job's
secret variables (`HF_TOKEN`, `TRAINING_PLATFORM_CREDENTIALS`, `env` values), as one JSON object, in a
Secret Manager secret of the job's own (`SecretManager` below: id derived from the job id, labelled and
annotated with it, a TTL as a backstop), adds a version, and passes that version's resource name in
one variable, `TRAINING_PLATFORM_SECRET_REF`; the trainer (`trainer/secrets.py`) reads it at start and
exports the variables before anything reads them. The secret is deleted once the job is final
(`release`, called by status_sync; reconcile sweeps what `held` still lists), and at once when the
submit that created it is refused. Switched off, or for a variable the launch message no longer
carries, the operator's per-name references remain (`HF_TOKEN` -> `HF_TOKEN_SECRET=<VERTEX_HF_TOKEN_SECRET>`);
a secret with neither is refused by the api (a `400` naming the field and the setting) and, should one
reach the launcher, here (`PermanentError`) rather than dropped or passed by value. A dry run renders
visible placeholder references instead, so the spec can be shown.

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

import base64
import hashlib
import json
import logging
import re
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
# The one variable that names the job's own secret version (read by trainer/secrets.py: keep in step).
JOB_SECRET_ENV = "TRAINING_PLATFORM_SECRET_REF"
JOB_SECRET_ENDPOINT_ENV = "TRAINING_PLATFORM_SECRET_ENDPOINT"
JOB_SECRET_PLACEHOLDER = "[the job's own Secret Manager secret version, created at submit, holding {names}]"
SECRET_MANAGER_ENDPOINT = "https://secretmanager.googleapis.com"
# Secret Manager's limit on one version's payload.
MAX_SECRET_PAYLOAD_BYTES = 65536
JOB_ID_ANNOTATION = "training-platform/job-id"
_SECRET_ID_SAFE = re.compile(r"[A-Za-z0-9_-]{1,200}")


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
    # Per-job Secret Manager secrets (see the module docstring); off: per-name references only.
    job_secrets: bool = True
    secret_project: str | None = None  # default: `project`
    secret_endpoint: str = SECRET_MANAGER_ENDPOINT
    secret_ttl_seconds: int = 8 * 24 * 3600  # 0: none

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
            job_secrets=settings.vertex_job_secrets,
            secret_project=settings.vertex_secret_project,
            secret_endpoint=settings.vertex_secret_manager_endpoint,
            secret_ttl_seconds=settings.vertex_secret_ttl_seconds,
        )

    @property
    def parent(self) -> str:
        return f"projects/{self.project}/locations/{self.region}"

    @property
    def api_endpoint(self) -> str:
        return f"{self.region}-aiplatform.googleapis.com"

    @property
    def secrets_parent(self) -> str:
        return f"projects/{self.secret_project or self.project}"


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


def job_secret_id(job_id: str) -> str:
    """The job's own secret: its id derives from the job id (so every attempt finds the same one)."""
    if _SECRET_ID_SAFE.fullmatch(job_id):
        return f"training-job-{job_id}"
    return "training-job-h-" + hashlib.sha256(job_id.encode()).hexdigest()[:40]


def job_secret_payload(values: dict[str, str]) -> bytes:
    """The secret variables as one JSON object; over Secret Manager's limit a PermanentError (user)."""
    payload = json.dumps(values, sort_keys=True, separators=(",", ":")).encode()
    if len(payload) > MAX_SECRET_PAYLOAD_BYTES:
        raise PermanentError(
            f"the job's secret variables ({', '.join(sorted(values))}) take {len(payload)} bytes; Secret Manager holds at most "
            f"{MAX_SECRET_PAYLOAD_BYTES}",
            reason="SecretTooLarge",
            failure_class=FailureClass.USER.value,
        )
    return payload


def job_secret_env(by_value: list[str] | tuple[str, ...], cfg: VertexConfig, version: str | None) -> list[dict[str, str]]:
    """The variable naming the job's own secret version (a placeholder until one exists) and, when the
    endpoint is not the public one, where the trainer finds it."""
    if not by_value:
        return []
    ref = version or JOB_SECRET_PLACEHOLDER.format(names=", ".join(sorted(by_value)))
    env = [{"name": JOB_SECRET_ENV, "value": ref}]
    if cfg.secret_endpoint.rstrip("/") != SECRET_MANAGER_ENDPOINT:
        env.append({"name": JOB_SECRET_ENDPOINT_ENV, "value": cfg.secret_endpoint})
    return env


def render_custom_job(
    job: Job,
    env_names: list[str] | tuple[str, ...],
    cfg: VertexConfig,
    *,
    by_value: list[str] | tuple[str, ...] | None = None,
    job_secret: str | None = None,
) -> dict[str, Any]:
    """The CustomJob as REST JSON. More than one node: Vertex wants the first pool (the chief) to
    have exactly one replica, so the others go in a second, identical pool. `by_value`: the secret
    variables the job's own secret carries (default: all of them with `job_secrets`, else none), the
    others go by per-name reference; `job_secret`: that secret's version (None: a placeholder)."""
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
    if by_value is None:
        by_value = list(env_names) if cfg.job_secrets else []
    env = job_secret_env(by_value, cfg, job_secret) + secret_env([n for n in env_names if n not in by_value], cfg)
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


# ---- Secret Manager (REST, through google-auth's AuthorizedSession: no client library needed) ----------


def _authorized_session(endpoint: str = SECRET_MANAGER_ENDPOINT) -> Any:
    """Google credentials for the public endpoint; none for a plain-HTTP one (a local fake: a token is
    never sent in the clear)."""
    import requests

    if endpoint.startswith("http://"):
        return requests.Session()
    import google.auth
    from google.auth.transport.requests import AuthorizedSession

    credentials, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
    return AuthorizedSession(credentials)


@dataclass
class SecretManager:
    """The few Secret Manager calls the launcher makes: create a secret, add a version, delete, list ours.
    `session` (a `requests.Session`-like object; production: an AuthorizedSession) is built on first use.
    Every failure is wrapped once, here, through the status table (`http_errors.py`); a payload is never
    part of an error message."""

    parent: str  # projects/P
    endpoint: str = SECRET_MANAGER_ENDPOINT
    session: Any = None
    session_factory: Callable[[str], Any] = _authorized_session
    timeout: float = 30.0

    def _call(self, method: str, path: str, what: str, *, ok: tuple[int, ...] = (200,), secrets: tuple[str, ...] = (), **kwargs: Any) -> tuple[int, dict[str, Any]]:
        try:
            if self.session is None:
                self.session = self.session_factory(self.endpoint)
            response = self.session.request(method, f"{self.endpoint.rstrip('/')}/v1/{path}", timeout=self.timeout, **kwargs)
        except Exception as exc:  # noqa: BLE001 - requests and google.auth errors
            raise api_error(exc, what) from exc
        try:
            body = response.json() if response.content else {}
        except ValueError:
            body = {}
        if response.status_code in ok:
            return response.status_code, body if isinstance(body, dict) else {}
        message = ((body.get("error") or {}).get("message") if isinstance(body, dict) else None) or response.text[:300]
        raise error_for_status(response.status_code, str(message), what=what, secrets=secrets)

    def create(self, secret_id: str, *, labels: dict[str, str], annotations: dict[str, str], ttl_seconds: int) -> bool:
        """Create the secret (no version yet). True: created; False: it existed (an earlier attempt's)."""
        body: dict[str, Any] = {"replication": {"automatic": {}}, "labels": labels, "annotations": annotations}
        if ttl_seconds > 0:
            body["ttl"] = f"{ttl_seconds}s"
        status, _ = self._call("POST", f"{self.parent}/secrets", f"create secret {self.parent}/secrets/{secret_id}",
                               ok=(200, 409), params={"secretId": secret_id}, json=body)
        return status == 200

    def add_version(self, secret_id: str, payload: bytes, secrets: tuple[str, ...] = ()) -> str:
        """Add a version holding `payload`; its resource name (what the trainer accesses)."""
        data = base64.b64encode(payload).decode()
        _, body = self._call("POST", f"{self.parent}/secrets/{secret_id}:addVersion", f"add a version to secret {secret_id}",
                             secrets=secrets, json={"payload": {"data": data}})
        name = body.get("name")
        if not isinstance(name, str) or "/versions/" not in name:
            raise TransientError(f"add a version to secret {secret_id}: the answer names no version")
        return name

    def delete(self, secret_id: str) -> bool:
        """Delete the secret and its versions. False: there was none (already deleted: success)."""
        status, _ = self._call("DELETE", f"{self.parent}/secrets/{secret_id}", f"delete secret {self.parent}/secrets/{secret_id}", ok=(200, 404))
        return status == 200

    def list_ours(self) -> list[dict[str, Any]]:
        """The secrets this platform made (by label), every page."""
        out: list[dict[str, Any]] = []
        token = ""
        for _ in range(1000):  # bounded: 1000 pages of 250
            params = {"filter": f"labels.{naming.VERTEX_MANAGED_BY_LABEL}={naming.MANAGED_BY}", "pageSize": 250}
            if token:
                params["pageToken"] = token
            _, body = self._call("GET", f"{self.parent}/secrets", f"list secrets in {self.parent}", params=params)
            out += [s for s in body.get("secrets") or [] if isinstance(s, dict)]
            token = body.get("nextPageToken") or ""
            if not token:
                break
        return out


# ---- the adapter -----------------------------------------------------------------------------------


def _job_secret_of(custom_job: Any) -> str | None:
    """The job-secret version an existing CustomJob was created with (for the spec stored on adoption)."""
    try:
        for item in custom_job.job_spec.worker_pool_specs[0].container_spec.env:
            if item.name == JOB_SECRET_ENV:
                return str(item.value)
    except (AttributeError, IndexError):
        pass
    return None


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
    # Secret Manager (per-job secrets); built from the config on first use unless given.
    secrets: SecretManager | None = None
    name: str = field(default="vertex", init=False)

    def submit(self, job: Job, env: dict[str, str]) -> Submission:
        cfg = self.config
        names = sorted(set(env) | set(job.env_names))
        # The message's values go in the job's own secret; a name it no longer carries (a relaunch)
        # can only go by the operator's per-name reference.
        by_value = [n for n in names if n in env] if cfg.job_secrets else []
        # ... and one with neither is lost, which only adopting an existing CustomJob survives.
        lost = [n for n in names if n not in env and n not in cfg.secret_refs] if cfg.job_secrets else []
        spec = render_custom_job(job, names, cfg, by_value=by_value + lost)
        proto = to_proto(spec)
        if not cfg.submit:
            return Submission(external_id=spec["displayName"], manifest=spec, dry_run=True, status_reason=DRY_RUN_REASON)

        existing = self._find(job)
        if existing:
            adopted = self._oldest(existing)
            log.info("job %s: adopted the existing CustomJob %s", job.id, adopted.name)
            return Submission(external_id=adopted.name, manifest=render_custom_job(job, names, cfg, by_value=by_value + lost, job_secret=_job_secret_of(adopted)))
        if lost:
            raise PermanentError(
                f"the values of {', '.join(lost)} are no longer available (the launch was retried without them) and no CustomJob of this job exists: submit the job again",
                reason="SecretValuesUnavailable",
                failure_class=FailureClass.INFRA.value,
            )
        version, secret_created = self._store_secret(job, {n: env[n] for n in by_value}) if by_value else (None, False)
        if version is not None:
            spec = render_custom_job(job, names, cfg, by_value=by_value, job_secret=version)
            proto = to_proto(spec)
        try:
            created = self._get_client().create_custom_job(parent=cfg.parent, custom_job=proto, timeout=self.timeout)
        except Exception as exc:  # noqa: BLE001
            error = api_error(exc, f"create CustomJob in {cfg.parent}")
            # Refused for good: no CustomJob will read the secret, so its values don't stay behind. A
            # transient failure keeps it: the create may have happened, and the retry adopts that job.
            if secret_created and isinstance(error, PermanentError):
                self._delete_secret_quietly(job.id)
            raise error from exc
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

    def release(self, job: Job) -> None:
        """Delete the job's own secret (idempotent: none is success). Jobs without secret variables, and
        dry runs, never had one."""
        if job.dry_run or not job.env_names or not self.config.submit:
            return
        if self._secret_manager().delete(job_secret_id(job.id)):
            log.info("job %s: deleted its Secret Manager secret", job.id)

    def held(self) -> list[str]:
        """The job ids whose secrets still exist (from the annotation each was created with)."""
        if not self.config.submit or not self.config.job_secrets:
            return []
        ids = [(s.get("annotations") or {}).get(JOB_ID_ANNOTATION) for s in self._secret_manager().list_ours()]
        return [i for i in ids if isinstance(i, str) and i]

    # ---- helpers -------------------------------------------------------------------------------
    def _secret_manager(self) -> SecretManager:
        if self.secrets is None:
            self.secrets = SecretManager(self.config.secrets_parent, endpoint=self.config.secret_endpoint, timeout=self.timeout)
        return self.secrets

    def _store_secret(self, job: Job, values: dict[str, str]) -> tuple[str, bool]:
        """The job's secret, created (or an earlier attempt's adopted), with a new version holding
        `values`: (the version's name, whether this call created the secret)."""
        from shared.domain.redaction import secret_values

        payload = job_secret_payload(values)
        sm = self._secret_manager()
        secret_id = job_secret_id(job.id)
        labels = {naming.VERTEX_JOB_ID_LABEL: naming.gcp_label_value(job.id), naming.VERTEX_MANAGED_BY_LABEL: naming.MANAGED_BY}
        created = sm.create(secret_id, labels=labels, annotations={JOB_ID_ANNOTATION: job.id}, ttl_seconds=self.config.secret_ttl_seconds)
        try:
            version = sm.add_version(secret_id, payload, secrets=secret_values(values))
        except PermanentError:
            if created:
                self._delete_secret_quietly(job.id)
            raise
        return version, created

    def _delete_secret_quietly(self, job_id: str) -> None:
        try:
            self._secret_manager().delete(job_secret_id(job_id))
        except PlatformError as exc:  # reconcile's sweep (held) deletes it later
            log.warning("job %s: could not delete its secret now (%s): reconcile will", job_id, exc)

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
