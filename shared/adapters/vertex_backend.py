"""Vertex AI backend: one job becomes one CustomJob (`aiplatform_v1.JobServiceClient`).

The CustomJob is rendered by `vertex_render.py` (pure, from a `VertexSettings`); the job's secret
variables go in a Secret Manager secret of the job's own (`vertex_secrets.py`), created here at submit
and deleted by `release` once the job is final (reconcile sweeps what `held` still lists).

Exactly once: CreateCustomJob takes no client-chosen id, so the job id goes in a label and every attempt
first lists CustomJobs filtered by it (`labels.job_id="<id>"`) and adopts what it finds. Two attempts
racing past that check (rare: Pub/Sub orders one job's messages) both create; each then lists again,
all agree the oldest is the job, and the others cancel their own. `VERTEX_SUBMIT=0` sends nothing.

Vendor errors (google.api_core, requests, google.auth) are wrapped once (`vertex_errors.api_error`),
through the status table in `http_errors.py`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from shared.adapters.vertex_errors import api_error, google_status
from shared.adapters.vertex_render import render_custom_job, to_proto
from shared.adapters.vertex_secrets import JOB_ID_ANNOTATION, JOB_SECRET_ENV, SecretManager, job_secret_id, job_secret_payload
from shared.adapters.vertex_settings import VertexSettings
from shared.domain import naming
from shared.domain.job import Job
from shared.domain.status import FailureClass
from shared.errors import PermanentError, PlatformError
from shared.ports import Observation, Submission

log = logging.getLogger(__name__)

DRY_RUN_REASON = "DryRun: VERTEX_SUBMIT=0, so the CustomJob spec was rendered and stored but not sent to Vertex AI"


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


def make_client(cfg: VertexSettings) -> Any:
    from google.cloud import aiplatform_v1

    try:
        return aiplatform_v1.JobServiceClient(transport="rest", client_options={"api_endpoint": cfg.api_endpoint})
    except Exception as exc:  # noqa: BLE001 - credentials and the like
        raise api_error(exc, "create the Vertex AI client") from exc


@dataclass
class VertexBackend:
    """`Backend` for Vertex AI. `client` (a JobServiceClient) is built on first use unless given."""

    config: VertexSettings
    client: Any = None
    client_factory: Callable[[VertexSettings], Any] = make_client
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
            return Submission(
                external_id=adopted.name, manifest=render_custom_job(job, names, cfg, by_value=by_value + lost, job_secret=_job_secret_of(adopted))
            )
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
            if exc.code == 400 and google_status(exc) == "FAILED_PRECONDITION":
                log.info("CustomJob %s already finished: nothing to cancel", name)
                return None
            raise api_error(exc, f"cancel CustomJob {name}") from exc
        except Exception as exc:  # noqa: BLE001
            raise api_error(exc, f"cancel CustomJob {name}") from exc
