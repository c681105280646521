"""Training requests: the studio's `POST /train` contract, normalised and rendered into trainer flags.

Pure: takes a decoded JSON body and a `RequestPolicy` (what the deployment allows), returns a
`NormalisedRequest` or raises `ValidationFailed` listing every bad field. The trainer's own flag table
(`trainer/flags.py`) is the only source of flag names, types and defaults.

Rendering rules (ARCHITECTURE.md "Request"):
- `model` / `model_name` are aliases of `model_id`; only `--model_id` is rendered.
- `hf_token` (top level or in `trainer_args`) becomes the secret env `HF_TOKEN`, never a flag.
- reserved keys (`backend`, `job_name`, `env`, `trainer_args`, `labels`, ...) are never rendered.
- top-level keys override `trainer_args`.
- `true` -> bare flag; `false` -> omitted, or `--no_<name>` where the trainer's default is on;
  `null` -> omitted; a list -> the flag repeated (list flags only); a nested object -> 400.
- values are rendered as `--name=value`, so a value that starts with `-` can't be read as a flag, and
  numbers are rendered so that argparse reads back the same value (`repr` of a float round-trips).

The pieces live beside it: `flag_rendering.py` (text checks, one flag -> argv tokens) and
`request_policy.py` (what the deployment allows: locations, forbidden env, secrets, webhooks).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictStr, ValidationError

from shared import jsonutil
from shared.domain.backend import BackendKind
from shared.domain.callback import Callback
from shared.domain.flag_rendering import (
    CONTROL_RE,
    FLAG_ORDER,
    KEY_RE,
    check_text,
    key_name,
    render_flag,
    suggest,
    unique_errors,
)
from shared.domain.json_types import type_name as _type_name
from shared.domain.request_policy import (
    FORBIDDEN_ENV,
    FORBIDDEN_ENV_PREFIXES,
    MAX_WEBHOOKS,
    RequestPolicy,
    check_location,
    secret_problems,
    webhook_urls,
)
from shared.domain.resources import Resources, parse_resources, placement_problems
from shared.errors import FieldError, ValidationFailed
from trainer import flags as trainer_flags

# The request's public face; `RequestPolicy` is re-exported (settings, the service and the tests read it here).
__all__ = ["RESERVED_KEYS", "NormalisedRequest", "RequestPolicy", "TrainRequestBody", "normalise_request", "render_flag", "request_fingerprint"]

ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
LABEL_KEY_RE = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")

MODEL_ALIASES = ("model", "model_name")
SECRET_KEYS = ("hf_token",)
# Keys of the request that are about the job, not the trainer: never rendered as flags.
RESERVED_KEYS = frozenset({"backend", "job_name", "env", "trainer_args", "labels", "webhooks", "resources", "idempotency_key", *MODEL_ALIASES, *SECRET_KEYS})


MAX_NAME_CHARS = 200
MAX_ENV_VARS = 64
MAX_LABELS = 32


class TrainRequestBody(BaseModel):
    """The studio's `POST /train` body (documentation and first-pass typing; see `normalise_request`)."""

    model_config = ConfigDict(extra="allow", strict=True, title="TrainRequest")

    backend: BackendKind | None = Field(
        None,
        description="Where the job runs: a backend `/health` lists; default from DEFAULT_TRAINING_BACKEND.",
        json_schema_extra={"examples": ["kubernetes"]},
    )
    job_name: StrictStr | None = Field(None, description="Human-readable name; defaults to the job id.", max_length=MAX_NAME_CHARS)
    dataset_file: StrictStr | list[StrictStr] = Field(
        description="Training data: a file or a folder / prefix of shards (JSONL, JSON, CSV, Parquet, save_to_disk), or a list "
        "of them (concatenated in order); gs:// or s3:// for Kubernetes, gs:// for Vertex, a path (or gs:// / s3://) for local."
    )
    output_dir: StrictStr = Field(description="Output folder inside the container / VM / local roots.")
    model_id: StrictStr | None = Field(None, description="Base model (aliases: model, model_name).")
    model: StrictStr | None = Field(None, description="Alias of model_id.")
    model_name: StrictStr | None = Field(None, description="Alias of model_id.")
    upload_output_to: StrictStr | None = Field(None, description="gs:// or s3:// prefix the output is uploaded to.")
    trainer_args: dict[str, Any] = Field(default_factory=dict, description="Extra trainer flags, by snake_case name.")
    env: dict[str, StrictStr] = Field(default_factory=dict, description="Extra environment: secrets, stored redacted.")
    hf_token: StrictStr | None = Field(None, description="Hugging Face token; becomes the secret env HF_TOKEN.")
    labels: dict[str, StrictStr] = Field(default_factory=dict, description="Free-form labels stored with the job.")
    webhooks: list[StrictStr] = Field(
        default_factory=list,
        description=f"At most {MAX_WEBHOOKS} URLs that get this job's transitions as signed Standard Webhooks (https://, public addresses).",
    )
    resources: dict[str, Any] | None = Field(
        None,
        description="Per-job hardware; each field optional (unset: the deployment's settings): gpus (per node, 0-16), gpu_type "
        "(L4, A100, A100-80GB, H100, H200, B200, case-insensitive; more through settings), nodes (1-64), cpus and memory_gb "
        "(per node), max_duration_minutes.",
    )


