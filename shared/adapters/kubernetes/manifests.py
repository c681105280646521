"""Kubernetes manifests, pure: one job becomes one `batch/v1` Job (and, when it has secrets, one Secret;
for several nodes, one headless Service).

Rendering (`render_job`, `render_secret`, `render_service`, `render_manifest`) takes the job, the names
of its secret variables and a `KubernetesSettings`, and returns plain dicts, so the unit tests pin every
`K8S_*` variable's effect without a server. Every manifest is checked against the Kubernetes schema
(`kubernetes-validate`, strict; `validate_manifest`) before anything is sent; a spec that fails is a
`PermanentError`. Secret values never appear here except in the Secret handed to the API server: what is
stored gets `redacted_values`.

Resources (the request's `resources`, the settings as defaults): `gpus` -> `nvidia.com/gpu` requests and
limits, `gpu_type` -> the node selector of `K8S_GPU_NODE_SELECTORS`, `cpus` / `memory_gb` -> `cpu` /
`memory`, `max_duration_minutes` -> `activeDeadlineSeconds`, more than one GPU -> an in-memory `/dev/shm`
(NCCL and the data loader workers share memory through it; the container default is 64 MiB). The
container runs `python -m trainer.launch --nproc_per_node=<GPUs> -- <train.py flags>`: one trainer
process per GPU. `nodes > 1` -> an Indexed Job (completions = parallelism = nodes; the Job controller
names each pod's host `<job>-<index>`), a headless Service of the same name as its `subdomain` (so
`<job>-0.<job>` resolves to rank 0's pod), and the rendezvous torchrun reads: `PET_NNODES`,
`PET_NPROC_PER_NODE`, `PET_NODE_RANK` (the completion index, through the downward API),
`PET_MASTER_ADDR` (the index-0 pod), `PET_MASTER_PORT`. `K8S_KUEUE_QUEUE` labels the Job for Kueue's
gang admission (all pods or none).
"""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Mapping
from typing import Any

from shared.adapters.kubernetes.config import DEFAULT_SCHEMA_VERSION, KubernetesSettings
from shared.domain import naming
from shared.domain.job import REDACTED, Job
from shared.domain.status import FailureClass
from shared.errors import PermanentError

CONTAINER_NAME = "trainer"
COMPONENT = "trainer"
GPU_RESOURCE = "nvidia.com/gpu"
COMPLETION_INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
LAUNCH_COMMAND = ["python", "-m", "trainer.launch"]
SHM_VOLUME = "dshm"


def _config_error(message: str) -> PermanentError:
    return PermanentError(message, reason="InvalidConfig", failure_class=FailureClass.INFRA.value)


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


def container_limits(job: Job, cfg: KubernetesSettings) -> dict[str, str]:
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


def node_selector(job: Job, cfg: KubernetesSettings) -> dict[str, str]:
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


def _rendezvous_env(name: str, nodes: int, nproc: int, cfg: KubernetesSettings) -> list[dict[str, Any]]:
    """What torchrun reads on each pod of a several-node job (trainer/launch.py reads the same names)."""
    return [
        {"name": "PET_NNODES", "value": str(nodes)},
        {"name": "PET_NPROC_PER_NODE", "value": str(nproc)},
        {"name": "PET_NODE_RANK", "valueFrom": {"fieldRef": {"fieldPath": f"metadata.annotations['{COMPLETION_INDEX_ANNOTATION}']"}}},
        # The Job controller sets each pod's hostname to `<job>-<index>`; the subdomain makes it resolvable.
        {"name": "PET_MASTER_ADDR", "value": f"{name}-0.{name}"},
        {"name": "PET_MASTER_PORT", "value": str(cfg.master_port)},
    ]


def render_job(job: Job, env_names: list[str] | tuple[str, ...], cfg: KubernetesSettings) -> dict[str, Any]:
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
    env: list[dict[str, Any]] = [{"name": n, "valueFrom": {"secretKeyRef": {"name": secret, "key": n}}} for n in sorted(env_names)]
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


def render_service(job: Job, cfg: KubernetesSettings) -> dict[str, Any]:
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


def render_secret(job: Job, values: Mapping[str, str], cfg: KubernetesSettings) -> dict[str, Any]:
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


def render_manifest(job: Job, env_names: list[str] | tuple[str, ...], cfg: KubernetesSettings) -> dict[str, Any]:
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
