"""Kubernetes backend: submit, cancel and observe one job as one `batch/v1` Job (and, when it has
secrets, one Secret it owns; for several nodes, one headless Service it owns). What those objects look
like is `manifests.py`; the client and error mapping are `client.py`.

Exactly once (see `shared/usecases/launching.py`): every name derives from the job (`shared/domain/naming.py`),
so a second attempt (redelivery, crash after create) meets `409 AlreadyExists` and adopts what the
first created, after checking the object carries this job's id label. Order of writes:
1. the Secret (`HF_TOKEN` and `env` values; the Job can't start without it), created or adopted;
2. the Job, created or adopted; its container reads each secret through `secretKeyRef`;
3. the Secret gets an `ownerReference` to the Job (patched in unless already there), so deleting the
   Job (`propagationPolicy: Foreground`) removes the Secret with it;
4. for several nodes, the headless Service, created with an `ownerReference` to the Job.
A crash between any two steps is repaired by the next attempt. Vendor errors are wrapped once
(`client.api_error`).

`K8S_APPLY=0` (the default, as in the old service) sends nothing: the manifest is rendered, validated
and stored (secrets redacted) and the job stays `submitted` with a `statusReason` saying so.

`observe_job` is reconcile's one-shot read: the Job and its pods, judged by the same pure
`shared/domain/k8s_observe.py` the cluster watcher uses.
"""

from __future__ import annotations

import base64
import copy
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shared.adapters.kubernetes.client import api_error, is_already_exists, is_not_found, load_api_client
from shared.adapters.kubernetes.config import KubernetesSettings
from shared.adapters.kubernetes.manifests import job_name, render_manifest, render_secret, validate_manifest
from shared.domain import naming
from shared.domain.job import Job
from shared.domain.k8s_observe import DELETED, job_state, scheduled_at
from shared.domain.redaction import secret_values
from shared.domain.status import FailureClass
from shared.errors import PermanentError, TransientError
from shared.ports import Observation, Submission

log = logging.getLogger(__name__)

DRY_RUN_REASON = "DryRun: K8S_APPLY=0, so the manifest was rendered, validated and stored but not sent to the cluster"
FOREGROUND = "Foreground"


@dataclass
class KubernetesBackend:
    """`Backend` for Kubernetes. `api_client` is built on first use (never for a dry run) unless given."""

    config: KubernetesSettings
    api_client: Any = None
    api_client_factory: Callable[[KubernetesSettings], Any] = load_api_client
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
                core.patch_namespaced_service(
                    name, cfg.namespace, {"metadata": {"ownerReferences": [ref]}}, _preload_content=False, _request_timeout=self.request_timeout
                )
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
        body: dict[str, Any] = json.loads(response.data)
        return body

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


def observe_job(
    batch_api: Any,
    core_api: Any,
    namespace: str,
    name: str,
    *,
    now: datetime | None = None,
    image_pull_grace_seconds: float = 300,
    request_timeout: float | tuple[float, float] = (5.0, 30.0),
) -> Observation | None:
    """What the Job `namespace/name` and its pods say now, in the watcher's words (`Deleted` when
    there is no such Job). An image pull counts as failing since the pod was scheduled."""
    try:
        job = json.loads(batch_api.read_namespaced_job(name, namespace, _preload_content=False, _request_timeout=request_timeout).data)
    except Exception as exc:  # noqa: BLE001
        if is_not_found(exc):
            return Observation(state=DELETED, reason=None, message=f"the Kubernetes Job {namespace}/{name} does not exist")
        raise api_error(exc, f"read Job {namespace}/{name}") from exc
    match = ((job.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    selector = ",".join(f"{k}={v}" for k, v in sorted(match.items())) or f"job-name={name}"
    try:
        body = json.loads(core_api.list_namespaced_pod(namespace, label_selector=selector, _preload_content=False, _request_timeout=request_timeout).data)
    except Exception as exc:  # noqa: BLE001
        raise api_error(exc, f"list the pods of Job {namespace}/{name}") from exc
    pods = list(body.get("items") or [])
    first_seen = {str((p.get("metadata") or {}).get("uid") or ""): when for p in pods if (when := scheduled_at(p)) is not None}
    observed = job_state(job, pods, now=now, first_seen=first_seen, image_pull_grace_seconds=image_pull_grace_seconds)
    if observed.state is None:
        return None
    return Observation(state=observed.state, reason=observed.reason, message=observed.message, exit_code=observed.exit_code)
