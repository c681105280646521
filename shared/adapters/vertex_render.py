"""The Vertex backend's rendering of a job as a CustomJob (pure, from its settings group).

`render_custom_job`: the job and a `VertexSettings` give the CustomJob as REST JSON (camelCase, the shape
stored with the job and the one `CustomJob.from_json` reads). Secrets never enter the spec: the job's
own secret goes by the one variable naming its version (`vertex_secrets.py`), and a variable the job's
secret does not carry by the operator's per-name reference (`HF_TOKEN` ->
`HF_TOKEN_SECRET=<VERTEX_HF_TOKEN_SECRET>`); a secret with neither is refused by the api (a `400` naming
the field and the setting) and, should one reach the launcher, here (`PermanentError`) rather than
dropped or passed by value. A dry run renders visible placeholder references instead, so the spec can
be shown.

Resources: `gpu_type` x `gpus` -> machine type and accelerator from one table
(`shared/domain/resources.py` `DEFAULT_VERTEX_MACHINE_TYPES`, `VERTEX_MACHINE_TYPES` over it); neither
set: `VERTEX_MACHINE_TYPE` / `VERTEX_ACCELERATOR_*` as before; `gpus: 0`: `VERTEX_CPU_MACHINE_TYPE`.
`nodes` (default `VERTEX_REPLICA_COUNT`) -> pool 0 with one replica (the chief) and pool 1 with
`nodes - 1`, same image and args; `max_duration_minutes` -> `scheduling.timeout`. The container runs
`python -m trainer.launch --nproc_per_node=<GPUs> -- <train.py flags>`; the launcher turns the
node-level `WORLD_SIZE` / `RANK` / `MASTER_ADDR` / `MASTER_PORT` Vertex sets into torchrun's.
"""

from __future__ import annotations

import json
from typing import Any

from shared.adapters.vertex_secrets import JOB_SECRET_ENDPOINT_ENV, JOB_SECRET_ENV, JOB_SECRET_PLACEHOLDER, SECRET_MANAGER_ENDPOINT
from shared.adapters.vertex_settings import VertexSettings
from shared.domain import naming
from shared.domain import resources as res
from shared.domain.backends import vertex as vertex_rules
from shared.domain.job import Job
from shared.domain.status import FailureClass
from shared.errors import PermanentError

SECRET_REF_SUFFIX = "_SECRET"
LAUNCH_COMMAND = ["python", "-m", "trainer.launch"]
# A dry run's stand-in for a secret reference that isn't configured: shown, never resolvable.
UNSET_REFERENCE = "[no Secret Manager reference configured{hint}]"


def _config_error(message: str) -> PermanentError:
    return PermanentError(message, reason="InvalidConfig", failure_class=FailureClass.INFRA.value)


def _hint(names: list[str]) -> str:
    return " (for HF_TOKEN set VERTEX_HF_TOKEN_SECRET)" if "HF_TOKEN" in names else ""


def secret_env(env_names: list[str] | tuple[str, ...], cfg: VertexSettings) -> list[dict[str, str]]:
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


def machine_spec(job: Job, cfg: VertexSettings) -> dict[str, Any]:
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
    placement = vertex_rules.vertex_placement(cfg.machine_table, cfg.accelerator_type, cfg.accelerator_count)
    problems = res.placement_problems(r, placement)
    gpu_type = r.gpu_type or placement.default_gpu_type
    if problems or gpu_type is None:  # the api checks the same table; a changed one lands here
        raise PermanentError(
            "; ".join(f"{p.field}: {p.message}" for p in problems) or "no GPU type for resources.gpus",
            reason="Unplaceable",
            failure_class=FailureClass.USER.value,
        )
    machine_type, accelerator, count = vertex_rules.vertex_machine(cfg.machine_table, gpu_type, r.gpus, cfg.accelerator_count)
    return {"machineType": machine_type, "acceleratorType": accelerator, "acceleratorCount": count}


def job_secret_env(by_value: list[str] | tuple[str, ...], cfg: VertexSettings, version: str | None) -> list[dict[str, str]]:
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
    cfg: VertexSettings,
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
        raise PermanentError(f"the rendered CustomJob is invalid: {exc}", reason="InvalidSpec", failure_class=FailureClass.INFRA.value) from exc
