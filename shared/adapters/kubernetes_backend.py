"""Kubernetes backend: one job becomes one `batch/v1` Job (and, when it has secrets, one Secret it owns;
for several nodes, one headless Service it owns).

Rendering is pure (`render_job`, `render_secret`, `render_manifest`): it takes the job, the names of its
secret variables and a `KubernetesConfig`, and returns plain dicts, so the unit tests pin every
`K8S_*` variable's effect without a server. Every manifest is checked against the Kubernetes schema
(`kubernetes-validate`, strict) before anything is sent; a spec that fails is a `PermanentError`.

Exactly once (see `shared/usecases/launching.py`): every name derives from the job (`shared/domain/naming.py`),
so a second attempt (redelivery, crash after create) meets `409 AlreadyExists` and adopts what the
first created, after checking the object carries this job's id label. Order of writes:
1. the Secret (`HF_TOKEN` and `env` values; the Job can't start without it), created or adopted;
2. the Job, created or adopted; its container reads each secret through `secretKeyRef`;
3. the Secret gets an `ownerReference` to the Job (patched in unless already there), so deleting the
   Job (`propagationPolicy: Foreground`) removes the Secret with it.
A crash between any two steps is repaired by the next attempt. Vendor errors are wrapped once, here
(`api_error`), through the shared status table in `http_errors.py`.

Resources (the request's `resources`, the settings as defaults): `gpus` -> `nvidia.com/gpu` requests and
limits, `gpu_type` -> the node selector of `K8S_GPU_NODE_SELECTORS`, `cpus` / `memory_gb` -> `cpu` /
`memory`, `max_duration_minutes` -> `activeDeadlineSeconds`, more than one GPU -> an in-memory `/dev/shm`
(NCCL and the data loader workers share memory through it; the container default is 64 MiB). The
container runs `python -m trainer.launch --nproc_per_node=<GPUs> -- <train.py flags>`: one trainer
process per GPU. `nodes > 1` -> an Indexed Job (completions = parallelism = nodes; the Job controller
names each pod's host `<job>-<index>`), a headless Service of the same name as its `subdomain` (so
`<job>-0.<job>` resolves to rank 0's pod), and the rendezvous torchrun reads: `PET_NNODES`,
`PET_NPROC_PER_NODE`, `PET_NODE_RANK` (the completion index, through the downward API),
`PET_MASTER_ADDR` (the index-0 pod), `PET_MASTER_PORT`. The Service is created after the Job with an
`ownerReference` to it, so it goes with the Job. `K8S_KUEUE_QUEUE` labels the Job for Kueue's gang
admission (all pods or none).

`K8S_APPLY=0` (the default, as in the old service) sends nothing: the manifest is rendered, validated
and stored (secrets redacted) and the job stays `submitted` with a `statusReason` saying so.
"""

from __future__ import annotations

import functools
import re

import base64
import copy
import json
import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from shared.adapters.http_errors import error_for_status
from shared.domain import naming
from shared.domain.job import REDACTED, Job
from shared.domain.redaction import redact, secret_values
from shared.domain.resources import DEFAULT_K8S_GPU_NODE_SELECTORS
from shared.domain.status import FailureClass
from shared.errors import PermanentError, PlatformError, TransientError
from shared.ports import Submission

log = logging.getLogger(__name__)

CONTAINER_NAME = "trainer"
COMPONENT = "trainer"
DRY_RUN_REASON = "DryRun: K8S_APPLY=0, so the manifest was rendered, validated and stored but not sent to the cluster"
FOREGROUND = "Foreground"
DEFAULT_SCHEMA_VERSION = "1.30"
GPU_RESOURCE = "nvidia.com/gpu"
COMPLETION_INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
LAUNCH_COMMAND = ["python", "-m", "trainer.launch"]
SHM_VOLUME = "dshm"
DEFAULT_MASTER_PORT = 29500