@dataclass(frozen=True)
class NormalisedRequest:
    backend: BackendKind
    job_name: str | None
    dataset_file: str  # the first source (the job summary's `datasetFile`, as before)
    output_dir: str
    model_id: str | None
    upload_output_to: str | None
    args: tuple[str, ...]
    # The values the trainer will see, by flag name (after overrides), for display and tests.
    flag_values: dict[str, Any]
    env: dict[str, str]  # secret: only ever travels inside the launch message
    labels: dict[str, str]
    request_hash: str
    dataset_files: tuple[str, ...] = ()  # every source, in order
    webhooks: tuple[str, ...] = ()  # this job's own subscribers
    resources: Resources = Resources()  # what was asked; unset fields: the backend's settings
    callback: Callback | None = None  # the studio's status callback (Authorization sealed)
    log_uri: str | None = None  # where the trainer writes its full log and run_summary.json (studio artifacts.log_uri)
    idempotency_key: str | None = None  # from the body (the studio's job_id); the Idempotency-Key header is the other way

    @property
    def env_names(self) -> tuple[str, ...]:
        return tuple(sorted(self.env))


def request_fingerprint(body: Any) -> str:
    """A stable hash of a request body, for Idempotency-Key conflict detection (secrets included, hashed).
    Raises ValidationFailed naming the field if a string holds a lone surrogate (`"\\ud800"` is valid JSON
    but no text: it can't be stored, logged or passed to the trainer)."""
    try:
        data = jsonutil.canonical(body)
    except UnicodeEncodeError:
        paths = _surrogate_paths(body) or ["body"]
        raise ValidationFailed([FieldError(path, "must not contain lone surrogate escapes (\\ud800-\\udfff)") for path in paths]) from None
    return hashlib.sha256(data).hexdigest()


def _surrogate_paths(value: Any, path: str = "") -> list[str]:
    def bad(text: str) -> bool:
        try:
            text.encode()
        except UnicodeEncodeError:
            return True
        return False

    found: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            here = f"{path}.{key}" if path else str(key)
            if isinstance(key, str) and bad(key):
                found.append(path or "body")
            found += _surrogate_paths(item, here)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found += _surrogate_paths(item, f"{path}[{i}]")
    elif isinstance(value, str) and bad(value):
        found.append(path or "body")
    return found


def _pydantic_errors(exc: ValidationError) -> list[FieldError]:
    out = []
    for err in exc.errors():
        parts = err.get("loc", ())
        if parts and parts[0] == "dataset_file" and err.get("type") != "missing":
            # A union (one source or a list): pydantic reports each branch; name the item, or the field once.
            index = next((p for p in parts[1:] if isinstance(p, int)), None)
            if index is not None:
                out.append(FieldError(f"dataset_file[{index}]", "must be a string"))
            else:
                out.append(FieldError("dataset_file", "must be a string or a list of strings"))
            continue
        loc = ".".join(str(p) for p in parts) or "body"
        msg = err.get("msg", "is invalid")
        if err.get("type") == "missing":
            msg = "is required"
        elif err.get("type") == "literal_error":
            msg = "must be one of kubernetes, vertex, local"
        out.append(FieldError(loc, msg))
    return out


