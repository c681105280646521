"""Settings groups of the platform: the old service's general variables, store and bus, HTTP (auth and limits), operations, notifications.

Each group is a pydantic-settings model with its fields, their env variable names and defaults, in one
place; `shared.settings.Settings` composes them (their order is the README table's order).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings

from shared.domain.backend import BackendKind
from shared.settings_group import GROUP_CONFIG, env

# Shorter bearer tokens are refused at start-up: a guessable token is as good as none.
MIN_TOKEN_CHARS = 16


class ServiceSettings(BaseSettings):
    """The old service's general variables: port, log size, the default backend."""

    model_config = GROUP_CONFIG

    port: int = Field(4000, validation_alias="PORT", description="HTTP port of the embedded server.", ge=1, le=65535)
    max_log_chars: int = Field(1_000_000, validation_alias="MAX_LOG_CHARS", description="Characters kept in each job's rolling `logTail`.", ge=0)
    default_training_backend: BackendKind = Field(
        BackendKind("kubernetes"),
        validation_alias="DEFAULT_TRAINING_BACKEND",
        description="Backend used when a request names none: one of the registered backends (`kubernetes`, `vertex`, `local` are built in).",
    )


class PlatformSettings(BaseSettings):
    """Where the platform keeps jobs and sends messages: the embedded server's address, store, bus, topics."""

    model_config = GROUP_CONFIG

    host: str = Field("127.0.0.1", validation_alias="HOST", description="Embedded server: address to listen on (`0.0.0.0` in containers).")
    project_id: str = Field(
        "local-project",
        validation_alias=env("GOOGLE_CLOUD_PROJECT", "PROJECT_ID"),
        description="GCP project of the platform's topics and database (`PROJECT_ID` also read).",
    )
    store_kind: Literal["sqlite", "firestore"] = Field(
        "sqlite", validation_alias="STORE_KIND", description="Job store: `sqlite` (embedded default) or `firestore`."
    )
    sqlite_path: str = Field(".data/training.db", validation_alias="SQLITE_PATH", description="SQLite store file, relative to the repo root.")
    firestore_database: str = Field("(default)", validation_alias="FIRESTORE_DATABASE", description="Firestore database id.")
    collection_prefix: str = Field("", validation_alias="COLLECTION_PREFIX", description="Prefix of the Firestore collection names (tests isolate with it).")
    bus_kind: Literal["inline", "pubsub"] = Field(
        "inline", validation_alias="BUS_KIND", description="Message bus: `inline` (in-process, embedded default) or `pubsub`."
    )
    topic_train_requests: str = Field("train-requests", validation_alias="TOPIC_TRAIN_REQUESTS", description="Topic the api publishes launches to.")
    topic_training_events: str = Field("training-events", validation_alias="TOPIC_TRAINING_EVENTS", description="Topic of backend and trainer events.")
    topic_train_submissions: str = Field("train-submissions", validation_alias="TOPIC_TRAIN_SUBMISSIONS", description="Topic of batch submissions.")
    topic_train_submissions_rejected: str = Field(
        "train-submissions-rejected",
        validation_alias="TOPIC_TRAIN_SUBMISSIONS_REJECTED",
        description="Topic rejected batch items are published to.",
    )
    stack_log_dir: str = Field(
        ".data/stack",
        validation_alias="STACK_LOG_DIR",
        description="`make run-emulators`: folder of the emulators' and functions' logs, relative to the repo root (`--log-dir` overrides it).",
    )


class HttpSettings(BaseSettings):
    """The api's HTTP face: bearer tokens, CORS, and the embedded server's limits and timeouts."""

    model_config = GROUP_CONFIG

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
    cors_origins: str | None = Field(None, validation_alias="CORS_ORIGINS", description="Comma-separated origins allowed by CORS (none by default).")
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


class OperationsSettings(BaseSettings):
    """The inline bus's retries, and reconcile's timing."""

    model_config = GROUP_CONFIG

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


class NotificationSettings(BaseSettings):
    """notify: webhooks on every transition (topic, subscribers, signing, SSRF allowances, retries)."""

    model_config = GROUP_CONFIG

    topic_job_transitions: str = Field(
        "job-transitions",
        validation_alias="TOPIC_JOB_TRANSITIONS",
        description="Topic the outbox relay publishes each job transition to (ordering key: the job id).",
    )
    webhook_urls: str | None = Field(
        None,
        validation_alias="WEBHOOK_URLS",
        description="Comma-separated webhook URLs that get every job's transitions (a request's `webhooks` adds its own).",
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