@dataclass(frozen=True)
class KubernetesConfig:
    """The `K8S_*` settings the adapter uses, JSON values already parsed (see `shared/settings.py`)."""

    image: str | None = None
    namespace: str = "default"
    service_account: str | None = None
    apply: bool = False
    kubeconfig: str | None = None
    context: str | None = None
    node_selector: dict[str, Any] | None = None
    tolerations: list[Any] | None = None
    image_pull_secrets: list[Any] | None = None
    backoff_limit: int = 0
    ttl_seconds_after_finished: int | None = None
    resource_limits: dict[str, Any] | None = None
    # GPU type (canonical name) -> the node selector that places it (K8S_GPU_NODE_SELECTORS).
    gpu_node_selectors: dict[str, dict[str, str]] = field(default_factory=lambda: copy.deepcopy(DEFAULT_K8S_GPU_NODE_SELECTORS))
    kueue_queue: str | None = None
    master_port: int = DEFAULT_MASTER_PORT
    # Kubernetes version whose schema the manifests are validated against (the oldest we support).
    schema_version: str = DEFAULT_SCHEMA_VERSION

    @classmethod
    def from_settings(cls, settings: Any) -> "KubernetesConfig":
        return cls(
            image=settings.k8s_training_image,
            namespace=settings.k8s_namespace,
            service_account=settings.k8s_service_account,
            apply=settings.k8s_apply,
            kubeconfig=settings.k8s_kubeconfig,
            context=settings.k8s_context,
            node_selector=settings.json_value("K8S_NODE_SELECTOR"),
            tolerations=settings.json_value("K8S_TOLERATIONS"),
            image_pull_secrets=settings.json_value("K8S_IMAGE_PULL_SECRETS"),
            backoff_limit=settings.k8s_backoff_limit,
            ttl_seconds_after_finished=settings.k8s_ttl_seconds_after_finished,
            resource_limits=settings.json_value("K8S_RESOURCE_LIMITS"),
            gpu_node_selectors=settings.gpu_node_selectors,
            kueue_queue=settings.k8s_kueue_queue,
            master_port=settings.k8s_master_port,
        )


def _config_error(message: str) -> PermanentError:
    return PermanentError(message, reason="InvalidConfig", failure_class=FailureClass.INFRA.value)


# ---- rendering (pure) ------------------------------------------------------------------------------


def labels_for(job: Job) -> dict[str, str]:
    return {
        naming.K8S_MANAGED_BY_LABEL: naming.MANAGED_BY,
        naming.K8S_COMPONENT_LABEL: COMPONENT,
        naming.K8S_JOB_ID_LABEL: naming.k8s_label_value(job.id),
    }


def annotations_for(job: Job) -> dict[str, str]:
    return {naming.K8S_JOB_ID_ANNOTATION: job.id, naming.K8S_JOB_NAME_ANNOTATION: job.name}


def _quantity(name: str, value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)) or value == "":
        raise _config_error(f"K8S_RESOURCE_LIMITS[{name!r}] must be a number or a quantity string, got {value!r}")
    return str(value)


def _pull_secrets(items: list[Any]) -> list[dict[str, str]]:
    out = []
    for i, item in enumerate(items):
        if isinstance(item, str) and item:
            out.append({"name": item})
        elif isinstance(item, dict) and isinstance(item.get("name"), str) and item["name"]:
            out.append({"name": item["name"]})
        else:
            raise _config_error(f"K8S_IMAGE_PULL_SECRETS[{i}] must be a name or an object with a name, got {item!r}")
    return out


def job_name(job: Job) -> str:
    """The Job's name. Several nodes: short enough that each pod's host name `<name>-<index>` is a DNS
    label too (63 characters); derived from the job alone, so every attempt finds the same name."""
    name = naming.k8s_job_name(job.name, job.id)
    nodes = job.resources.node_count
    if nodes > 1:
        # The Service shares the name, and a Service's name must start with a letter (DNS-1035).
        room = naming.K8S_NAME_MAX - len(str(nodes - 1)) - 1
        if len(name) > room or not name[0].isalpha():
            suffix = naming.job_suffix(job.id)
            base = naming.dns_label(job.name, room - len(suffix) - 2) or naming.FALLBACK_BASE
            base = base if base[0].isalpha() else f"j{base}"
            name = f"{base}-{suffix}"
    return name


