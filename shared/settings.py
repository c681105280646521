"""Typed settings for every environment variable, read once at the edge and passed down.

Every variable of the old Training API keeps its name and default; ours are added. JSON-valued
variables (`K8S_NODE_SELECTOR`, `K8S_TOLERATIONS`, `K8S_IMAGE_PULL_SECRETS`, `K8S_RESOURCE_LIMITS`) are
parsed here: bad JSON is never silently ignored — it is listed in `config_errors`, logged at start-up,
reported by `/health`, and it makes the backend that needs it unavailable.

The README's "Configuration" table is generated from the field descriptions below
(`python -m shared.settings --markdown`), so the two can't drift.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import AliasChoices, Field, PrivateAttr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.domain import resources as res
from shared.domain.job import Backend
from shared.domain.request import RequestPolicy

if TYPE_CHECKING:
    from shared.sealing import Sealer

REPO_ROOT = Path(__file__).resolve().parent.parent

DEFAULT_TOLERATIONS = '[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]'
DEFAULT_RESOURCE_LIMITS = '{"nvidia.com/gpu": 1}'
DEFAULT_GPU_NODE_SELECTORS = json.dumps(res.DEFAULT_K8S_GPU_NODE_SELECTORS, separators=(",", ":"))
# Shorter bearer tokens are refused at start-up: a guessable token is as good as none.
MIN_TOKEN_CHARS = 16


def _env(*names: str) -> AliasChoices:
    return AliasChoices(*names)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True, case_sensitive=True)

    # ---- the old service's variables -------------------------------------------------------------
    port: int = Field(4000, validation_alias="PORT", description="HTTP port of the embedded server.", ge=1, le=65535)
    max_log_chars: int = Field(
        1_000_000, validation_alias="MAX_LOG_CHARS", description="Characters kept in each job's rolling `logTail`.", ge=0
    )
    default_training_backend: Backend = Field(
        Backend.KUBERNETES,
        validation_alias="DEFAULT_TRAINING_BACKEND",
        description="Backend used when a request names none: `kubernetes`, `vertex` or `local`.",
    )
    python_bin: str = Field(
        sys.executable,
        validation_alias="PYTHON_BIN",
        description="Local backend: the Python that runs the trainer (default: the interpreter running the service, "
        "so the venv's torch is used; the old service used `python3`).",
    )
    train_script_path: str = Field(
        "trainer/train.py",
        validation_alias="TRAIN_SCRIPT_PATH",
        description="Local backend: trainer script, relative paths resolved from the repo root.",
    )

    k8s_training_image: str | None = Field(
        None, validation_alias="K8S_TRAINING_IMAGE", description="Kubernetes: trainer image URI (required for the backend)."
    )
    k8s_namespace: str = Field("default", validation_alias="K8S_NAMESPACE", description="Kubernetes: namespace of the Jobs.")
    k8s_service_account: str | None = Field(
        None, validation_alias="K8S_SERVICE_ACCOUNT", description="Kubernetes: `serviceAccountName` of the pods (bucket access)."
    )
    k8s_apply: bool = Field(
        False,
        validation_alias="K8S_APPLY",
        description="Kubernetes: `1` creates the Job; `0` renders and stores the manifest only (dry run, job ends `submitted`).",
    )
    k8s_kubeconfig: str | None = Field(
        None,
        validation_alias=_env("K8S_KUBECONFIG", "KUBECONFIG"),
        description="Kubernetes: kubeconfig path (`KUBECONFIG` also read); empty: in-cluster config.",
    )
    k8s_context: str | None = Field(None, validation_alias="K8S_CONTEXT", description="Kubernetes: kubeconfig context.")
    k8s_node_selector: str | None = Field(
        None, validation_alias="K8S_NODE_SELECTOR", description='Kubernetes: JSON map, e.g. `{"cloud.google.com/gke-accelerator": "nvidia-h100-80gb"}`.'
    )
    k8s_tolerations: str | None = Field(
        DEFAULT_TOLERATIONS,
        validation_alias="K8S_TOLERATIONS",
        description="Kubernetes: JSON array of tolerations; the default tolerates the `nvidia.com/gpu` taint the infra puts on GPU pools.",
    )
    k8s_image_pull_secrets: str | None = Field(
        None, validation_alias="K8S_IMAGE_PULL_SECRETS", description='Kubernetes: JSON array of names or `{"name": ...}` objects.'
    )
    k8s_backoff_limit: int = Field(0, validation_alias="K8S_BACKOFF_LIMIT", description="Kubernetes: Job `backoffLimit`.", ge=0)
    k8s_ttl_seconds_after_finished: int | None = Field(
        None, validation_alias="K8S_TTL_SECONDS_AFTER_FINISHED", description="Kubernetes: Job `ttlSecondsAfterFinished` (unset: kept).", ge=0
    )
    k8s_resource_limits: str | None = Field(
        DEFAULT_RESOURCE_LIMITS,
        validation_alias="K8S_RESOURCE_LIMITS",
        description="Kubernetes: JSON map of container resource limits (also used as requests); a request's `resources` "
        "overrides `nvidia.com/gpu`, `cpu` and `memory`.",
    )
    k8s_gpu_node_selectors: str = Field(
        DEFAULT_GPU_NODE_SELECTORS,
        validation_alias="K8S_GPU_NODE_SELECTORS",
        description="Kubernetes: JSON map, GPU type -> node selector a request's `resources.gpu_type` adds to `K8S_NODE_SELECTOR`; "
        "the types it names are the ones the api accepts (default: GKE's `cloud.google.com/gke-accelerator` values).",
    )
    k8s_kueue_queue: str | None = Field(
        None,
        validation_alias="K8S_KUEUE_QUEUE",
        description="Kubernetes: Kueue `LocalQueue` for gang admission (label `kueue.x-k8s.io/queue-name` on every Job); unset: no Kueue.",
    )
    k8s_master_port: int = Field(
        29500,
        validation_alias="K8S_MASTER_PORT",
        description="Kubernetes: port of the rendezvous on the index-0 pod of a several-node job (`PET_MASTER_PORT`).",
        ge=1,
        le=65535,
    )

    vertex_project: str | None = Field(
        None, validation_alias=_env("VERTEX_PROJECT", "PROJECT_ID"), description="Vertex: GCP project (`PROJECT_ID` also read)."
    )
    vertex_region: str = Field("us-central1", validation_alias="VERTEX_REGION", description="Vertex: region of the CustomJob.")
    vertex_image_uri: str | None = Field(None, validation_alias="VERTEX_IMAGE_URI", description="Vertex: trainer image (required).")
    vertex_machine_type: str = Field("a2-highgpu-1g", validation_alias="VERTEX_MACHINE_TYPE", description="Vertex: machine type.")
    vertex_accelerator_type: str = Field(
        "NVIDIA_TESLA_A100", validation_alias="VERTEX_ACCELERATOR_TYPE", description="Vertex: accelerator type."
    )
    vertex_accelerator_count: int = Field(1, validation_alias="VERTEX_ACCELERATOR_COUNT", description="Vertex: GPUs per replica.", ge=0)
    vertex_replica_count: int = Field(1, validation_alias="VERTEX_REPLICA_COUNT", description="Vertex: worker replicas.", ge=1)
    vertex_machine_types: str | None = Field(
        None,
        validation_alias="VERTEX_MACHINE_TYPES",
        description='Vertex: JSON map, GPU type -> `{"accelerator": ENUM, "machines": {"<gpus>": machine type}}`, replacing or adding '
        "types of the built-in table (Google's GPU machine types: A100 `a2-highgpu-*`, H100 `a3-highgpu-*`, ...).",
    )
    vertex_cpu_machine_type: str = Field(
        "n1-standard-8", validation_alias="VERTEX_CPU_MACHINE_TYPE", description="Vertex: machine type of a job with `resources.gpus: 0`."
    )
    vertex_service_account: str | None = Field(
        None, validation_alias="VERTEX_SERVICE_ACCOUNT", description="Vertex: service account the job runs as."
    )
    vertex_network: str | None = Field(None, validation_alias="VERTEX_NETWORK", description="Vertex: VPC network.")
    vertex_submit: bool = Field(
        False, validation_alias="VERTEX_SUBMIT", description="Vertex: `1` creates the CustomJob; `0` stores the spec only (dry run)."
    )
    vertex_hf_token_secret: str | None = Field(
        None,
        validation_alias="VERTEX_HF_TOKEN_SECRET",
        description="Vertex: Secret Manager secret version the trainer resolves for HF_TOKEN (used where per-job secrets are off, or a relaunch lost the value).",
    )
    vertex_job_secrets: bool = Field(
        True,
        validation_alias="VERTEX_JOB_SECRETS",
        description="Vertex: `1` puts each job's secret variables in a Secret Manager secret of its own, created at submit and deleted when the job ends; `0`: only the per-name references (`VERTEX_HF_TOKEN_SECRET`), and the api refuses other secrets.",
    )
    vertex_secret_project: str | None = Field(
        None, validation_alias="VERTEX_SECRET_PROJECT", description="Vertex: project of the per-job secrets (default: `VERTEX_PROJECT`)."
    )
    vertex_secret_manager_endpoint: str = Field(
        "https://secretmanager.googleapis.com",
        validation_alias="VERTEX_SECRET_MANAGER_ENDPOINT",
        description="Vertex: Secret Manager REST endpoint, for the launcher and (passed on) the trainer; a plain `http://` one (a test fake) is called without credentials.",
    )
    vertex_secret_ttl_seconds: int = Field(
        8 * 24 * 3600,
        validation_alias="VERTEX_SECRET_TTL_SECONDS",
        description="Vertex: seconds after which Secret Manager itself deletes a per-job secret, should the platform never get to (a backstop; Vertex's longest default timeout is 7 days); `0`: none.",
        ge=0,
    )

    # ---- ours ------------------------------------------------------------------------------------
    host: str = Field(
        "127.0.0.1", validation_alias="HOST", description="Embedded server: address to listen on (`0.0.0.0` in containers)."
    )
    project_id: str = Field(
        "local-project",
        validation_alias=_env("GOOGLE_CLOUD_PROJECT", "PROJECT_ID"),
        description="GCP project of the platform's topics and database (`PROJECT_ID` also read).",
    )
    store_kind: Literal["sqlite", "firestore"] = Field(
        "sqlite", validation_alias="STORE_KIND", description="Job store: `sqlite` (embedded default) or `firestore`."
    )
    sqlite_path: str = Field(
        ".data/training.db", validation_alias="SQLITE_PATH", description="SQLite store file, relative to the repo root."
    )
    firestore_database: str = Field("(default)", validation_alias="FIRESTORE_DATABASE", description="Firestore database id.")
    collection_prefix: str = Field(
        "", validation_alias="COLLECTION_PREFIX", description="Prefix of the Firestore collection names (tests isolate with it)."
    )
    bus_kind: Literal["inline", "pubsub"] = Field(
        "inline", validation_alias="BUS_KIND", description="Message bus: `inline` (in-process, embedded default) or `pubsub`."
    )
    topic_train_requests: str = Field("train-requests", validation_alias="TOPIC_TRAIN_REQUESTS", description="Topic the api publishes launches to.")
    topic_training_events: str = Field(
        "training-events", validation_alias="TOPIC_TRAINING_EVENTS", description="Topic of backend and trainer events."
    )
    topic_train_submissions: str = Field(
        "train-submissions", validation_alias="TOPIC_TRAIN_SUBMISSIONS", description="Topic of batch submissions."
    )
    topic_train_submissions_rejected: str = Field(
        "train-submissions-rejected",
        validation_alias="TOPIC_TRAIN_SUBMISSIONS_REJECTED",
        description="Topic rejected batch items are published to.",
    )
    stack_log_dir: str = Field(
        ".data/stack",
        validation_alias="STACK_LOG_DIR",
        description="`make run-emulators`: folder of the emulators' and functions' logs, relative to the repo root "
        "(`--log-dir` overrides it).",
    )
    api_tokens: str | None = Field(
        None,
        validation_alias="API_TOKENS",
        description="Comma-separated bearer tokens; when set every route but `/health` needs one. Each must be at least "
        f"{MIN_TOKEN_CHARS} characters; a value naming no token (`,`, blanks) or a shorter token is a start-up error "
        "(the embedded server exits; the deployed api refuses every route but `/health`), never auth turned off.",
        repr=False,
    )
    api_token_header: str | None = Field(
        None,
        validation_alias="API_TOKEN_HEADER",
        description="A second header that may carry one of API_TOKENS raw, without `Bearer ` (the studio's clusters "
        "configured with another header name send it so, e.g. `X-Cluster-Token`); `Authorization: Bearer` always works.",
        pattern=r"^[A-Za-z0-9-]{1,64}$",
    )
    cors_origins: str | None = Field(
        None, validation_alias="CORS_ORIGINS", description="Comma-separated origins allowed by CORS (none by default)."
    )
    max_body_bytes: int = Field(1_048_576, validation_alias="MAX_BODY_BYTES", description="Largest request body; larger is 413.", ge=1024)
    http_keepalive_seconds: float = Field(
        5.0,
        validation_alias="HTTP_KEEPALIVE_SECONDS",
        description="Embedded server: a connection with no request in progress (fresh or between requests) is closed after this long.",
        gt=0,
    )
    http_header_timeout_seconds: float = Field(
        10.0,
        validation_alias="HTTP_HEADER_TIMEOUT_SECONDS",
        description="Embedded server: a request's line and headers must arrive within this long of their first byte (else 408, closed).",
        gt=0,
    )
    http_body_timeout_seconds: float = Field(
        30.0,
        validation_alias="HTTP_BODY_TIMEOUT_SECONDS",
        description="Embedded server: a request's body must arrive within this long of its headers (else 408, closed).",
        gt=0,
    )
    http_max_connections: int = Field(
        512,
        validation_alias="HTTP_MAX_CONNECTIONS",
        description="Embedded server: open connections at most (SSE followers included); past it a new one is answered 503 and closed. "
        "Keep it well below the process's file limit (`ulimit -n`).",
        ge=1,
    )
    http_max_request_line_bytes: int = Field(
        16_384,
        validation_alias="HTTP_MAX_REQUEST_LINE_BYTES",
        description="Embedded server: longest request target (path and query); longer is 400.",
        ge=256,
        le=65_535,
    )
    http_max_header_bytes: int = Field(
        65_536,
        validation_alias="HTTP_MAX_HEADER_BYTES",
        description="Embedded server: largest request line and headers together; larger is 431.",
        ge=1024,
    )
    local_allowed_roots: str | None = Field(
        None,
        validation_alias="LOCAL_ALLOWED_ROOTS",
        description="Local backend: `:`-separated folders dataset_file/output_dir must be inside (default: the repo and the temp folder).",
    )
    launch_max_attempts: int = Field(
        5, validation_alias="LAUNCH_MAX_ATTEMPTS", description="Inline bus: deliveries of a message before it is dead-lettered.", ge=1
    )
    launch_retry_base_seconds: float = Field(
        0.5, validation_alias="LAUNCH_RETRY_BASE_SECONDS", description="Inline bus: first retry delay, doubled each time.", ge=0
    )

    reconcile_min_age_seconds: int = Field(
        120, validation_alias="RECONCILE_MIN_AGE_SECONDS", description="reconcile: skip jobs updated more recently than this.", ge=0
    )
    stale_after_seconds: int = Field(
        3600, validation_alias="STALE_AFTER_SECONDS", description="reconcile: flag a job `Stale` after this long without a sign of life.", ge=1
    )
    reconcile_interval_seconds: int = Field(
        60, validation_alias="RECONCILE_INTERVAL_SECONDS", description="Embedded server: how often reconcile runs (0: never).", ge=0
    )

    # ---- notifications (notify: webhooks on every transition) --------------------------------------
    topic_job_transitions: str = Field(
        "job-transitions", validation_alias="TOPIC_JOB_TRANSITIONS", description="Topic the outbox relay publishes each job transition to (ordering key: the job id)."
    )
    webhook_urls: str | None = Field(
        None, validation_alias="WEBHOOK_URLS", description="Comma-separated webhook URLs that get every job's transitions (a request's `webhooks` adds its own)."
    )
    webhook_signing_secret: str | None = Field(
        None,
        validation_alias="WEBHOOK_SIGNING_SECRET",
        description="Standard Webhooks signing secret, `whsec_` + base64 of at least 16 bytes (Secret Manager in infra/); needed for any webhook.",
    )
    webhook_allowed_hosts: str | None = Field(
        None,
        validation_alias="WEBHOOK_ALLOWED_HOSTS",
        description="Comma-separated hosts the SSRF guard lets through: plain http and private/loopback addresses allowed for them (e.g. a receiver on this machine).",
    )
    webhook_retry_schedule: str = Field(
        "0,5,30,120,600,3600,14400,86400,86400,86400",
        validation_alias="WEBHOOK_RETRY_SCHEDULE",
        description="Seconds before each delivery attempt (the first is immediate), jittered by 10 %; after the last, the message is given up.",
    )
    webhook_timeout_seconds: float = Field(10.0, validation_alias="WEBHOOK_TIMEOUT_SECONDS", description="Deadline of one delivery attempt.", gt=0)
    notify_interval_seconds: float = Field(
        0.1,
        validation_alias="NOTIFY_INTERVAL_SECONDS",
        description="Embedded server: how often due webhook retries are looked for (a commit with a transition wakes the outbox relay at once).",
        gt=0,
    )

    _errors: list[str] = PrivateAttr(default_factory=list)
    _json: dict[str, Any] = PrivateAttr(default_factory=dict)
    _auth_problem: str | None = PrivateAttr(default=None)

    @field_validator("*", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: Any, info: Any) -> Any:
        # The old service treated an empty variable as unset; keep that.
        # Not API_TOKENS: a blank value there is a mistake to report (auth_problem), not "auth off".
        if isinstance(value, str) and value.strip() == "" and info.field_name not in ("collection_prefix", "api_tokens"):
            field = cls.model_fields[info.field_name]
            return field.default
        return value

    def model_post_init(self, __context: Any) -> None:
        specs = {
            "K8S_NODE_SELECTOR": (self.k8s_node_selector, dict),
            "K8S_TOLERATIONS": (self.k8s_tolerations, list),
            "K8S_IMAGE_PULL_SECRETS": (self.k8s_image_pull_secrets, list),
            "K8S_RESOURCE_LIMITS": (self.k8s_resource_limits, dict),
            "K8S_GPU_NODE_SELECTORS": (self.k8s_gpu_node_selectors, dict),
            "VERTEX_MACHINE_TYPES": (self.vertex_machine_types, dict),
        }
        for name, (raw, kind) in specs.items():
            if raw is None:
                self._json[name] = None
                continue
            try:
                value = json.loads(raw)
            except json.JSONDecodeError as exc:
                self._errors.append(f"{name} is not valid JSON ({exc.msg} at character {exc.pos})")
                self._json[name] = None
                continue
            if not isinstance(value, kind):
                self._errors.append(f"{name} must be a JSON {'object' if kind is dict else 'array'}")
                self._json[name] = None
                continue
            self._json[name] = value
        self._errors.extend(self._table_problems())
        self._errors.extend(self._webhook_problems())
        self._auth_problem = _token_problem(self.api_tokens)
        if self._auth_problem is not None:
            self._errors.append(self._auth_problem)

    def _table_problems(self) -> list[str]:
        """The GPU tables' shapes: a broken one makes its backend unavailable (never half a table)."""
        problems = []
        selectors = self._json.get("K8S_GPU_NODE_SELECTORS")
        if isinstance(selectors, dict):
            for name, sel in selectors.items():
                if not isinstance(sel, dict) or not sel or not all(isinstance(k, str) and isinstance(v, str) for k, v in sel.items()):
                    problems.append(f"K8S_GPU_NODE_SELECTORS[{name!r}] must be a non-empty JSON object of strings")
        table = self._json.get("VERTEX_MACHINE_TYPES")
        if isinstance(table, dict):
            for name, row in table.items():
                machines = row.get("machines") if isinstance(row, dict) else None
                ok = (
                    isinstance(row, dict)
                    and isinstance(row.get("accelerator"), str)
                    and isinstance(machines, dict)
                    and machines
                    and all(str(k).isdigit() and 1 <= int(k) <= res.MAX_GPUS and isinstance(v, str) and v for k, v in machines.items())
                )
                if not ok:
                    problems.append(
                        f'VERTEX_MACHINE_TYPES[{name!r}] must be {{"accelerator": "...", "machines": {{"<gpus 1-{res.MAX_GPUS}>": "<machine type>"}}}}'
                    )
        if problems:
            for key in ("K8S_GPU_NODE_SELECTORS", "VERTEX_MACHINE_TYPES"):
                if any(p.startswith(key) for p in problems):
                    self._json[key] = None
        return problems

    def _webhook_problems(self) -> list[str]:
        from shared.domain.webhooks import Schedule, SecretError, parse_secret

        problems = []
        if self.webhook_signing_secret:
            try:
                parse_secret(self.webhook_signing_secret)
            except SecretError as exc:
                problems.append(f"WEBHOOK_SIGNING_SECRET: {exc}")
        elif self.webhook_urls:
            problems.append("WEBHOOK_URLS is set but WEBHOOK_SIGNING_SECRET is not: webhooks are not delivered unsigned")
        try:
            Schedule.parse(self.webhook_retry_schedule)
        except ValueError as exc:
            problems.append(f"WEBHOOK_RETRY_SCHEDULE: {exc}")
        return problems

    # ---- derived values --------------------------------------------------------------------------
    @property
    def gpu_node_selectors(self) -> dict[str, dict[str, str]]:
        """K8S_GPU_NODE_SELECTORS by canonical type name (empty when it is broken: see config_errors)."""
        table = self._json.get("K8S_GPU_NODE_SELECTORS") or {}
        return _by_type_name(table)

    @property
    def vertex_machine_table(self) -> dict[str, dict[str, Any]]:
        """The built-in Vertex table with VERTEX_MACHINE_TYPES' rows replacing or adding types."""
        table = dict(res.DEFAULT_VERTEX_MACHINE_TYPES)
        table.update(_by_type_name(self._json.get("VERTEX_MACHINE_TYPES") or {}))
        return table

    @property
    def config_errors(self) -> list[str]:
        return list(self._errors)

    def json_value(self, name: str) -> Any:
        return self._json.get(name)

    @property
    def auth_problem(self) -> str | None:
        """Why API_TOKENS can't be used (None when it is unset or fine). Never shows a token."""
        return self._auth_problem

    @property
    def tokens(self) -> tuple[str, ...]:
        return tuple(t.strip() for t in (self.api_tokens or "").split(",") if t.strip())

    @property
    def webhook_url_list(self) -> tuple[str, ...]:
        return tuple(u.strip() for u in (self.webhook_urls or "").split(",") if u.strip())

    @property
    def webhook_allowed_host_set(self) -> frozenset[str]:
        return frozenset(h.strip().lower().rstrip(".") for h in (self.webhook_allowed_hosts or "").split(",") if h.strip())

    @property
    def webhook_key(self) -> bytes | None:
        """The signing key, or None when no (valid) secret is set (a configuration error is listed)."""
        from shared.domain.webhooks import SecretError, parse_secret

        if not self.webhook_signing_secret:
            return None
        try:
            return parse_secret(self.webhook_signing_secret)
        except SecretError:
            return None

    @property
    def sealer(self) -> "Sealer | None":
        """Seals and unseals the secrets the platform keeps for itself (a callback's Authorization), or
        None without a (valid) WEBHOOK_SIGNING_SECRET."""
        from shared.sealing import sealer

        return sealer(self.webhook_key)

    @property
    def cors_origin_list(self) -> tuple[str, ...]:
        return tuple(o.strip() for o in (self.cors_origins or "").split(",") if o.strip())

    @property
    def sqlite_file(self) -> Path:
        path = Path(self.sqlite_path)
        return path if path.is_absolute() else REPO_ROOT / path

    @property
    def train_script(self) -> Path:
        path = Path(self.train_script_path)
        return path if path.is_absolute() else REPO_ROOT / path

    @property
    def local_roots(self) -> tuple[str, ...]:
        if self.local_allowed_roots:
            return tuple(str(Path(p).resolve()) for p in self.local_allowed_roots.split(":") if p.strip())
        return (str(REPO_ROOT), str(Path(tempfile.gettempdir()).resolve()))

    def backend_problems(self) -> dict[Backend, str | None]:
        """Per backend: None when it can take jobs, else what is missing (named by variable)."""
        k8s: list[str] = []
        if not self.k8s_training_image:
            k8s.append("K8S_TRAINING_IMAGE is not set")
        k8s += [e for e in self._errors if e.startswith("K8S_")]
        vertex: list[str] = [e for e in self._errors if e.startswith("VERTEX_")]
        if not self.vertex_project:
            vertex.append("VERTEX_PROJECT (or PROJECT_ID) is not set")
        if not self.vertex_image_uri:
            vertex.append("VERTEX_IMAGE_URI is not set")
        return {
            Backend.KUBERNETES: "; ".join(k8s) or None,
            Backend.VERTEX: "; ".join(vertex) or None,
            Backend.LOCAL: None,
        }

    def request_policy(self) -> RequestPolicy:
        return RequestPolicy(
            default_backend=self.default_training_backend,
            backend_problems=self.backend_problems(),
            local_roots=self.local_roots,
            local_base=str(REPO_ROOT),
            webhook_allowed_hosts=self.webhook_allowed_host_set,
            webhooks_problem=None if self.webhook_key is not None else "webhooks need WEBHOOK_SIGNING_SECRET to be set on the platform",
            # A callback's Authorization is kept sealed under a key derived from the signing secret.
            seal=self.sealer.seal if self.sealer is not None else None,
            gpu_types=res.known_gpu_types(self.gpu_node_selectors, self.vertex_machine_table),
            placements={
                Backend.KUBERNETES: res.k8s_placement(self.gpu_node_selectors),
                Backend.VERTEX: res.vertex_placement(self.vertex_machine_table, self.vertex_accelerator_type, self.vertex_accelerator_count),
                Backend.LOCAL: res.LOCAL_PLACEMENT,
            },
            # A Vertex dry run renders a placeholder for a secret with no reference (and shows it); a real
            # submission can't pass it, so the api refuses it up front.
            # With per-job secrets any secret can be passed.
            secret_names={Backend.VERTEX: frozenset(self.vertex_secret_refs) if self.vertex_submit and not self.vertex_job_secrets else None},
            secret_settings={"HF_TOKEN": "VERTEX_HF_TOKEN_SECRET", "*": "VERTEX_JOB_SECRETS=1"},
            # The studio's runs: the output folder the platform picks (a container folder; locally inside
            # the first allowed root), and the ranks its global batch_size is split over when the request
            # leaves gpus / nodes to the settings (what each adapter then runs).
            studio_output_roots={
                Backend.KUBERNETES: "/tmp/studio",
                Backend.VERTEX: "/tmp/studio",
                Backend.LOCAL: str(Path(self._studio_local_root()) / "studio"),
            },
            default_parallel={
                Backend.KUBERNETES: (self._k8s_default_gpus(), 1),
                Backend.VERTEX: (max(self.vertex_accelerator_count, 1) if self.vertex_accelerator_type else 1, self.vertex_replica_count),
                Backend.LOCAL: (1, 1),
            },
        )

    def _studio_local_root(self) -> str:
        """The allowed root a local studio run writes under: the temp folder when it is one (a run's
        output is no business of the repository checkout), else the first root."""
        temp = str(Path(tempfile.gettempdir()).resolve())
        roots = self.local_roots
        return temp if temp in roots or not roots else roots[0]

    def _k8s_default_gpus(self) -> int:
        """Trainer processes per pod when a request names no GPUs: K8S_RESOURCE_LIMITS' GPU count (one
        CPU process without one), as the Kubernetes adapter renders it."""
        raw = (self.json_value("K8S_RESOURCE_LIMITS") or {}).get("nvidia.com/gpu")
        try:
            return max(int(str(raw)), 1) if raw is not None else 1
        except ValueError:
            return 1

    @property
    def vertex_secret_refs(self) -> dict[str, str]:
        """Secret variable -> the Secret Manager secret version Vertex jobs read it from."""
        return {"HF_TOKEN": self.vertex_hf_token_secret} if self.vertex_hf_token_secret else {}