def normalise_request(body: Any, policy: RequestPolicy, *, platform_env: Mapping[str, tuple[str, str]] | None = None) -> NormalisedRequest:
    """Validate a decoded `POST /train` body and render its trainer flags. Raises ValidationFailed.

    `platform_env`: secret variables the platform itself sets, name -> (value, the field it came from),
    such as the per-source credentials (`trainer.flags.CREDENTIALS_ENV`) the studio's spec carries; a
    request's own `env` can't set them (their prefix is reserved). They pass the backend's secret checks
    like any other, named by their field."""
    if not isinstance(body, dict):
        raise ValidationFailed([FieldError("body", f"must be a JSON object, got {_type_name(body)}")])
    errors: list[FieldError] = []

    # Top-level keys: names first, so a bad key is reported once, clearly.
    for key in body:
        if not isinstance(key, str) or not KEY_RE.match(key):
            errors.append(FieldError(key_name(key), "is not a valid key: keys are snake_case ([a-z][a-z0-9_]*)"))
    if errors:
        raise ValidationFailed(errors)

    try:
        typed = TrainRequestBody.model_validate(body)
    except ValidationError as exc:
        raise ValidationFailed(_pydantic_errors(exc)) from None

    backend = typed.backend or policy.default_backend
    if backend is None:
        raise ValidationFailed([FieldError("backend", "is required: this deployment has no DEFAULT_TRAINING_BACKEND")])
    problem = policy.backend_error(backend)
    if problem is not None and backend not in policy.backends:
        raise ValidationFailed([problem])  # an unknown backend: none of its rules can be checked
    if problem is not None:
        errors.append(problem)

    if typed.job_name is not None:
        check_text(typed.job_name, "job_name", errors, limit=MAX_NAME_CHARS)
        if not typed.job_name.strip():
            errors.append(FieldError("job_name", "must not be blank"))

    # Model: model_id wins over its aliases only when they agree.
    model_values = {k: body[k] for k in ("model_id", *MODEL_ALIASES) if body.get(k) is not None}
    if len(set(model_values.values())) > 1:
        errors.append(FieldError("model_id", f"conflicting values in {', '.join(model_values)}: give one"))
    model_id = next(iter(model_values.values()), None)

    # Flags: trainer_args first, then top-level keys override them.
    merged: dict[str, tuple[Any, str]] = {}
    secret_env: dict[str, str] = {}
    # Where the token was given, by JSON path: several places must agree (like model_id's aliases).
    token_sources: dict[str, str] = {}
    for key, value in typed.trainer_args.items():
        path = f"trainer_args.{key_name(key)}"
        if not isinstance(key, str) or not KEY_RE.match(key):
            hint = suggest(str(key), list(trainer_flags.BY_NAME))
            errors.append(FieldError(path, f"is not a valid flag name: flags are snake_case{hint}"))
            continue
        if key in SECRET_KEYS:
            if value is not None:
                if not isinstance(value, str):
                    errors.append(FieldError(path, f"must be a string, got {_type_name(value)}"))
                else:
                    secret_env["HF_TOKEN"] = value
                    token_sources[path] = value
            continue
        if key in MODEL_ALIASES:
            key = "model_id"
            if value is not None and model_id is None:
                model_id = value
        if key in RESERVED_KEYS:
            errors.append(FieldError(path, f"'{key}' is a request field, not a trainer flag: set it at the top level"))
            continue
        merged[key] = (value, path)
    for key, value in body.items():
        if key in RESERVED_KEYS:
            continue
        merged[key] = (value, key)
    if model_id is not None:
        merged["model_id"] = (model_id, "model_id")

    rendered_by_flag: dict[str, list[str]] = {}
    flag_values: dict[str, Any] = {}
    for key, (value, path) in merged.items():
        if key not in trainer_flags.BY_NAME:
            errors.append(FieldError(path, f"unknown trainer flag '{key}'{suggest(key, list(trainer_flags.BY_NAME))}"))
            continue
        if key in ("dataset_file", "output_dir") and isinstance(value, str):
            if not check_text(value, path, errors):
                continue
            value = check_location(backend, key, value, policy, errors)
        elif key == "dataset_file" and isinstance(value, list):
            # Several sources: each one passes the same location rules, named by its index.
            if not value:
                errors.append(FieldError(path, "must name at least one source"))
                continue
            value = [
                check_location(backend, key, item, policy, errors, f"{path}[{i}]")
                if isinstance(item, str) and check_text(item, f"{path}[{i}]", errors)
                else item
                for i, item in enumerate(value)
            ]
        if key == "upload_output_to" and isinstance(value, str) and not value.startswith(("gs://", "s3://")):
            errors.append(FieldError(path, "must be a gs:// or s3:// URI"))
            continue
        before = len(errors)
        rendered = render_flag(key, value, path, errors)
        if len(errors) == before:
            rendered_by_flag[key] = rendered
            if value is not None:
                flag_values[key] = value

    # Environment: secret values, names checked.
    env: dict[str, str] = {}
    if len(typed.env) > MAX_ENV_VARS:
        errors.append(FieldError("env", f"must have at most {MAX_ENV_VARS} variables"))
    for name, value in typed.env.items():
        path = f"env.{key_name(name)}"
        if not ENV_NAME_RE.match(name):
            errors.append(FieldError(path, "is not a valid environment variable name"))
        elif name.upper() in FORBIDDEN_ENV or name.upper().startswith(FORBIDDEN_ENV_PREFIXES):
            errors.append(FieldError(path, "can't be set: it would change how the trainer process runs"))
        elif "\x00" in value or len(value) > 65536:
            errors.append(FieldError(path, "must not contain NUL and must be at most 65536 characters"))
        else:
            env[name] = value
    if typed.hf_token is not None:
        secret_env["HF_TOKEN"] = typed.hf_token
        token_sources["hf_token"] = typed.hf_token
    if "HF_TOKEN" in typed.env:
        token_sources["env.HF_TOKEN"] = typed.env["HF_TOKEN"]
    if len(set(token_sources.values())) > 1:
        # Names only: the values are secrets.
        errors.append(FieldError("hf_token", f"conflicting values in {', '.join(sorted(token_sources, key=len))}: give one"))
    for name, value in secret_env.items():
        if "\x00" in value or CONTROL_RE.search(value):
            errors.append(FieldError("hf_token", "must not contain control characters"))
        else:
            env[name] = value
    origins: dict[str, str] = {}
    for name, (value, where) in (platform_env or {}).items():
        env[name] = value
        origins[name] = where

    labels: dict[str, str] = {}
    if len(typed.labels) > MAX_LABELS:
        errors.append(FieldError("labels", f"must have at most {MAX_LABELS} labels"))
    for key, value in typed.labels.items():
        if not LABEL_KEY_RE.match(key):
            errors.append(FieldError(f"labels.{key_name(key)}", "is not a valid label key ([a-z][a-z0-9_-], at most 63)"))
        elif check_text(value, f"labels.{key}", errors, limit=256):
            labels[key] = value

    webhooks = webhook_urls(typed.webhooks, policy, errors)

    before = len(errors)
    resources = parse_resources(typed.resources, policy.gpu_types, errors)
    placement = policy.rules(backend).placement
    if placement is not None and len(errors) == before:
        errors += placement_problems(resources, placement)
    errors += secret_problems(backend, env, typed.env, policy, origins)

    for name in ("dataset_file", "output_dir"):
        if name in body and isinstance(body[name], str) and not body[name].strip():
            errors.append(FieldError(name, "must not be empty"))

    # Canonical order: the trainer's own table order, so equal requests render equal command lines.
    args = [token for name in sorted(rendered_by_flag, key=FLAG_ORDER.__getitem__) for token in rendered_by_flag[name]]

    if errors:
        raise ValidationFailed(unique_errors(errors))

    sources = flag_values["dataset_file"]
    dataset_files = tuple(sources) if isinstance(sources, list) else (sources,)
    flag_values["dataset_file"] = list(dataset_files)  # a repeatable flag: the trainer reads a list
    return NormalisedRequest(
        backend=backend,
        job_name=typed.job_name,
        dataset_file=dataset_files[0],
        dataset_files=dataset_files,
        output_dir=flag_values["output_dir"],
        model_id=flag_values.get("model_id"),
        upload_output_to=flag_values.get("upload_output_to"),
        args=tuple(args),
        flag_values=flag_values,
        env=env,
        labels=labels,
        request_hash=request_fingerprint(body),
        webhooks=webhooks,
        resources=resources,
        log_uri=flag_values.get("log_uri"),
    )