def _gpu_count(limits: Mapping[str, str]) -> int:
    raw = limits.get(GPU_RESOURCE)
    try:
        return max(int(str(raw)), 0) if raw is not None else 0
    except ValueError:
        raise _config_error(f"K8S_RESOURCE_LIMITS[{GPU_RESOURCE!r}] must be a whole number of GPUs, got {raw!r}") from None


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def container_limits(job: Job, cfg: KubernetesConfig) -> dict[str, str]:
    """K8S_RESOURCE_LIMITS with the request's `gpus`, `cpus` and `memory_gb` over it."""
    limits = {k: _quantity(k, v) for k, v in (cfg.resource_limits or {}).items()}
    res = job.resources
    if res.gpus is not None:
        if res.gpus > 0:
            limits[GPU_RESOURCE] = str(res.gpus)
        else:
            limits.pop(GPU_RESOURCE, None)
    if res.cpus is not None:
        limits["cpu"] = _number(res.cpus)
    if res.memory_gb is not None:
        limits["memory"] = f"{_number(res.memory_gb)}Gi"
    return limits


def node_selector(job: Job, cfg: KubernetesConfig) -> dict[str, str]:
    selector: dict[str, Any] = dict(cfg.node_selector or {})
    gpu_type = job.resources.gpu_type
    if gpu_type is not None:
        if gpu_type not in cfg.gpu_node_selectors:  # the api checks against the same table; a changed one lands here
            have = ", ".join(cfg.gpu_node_selectors) or "none"
            raise PermanentError(
                f"no node selector for GPU type {gpu_type} in K8S_GPU_NODE_SELECTORS (it has {have})",
                reason="Unplaceable",
                failure_class=FailureClass.USER.value,
            )
        selector.update(cfg.gpu_node_selectors[gpu_type])
    bad = [k for k, v in selector.items() if not isinstance(v, str)]
    if bad:
        raise _config_error(f"K8S_NODE_SELECTOR values must be strings (bad: {', '.join(bad)})")
    return selector


def _rendezvous_env(name: str, nodes: int, nproc: int, cfg: KubernetesConfig) -> list[dict[str, Any]]:
    """What torchrun reads on each pod of a several-node job (trainer/launch.py reads the same names)."""
    return [
        {"name": "PET_NNODES", "value": str(nodes)},
        {"name": "PET_NPROC_PER_NODE", "value": str(nproc)},
        {"name": "PET_NODE_RANK", "valueFrom": {"fieldRef": {"fieldPath": f"metadata.annotations['{COMPLETION_INDEX_ANNOTATION}']"}}},
        # The Job controller sets each pod's hostname to `<job>-<index>`; the subdomain makes it resolvable.
        {"name": "PET_MASTER_ADDR", "value": f"{name}-0.{name}"},
        {"name": "PET_MASTER_PORT", "value": str(cfg.master_port)},
    ]