def _by_type_name(table: dict[str, Any]) -> dict[str, Any]:
    """A table keyed by the built-in spelling where a key is one case-insensitively (`h100` -> `H100`)."""
    return {res.canonical_gpu_type(k, res.GPU_TYPES) or k: v for k, v in table.items()}


def _token_problem(raw: str | None) -> str | None:
    """A set API_TOKENS must name at least one token, each long enough; otherwise auth would silently be
    off (`","`, blanks) or guessable. Unset is the one way to run without auth."""
    if raw is None:
        return None
    tokens = [t.strip() for t in raw.split(",") if t.strip()]
    if not tokens:
        return "API_TOKENS is set but names no token (only commas or blanks); unset it to run without authentication"
    short = [i for i, t in enumerate(tokens, 1) if len(t) < MIN_TOKEN_CHARS]
    if short:
        which = ", ".join(str(i) for i in short)
        noun, verb = ("token", "is") if len(short) == 1 else ("tokens", "are")
        return f"API_TOKENS: {noun} {which} of {len(tokens)} {verb} shorter than {MIN_TOKEN_CHARS} characters"
    return None


def settings_markdown() -> str:
    """The README's configuration table, generated from the fields."""
    rows = ["| Variable | Default | Purpose |", "| --- | --- | --- |"]
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        names = alias.choices if isinstance(alias, AliasChoices) else [alias or name.upper()]
        default = field.default
        if name == "python_bin":
            default = "the service's Python"
        shown = "_unset_" if default is None else f"`{default.value if hasattr(default, 'value') else default}`"
        env = " / ".join(f"`{n}`" for n in names)
        rows.append(f"| {env} | {shown} | {field.description or ''} |")
    return "\n".join(rows)


if __name__ == "__main__":  # pragma: no cover
    print(settings_markdown())