def render_job(job: Job, env_names: list[str] | tuple[str, ...], cfg: KubernetesConfig) -> dict[str, Any]:
    """The Job manifest. `env_names`: the secret variables, each read from the job's Secret."""
    if not cfg.image:
        raise _config_error("K8S_TRAINING_IMAGE is not set")
    name = job_name(job)
    secret = naming.k8s_secret_name(job.name, job.id)
    labels = labels_for(job)
    limits = container_limits(job, cfg)
    gpus = _gpu_count(limits)
    nproc = max(gpus, 1)  # no GPU: one CPU process
    nodes = job.resources.node_count
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": cfg.image,
        "command": list(LAUNCH_COMMAND),
        "args": [f"--nproc_per_node={nproc}", "--", *job.args],
    }
    env: list[dict[str, Any]] = [
        {"name": n, "valueFrom": {"secretKeyRef": {"name": secret, "key": n}}} for n in sorted(env_names)
    ]
    if nodes > 1:
        env += _rendezvous_env(name, nodes, nproc, cfg)
    if env:
        container["env"] = env
    if limits:
        # Requests = limits: extended resources (GPUs) require it, and the pod gets a predictable QoS.
        container["resources"] = {"limits": limits, "requests": dict(limits)}
    pod: dict[str, Any] = {"restartPolicy": "Never", "containers": [container]}
    if gpus > 1:
        pod["volumes"] = [{"name": SHM_VOLUME, "emptyDir": {"medium": "Memory"}}]
        container["volumeMounts"] = [{"name": SHM_VOLUME, "mountPath": "/dev/shm"}]
    if cfg.service_account:
        pod["serviceAccountName"] = cfg.service_account
    selector = node_selector(job, cfg)
    if selector:
        pod["nodeSelector"] = selector
    if cfg.tolerations:
        if not all(isinstance(t, dict) for t in cfg.tolerations):
            raise _config_error("K8S_TOLERATIONS must be a JSON array of objects")
        pod["tolerations"] = copy.deepcopy(cfg.tolerations)
    if cfg.image_pull_secrets:
        pod["imagePullSecrets"] = _pull_secrets(cfg.image_pull_secrets)
    if nodes > 1:
        pod["subdomain"] = name
    spec: dict[str, Any] = {
        "backoffLimit": cfg.backoff_limit,
        "template": {"metadata": {"labels": dict(labels), "annotations": annotations_for(job)}, "spec": pod},
    }
    if nodes > 1:
        spec.update({"completionMode": "Indexed", "completions": nodes, "parallelism": nodes})
    if job.resources.max_duration_minutes is not None:
        spec["activeDeadlineSeconds"] = job.resources.max_duration_minutes * 60
    if cfg.ttl_seconds_after_finished is not None:
        spec["ttlSecondsAfterFinished"] = cfg.ttl_seconds_after_finished
    job_labels = dict(labels)
    if cfg.kueue_queue:
        job_labels[KUEUE_QUEUE_LABEL] = cfg.kueue_queue
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": cfg.namespace, "labels": job_labels, "annotations": annotations_for(job)},
        "spec": spec,
    }


def render_service(job: Job, cfg: KubernetesConfig) -> dict[str, Any]:
    """The headless Service of a several-node job: DNS names for its pods (`<job>-<index>.<job>`).
    `publishNotReadyAddresses`: rank 0 must be resolvable while the others start, before any is ready."""
    name = job_name(job)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": cfg.namespace, "labels": labels_for(job), "annotations": annotations_for(job)},
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": {naming.K8S_JOB_ID_LABEL: naming.k8s_label_value(job.id), naming.K8S_COMPONENT_LABEL: COMPONENT},
            "ports": [{"name": "rendezvous", "port": cfg.master_port, "protocol": "TCP"}],
        },
    }


def render_secret(job: Job, values: Mapping[str, str], cfg: KubernetesConfig) -> dict[str, Any]:
    """The per-job Secret. Pass `redacted_values(names)` for anything that is stored or logged."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": naming.k8s_secret_name(job.name, job.id),
            "namespace": cfg.namespace,
            "labels": labels_for(job),
            "annotations": annotations_for(job),
        },
        "stringData": {k: values[k] for k in sorted(values)},
    }


def redacted_values(names: list[str] | tuple[str, ...]) -> dict[str, str]:
    return {n: REDACTED for n in names}


def render_manifest(job: Job, env_names: list[str] | tuple[str, ...], cfg: KubernetesConfig) -> dict[str, Any]:
    """What is stored with the job: a `v1/List` of the Secret (values redacted), if any, the Job, and for
    several nodes its Service."""
    items = []
    if env_names:
        items.append(render_secret(job, redacted_values(env_names), cfg))
    items.append(render_job(job, env_names, cfg))
    if job.resources.node_count > 1:
        items.append(render_service(job, cfg))
    return {"apiVersion": "v1", "kind": "List", "items": items}


def validate_manifest(manifest: dict[str, Any], version: str = DEFAULT_SCHEMA_VERSION) -> None:
    """Check every item against the strict Kubernetes schema; PermanentError naming the first problem."""
    import jsonschema_rs

    for item in manifest["items"]:
        try:
            _schema_validator(item["kind"], item["apiVersion"], version).validate(item)
        except jsonschema_rs.ValidationError as exc:
            where = ".".join(str(p) for p in exc.instance_path) or "(root)"
            raise PermanentError(
                f"the rendered {item['kind']} is invalid at {where}: {exc.message}",
                reason="InvalidSpec",
                failure_class=FailureClass.INFRA.value,
            ) from None


@functools.lru_cache(maxsize=32)
def _schema_validator(kind: str, api_version: str, version: str) -> Any:
    """kubernetes-validate's strict schema for one kind, compiled once by jsonschema-rs: ~10 us a
    manifest on the launch path (`kubernetes_validate.validate` rebuilds its registry on every call,
    ~30 ms; the pure-Python jsonschema validator takes ~1.7 ms)."""
    import jsonschema_rs
    from kubernetes_validate import utils as kv

    wanted = version[1:] if version.startswith("v") else version
    schema_version = [v for v in kv.all_versions() if kv.major_minor(v) <= kv.major_minor(wanted)][-1]
    group = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    schema_dir = f"v{schema_version}-local-strict"
    schema = kv.schema_contents(f"kubernetes-json-schema/{schema_dir}/{kind.lower()}-{group}.json", wanted)
    definitions = kv.schema_contents(f"kubernetes-json-schema/{schema_dir}/_definitions.json", wanted)
    registry = jsonschema_rs.Registry([(definitions["$id"], definitions)])
    return jsonschema_rs.validator_for(schema, registry=registry)


# ---- errors ----------------------------------------------------------------------------------------


def _status_body(exc: Any) -> dict[str, Any]:
    body = getattr(exc, "body", None)
    if body is None and getattr(exc, "data", None) is not None and isinstance(exc.data, (bytes, str)):
        body = exc.data
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if isinstance(body, str):
        try:
            parsed = json.loads(body)
            return parsed if isinstance(parsed, dict) else {}
        except json.JSONDecodeError:
            return {"message": body}
    return {}


def is_already_exists(exc: BaseException) -> bool:
    from kubernetes.client.exceptions import ApiException

    return isinstance(exc, ApiException) and exc.status == 409 and _status_body(exc).get("reason", "AlreadyExists") == "AlreadyExists"


def is_not_found(exc: BaseException) -> bool:
    from kubernetes.client.exceptions import ApiException

    return isinstance(exc, ApiException) and exc.status == 404


def api_error(exc: BaseException, what: str, secrets: Any = ()) -> PlatformError:
    """Our error for a failed Kubernetes call: the status through the shared table, the message from
    the server's `Status` (never its headers, and with secret values redacted)."""
    import urllib3
    from kubernetes.client.exceptions import ApiException
    from kubernetes.config.config_exception import ConfigException

    if isinstance(exc, ApiException):
        status = exc.status or None
        body = _status_body(exc)
        message = str(body.get("message") or exc.reason or "")
        return error_for_status(status, message, what=what, secrets=secrets)
    if isinstance(exc, urllib3.exceptions.HTTPError):  # timeouts, refused / reset connections
        return TransientError(f"{what}: {type(exc).__name__}: {redact(str(exc), secrets)[:300]}")
    if isinstance(exc, ConfigException):
        return PermanentError(f"{what}: {exc}", reason="KubernetesConfigError", failure_class=FailureClass.INFRA.value)
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return TransientError(f"{what}: {type(exc).__name__}: {exc}")
    return PermanentError(f"{what}: {type(exc).__name__}: {redact(str(exc), secrets)[:300]}", reason="KubernetesError", failure_class=FailureClass.INFRA.value)


# ---- the adapter -----------------------------------------------------------------------------------


def load_api_client(cfg: KubernetesConfig) -> Any:
    """An `ApiClient` from `K8S_KUBECONFIG`/`KUBECONFIG` (+ `K8S_CONTEXT`), else in-cluster config."""
    from kubernetes import client, config
    from urllib3.util.retry import Retry

    configuration = client.Configuration()
    try:
        if cfg.kubeconfig:
            config.load_kube_config(config_file=cfg.kubeconfig, context=cfg.context, client_configuration=configuration)
        else:
            try:
                config.load_incluster_config(client_configuration=configuration)
            except config.ConfigException:
                if not cfg.context:
                    raise
                config.load_kube_config(context=cfg.context, client_configuration=configuration)
    except Exception as exc:  # noqa: BLE001 - whatever the loader raises, it is our configuration
        raise PermanentError(
            f"could not load the Kubernetes configuration: {exc}", reason="KubernetesConfigError", failure_class=FailureClass.INFRA.value
        ) from exc
    # Retry only what never reached the server (connect errors); everything else is the launcher's call.
    configuration.retries = Retry(total=2, connect=2, read=0, status=0, other=0, redirect=0)
    return client.ApiClient(configuration)


@dataclass
class KubernetesBackend:
    """`Backend` for Kubernetes. `api_client` is built on first use (never for a dry run) unless given."""

    config: KubernetesConfig
    api_client: Any = None
    api_client_factory: Callable[[KubernetesConfig], Any] = load_api_client
    # (connect, read) seconds for every call: a stalled API server becomes a TransientError, not a hang.
    # Connect, read. An API server answers a create within a second or two; a longer stall is a fault.
    request_timeout: float | tuple[float, float] = (5.0, 10.0)
    name: str = field(default="kubernetes", init=False)

    # ---- Backend -------------------------------------------------------------------------------
    def submit(self, job: Job, env: dict[str, str]) -> Submission:
        cfg = self.config
        names = sorted(set(env) | set(job.env_names))
        manifest = render_manifest(job, names, cfg)
        validate_manifest(manifest, cfg.schema_version)
        job_body = next(item for item in manifest["items"] if item["kind"] == "Job")
        name = job_body["metadata"]["name"]
        external_id = f"{cfg.namespace}/{name}"
        if not cfg.apply:
            return Submission(external_id=external_id, manifest=manifest, dry_run=True, status_reason=DRY_RUN_REASON)

        secrets = list(secret_values(env))
        secret_obj, secret_created = self._ensure_secret(job, names, env) if names else (None, False)
        try:
            job_obj = self._ensure_job(job, job_body, secrets)
        except PermanentError:
            if secret_obj is not None and secret_created:
                self._delete_quietly("secrets", secret_obj["metadata"]["name"])  # don't leave values behind
            raise
        if secret_obj is not None:
            self._own_secret(secret_obj, job_obj, secrets)
        service = next((item for item in manifest["items"] if item["kind"] == "Service"), None)
        if service is not None:
            try:
                self._ensure_service(job, service, job_obj)
            except PermanentError:
                # Without its Service the ranks can't meet: don't leave the Job holding GPUs (its Secret goes with it).
                self._delete_job_quietly(name)
                raise
        return Submission(external_id=external_id, manifest=manifest)

    def cancel(self, job: Job) -> bool | None:
        """Delete the Job in the foreground (its pods, and its Secret through the ownerReference).
        True: deleted; False: there was no such Job (nothing of this job runs)."""
        namespace, name = self._locate(job)
        batch = self._batch()
        deleted = True
        try:
            batch.delete_namespaced_job(
                name,
                namespace,
                body={"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": FOREGROUND},
                _preload_content=False,
                _request_timeout=self.request_timeout,
            )
        except Exception as exc:  # noqa: BLE001
            if not is_not_found(exc):
                raise api_error(exc, f"delete Job {namespace}/{name}") from exc
            log.info("job %s: Job %s/%s already gone", job.id, namespace, name)
            deleted = False
        # The ownerReference takes the Secret with the Job; this covers a Secret never adopted (crash
        # between its creation and the Job's).
        if job.env_names:
            self._delete_quietly("secrets", naming.k8s_secret_name(job.name, job.id), namespace)
        return deleted

    def release(self, job: Job) -> None:
        """Nothing to free: the job's Secret is owned by its Job and goes with it (garbage collection)."""

    def held(self) -> list[str]:
        return []

    # ---- steps ---------------------------------------------------------------------------------
    def _ensure_secret(self, job: Job, names: list[str], env: dict[str, str]) -> tuple[dict[str, Any], bool]:
        """The job's Secret, created or adopted; True when this call created it."""
        cfg = self.config
        secret_name = naming.k8s_secret_name(job.name, job.id)
        missing = [n for n in names if n not in env]
        core = self._core()
        secrets = list(secret_values(env))
        if not missing:
            body = render_secret(job, {n: env[n] for n in names}, cfg)
            try:
                return self._json(core.create_namespaced_secret(cfg.namespace, body, _preload_content=False, _request_timeout=self.request_timeout)), True
            except Exception as exc:  # noqa: BLE001
                if not is_already_exists(exc):
                    raise api_error(exc, f"create Secret {cfg.namespace}/{secret_name}", secrets) from exc
        existing = self._read("secrets", secret_name, secrets)
        if existing is None:
            raise PermanentError(
                f"the values of {', '.join(missing)} are no longer available (the launch was retried without them) "
                "and no Secret from an earlier attempt exists: submit the job again",
                reason="SecretValuesUnavailable",
                failure_class=FailureClass.INFRA.value,
            )
        self._check_ours(existing, job, "Secret")
        data = existing.get("data") or {}
        stale = {n: env[n] for n in names if n in env and data.get(n) != base64.b64encode(env[n].encode()).decode()}
        absent = [n for n in missing if n not in data]
        if absent:
            raise PermanentError(
                f"the Secret {secret_name} lacks {', '.join(absent)} and their values are no longer available: submit the job again",
                reason="SecretValuesUnavailable",
                failure_class=FailureClass.INFRA.value,
            )
        if stale:
            existing = self._patch("secrets", secret_name, {"stringData": stale}, secrets)
        return existing, False

    def _ensure_job(self, job: Job, body: dict[str, Any], secrets: list[str]) -> dict[str, Any]:
        cfg = self.config
        name = body["metadata"]["name"]
        try:
            return self._json(self._batch().create_namespaced_job(cfg.namespace, body, _preload_content=False, _request_timeout=self.request_timeout))
        except Exception as exc:  # noqa: BLE001
            if not is_already_exists(exc):
                raise api_error(exc, f"create Job {cfg.namespace}/{name}", secrets) from exc
        existing = self._read("jobs", name, secrets)
        if existing is None:  # deleted between our create and our read: let the retry create it again
            raise TransientError(f"Job {cfg.namespace}/{name} existed a moment ago and is gone now")
        self._check_ours(existing, job, "Job")
        log.info("job %s: adopted the existing Job %s/%s", job.id, cfg.namespace, name)
        return existing

    def _ensure_service(self, job: Job, body: dict[str, Any], job_obj: dict[str, Any]) -> None:
        """The headless Service, created owned by the Job (so it goes with it), or adopted and owned."""
        cfg = self.config
        name = body["metadata"]["name"]
        ref = _owner_ref(job_obj)
        created = copy.deepcopy(body)
        created["metadata"]["ownerReferences"] = [ref]
        core = self._core()
        try:
            core.create_namespaced_service(cfg.namespace, created, _preload_content=False, _request_timeout=self.request_timeout)
            return
        except Exception as exc:  # noqa: BLE001
            if not is_already_exists(exc):
                raise api_error(exc, f"create Service {cfg.namespace}/{name}") from exc
        try:
            existing = self._json(core.read_namespaced_service(name, cfg.namespace, _preload_content=False, _request_timeout=self.request_timeout))
        except Exception as exc:  # noqa: BLE001
            raise api_error(exc, f"read Service {cfg.namespace}/{name}") from exc
        self._check_ours(existing, job, "Service")
        if not any(r.get("uid") == ref["uid"] for r in existing["metadata"].get("ownerReferences") or []):
            try:
                core.patch_namespaced_service(name, cfg.namespace, {"metadata": {"ownerReferences": [ref]}}, _preload_content=False, _request_timeout=self.request_timeout)
            except Exception as exc:  # noqa: BLE001
                raise api_error(exc, f"patch Service {cfg.namespace}/{name}") from exc

    def _own_secret(self, secret: dict[str, Any], job_obj: dict[str, Any], secrets: list[str]) -> None:
        uid = job_obj["metadata"]["uid"]
        refs = secret["metadata"].get("ownerReferences") or []
        if any(ref.get("uid") == uid for ref in refs):
            return
        ref = _owner_ref(job_obj)
        self._patch("secrets", secret["metadata"]["name"], {"metadata": {"ownerReferences": [ref]}}, secrets)

    # ---- client plumbing -----------------------------------------------------------------------
    def _client(self) -> Any:
        if self.api_client is None:
            self.api_client = self.api_client_factory(self.config)
        return self.api_client

    def observe(self, job: Job) -> Any:
        """For reconcile: the Job's state as the cluster watcher would report it (`Deleted` when gone)."""
        from shared.adapters.k8s_watcher import observe_job

        namespace, name = self._locate(job)
        return observe_job(self._batch(), self._core(), namespace, name)

    def _core(self) -> Any:
        from kubernetes import client

        return client.CoreV1Api(self._client())

    def _batch(self) -> Any:
        from kubernetes import client

        return client.BatchV1Api(self._client())

    @staticmethod
    def _json(response: Any) -> dict[str, Any]:
        return json.loads(response.data)

    def _read(self, resource: str, name: str, secrets: list[str] = (), namespace: str | None = None) -> dict[str, Any] | None:  # type: ignore[assignment]
        namespace = namespace or self.config.namespace
        call = self._core().read_namespaced_secret if resource == "secrets" else self._batch().read_namespaced_job
        try:
            return self._json(call(name, namespace, _preload_content=False, _request_timeout=self.request_timeout))
        except Exception as exc:  # noqa: BLE001
            if is_not_found(exc):
                return None
            raise api_error(exc, f"read {resource} {namespace}/{name}", secrets) from exc

    def _patch(self, resource: str, name: str, body: dict[str, Any], secrets: list[str]) -> dict[str, Any]:
        namespace = self.config.namespace
        call = self._core().patch_namespaced_secret if resource == "secrets" else self._batch().patch_namespaced_job
        try:
            return self._json(call(name, namespace, body, _preload_content=False, _request_timeout=self.request_timeout))
        except Exception as exc:  # noqa: BLE001
            raise api_error(exc, f"patch {resource} {namespace}/{name}", secrets) from exc

    def _delete_job_quietly(self, name: str) -> None:
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": FOREGROUND}
        try:
            self._batch().delete_namespaced_job(name, self.config.namespace, body=body, _preload_content=False, _request_timeout=self.request_timeout)
        except Exception as exc:  # noqa: BLE001 - best effort: the job is failed either way
            if not is_not_found(exc):
                log.warning("could not delete Job %s/%s: %s", self.config.namespace, name, api_error(exc, "delete"))

    def _delete_quietly(self, resource: str, name: str, namespace: str | None = None) -> None:
        namespace = namespace or self.config.namespace
        try:
            if resource == "secrets":
                self._core().delete_namespaced_secret(name, namespace, _preload_content=False, _request_timeout=self.request_timeout)
        except Exception as exc:  # noqa: BLE001 - best effort; the Job's ownerReference is the main path
            if not is_not_found(exc):
                log.warning("could not delete %s %s/%s: %s", resource, namespace, name, api_error(exc, "delete"))

    def _check_ours(self, obj: dict[str, Any], job: Job, kind: str) -> None:
        labels = obj.get("metadata", {}).get("labels") or {}
        if labels.get(naming.K8S_JOB_ID_LABEL) != naming.k8s_label_value(job.id):
            meta = obj.get("metadata", {})
            raise PermanentError(
                f"a {kind} named {meta.get('namespace')}/{meta.get('name')} already exists and belongs to "
                f"{labels.get(naming.K8S_JOB_ID_LABEL) or 'something else'}, not job {job.id}",
                reason="NameCollision",
                failure_class=FailureClass.INFRA.value,
            )

    def _locate(self, job: Job) -> tuple[str, str]:
        if job.external_id and "/" in job.external_id:
            namespace, name = job.external_id.split("/", 1)
            return namespace, name
        return self.config.namespace, job_name(job)


def _owner_ref(job_obj: dict[str, Any]) -> dict[str, str]:
    return {"apiVersion": "batch/v1", "kind": "Job", "name": job_obj["metadata"]["name"], "uid": job_obj["metadata"]["uid"]}
