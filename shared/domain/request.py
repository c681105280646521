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
"""

from __future__ import annotations

import difflib
import hashlib
import json
import posixpath
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field, StrictStr, ValidationError

from shared import jsonutil
from shared.domain import ssrf
from shared.domain.json_types import type_name as _type_name
from shared.domain.callback import Callback
from shared.domain.job import Backend
from shared.domain.resources import GPU_TYPES, LOCAL_PLACEMENT, Placement, Resources, parse_resources, placement_problems
from shared.errors import FieldError, ValidationFailed
from trainer import flags as trainer_flags

KEY_RE = re.compile(r"^[a-z][a-z0-9_]*$")
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
LABEL_KEY_RE = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")

MODEL_ALIASES = ("model", "model_name")
SECRET_KEYS = ("hf_token",)
# Keys of the request that are about the job, not the trainer: never rendered as flags.
RESERVED_KEYS = frozenset(
    {"backend", "job_name", "env", "trainer_args", "labels", "webhooks", "resources", "idempotency_key", *MODEL_ALIASES, *SECRET_KEYS}
)

# Environment names that would change how the child process (or container) runs: refused on every backend.
FORBIDDEN_ENV = frozenset(
    {
        "PATH",
        "PYTHONPATH",
        "PYTHONHOME",
        "PYTHONSTARTUP",
        "PYTHONINSPECT",
        "PYTHONEXECUTABLE",
        "PYTHONUSERBASE",
        "PYTHONNOUSERSITE",
        "PYTHONSAFEPATH",
        "PYTHONPLATLIBDIR",
        "PYTHONWARNINGS",
        "PYTHONBREAKPOINT",
        "PYTHONDEVMODE",
        "PYTHONMALLOC",
        "LD_PRELOAD",
        "LD_LIBRARY_PATH",
        "LD_AUDIT",
        "LD_DEBUG",
        "LD_PROFILE",
        "HOME",
        "SHELL",
        "BASH_ENV",
        "ENV",
        "IFS",
        "USER",
        "LOGNAME",
        "TMPDIR",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "REQUESTS_CA_BUNDLE",
        "CURL_CA_BUNDLE",
        "KUBECONFIG",
        "GOOGLE_APPLICATION_CREDENTIALS",
    }
)
FORBIDDEN_ENV_PREFIXES = ("LD_", "DYLD_", "PYTHON", "TRAINING_PLATFORM_")

MAX_NAME_CHARS = 200
MAX_VALUE_CHARS = 4096
MAX_LIST_ITEMS = 64
MAX_ENV_VARS = 64
MAX_LABELS = 32
MAX_WEBHOOKS = 5


class TrainRequestBody(BaseModel):
    """The studio's `POST /train` body (documentation and first-pass typing; see `normalise_request`)."""

    model_config = ConfigDict(extra="allow", strict=True, title="TrainRequest")

    backend: Literal["kubernetes", "vertex", "local"] | None = Field(
        None, description="Where the job runs; default from DEFAULT_TRAINING_BACKEND."
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
class RequestPolicy:
    """What this deployment accepts; built from settings at the edge and passed in."""

    default_backend: Backend = Backend.KUBERNETES
    # Backend -> None when usable, or a sentence saying what configuration is missing.
    backend_problems: dict[Backend, str | None] = field(default_factory=dict)
    # Absolute folders that a local job's dataset_file and output_dir must resolve inside.
    local_roots: tuple[str, ...] = ()
    # Folder relative local paths are resolved from (the repo root).
    local_base: str = "/"
    # Resolves symbolic links in a local path (`os.path.realpath`), so a link inside a root can't lead
    # outside it. Injected by the service: the domain does no I/O. None: the check is lexical only.
    resolve_links: Callable[[str], str] | None = None
    # Why a caller's webhook URL may not be called (the SSRF guard, with DNS), or None. Injected by the
    # service like `resolve_links`; None: only the URL's shape is checked here.
    check_webhook: Callable[[str], str | None] | None = None
    webhook_allowed_hosts: frozenset[str] = frozenset()
    # Why webhooks can't be accepted at all in this deployment (no signing secret), or None.
    webhooks_problem: str | None = None
    # GPU type names `resources.gpu_type` may use (the built-in ones plus the settings' tables).
    gpu_types: tuple[str, ...] = GPU_TYPES
    # Backend -> what it can place (its own table; see shared/domain/resources.py). Missing: no limits.
    placements: dict[Backend, Placement] = field(default_factory=lambda: {Backend.LOCAL: LOCAL_PLACEMENT})
    # Backend -> the secret variable names it can pass (None or missing: any), and the setting that adds
    # one (Vertex passes secrets only as Secret Manager references: VERTEX_HF_TOKEN_SECRET).
    secret_names: dict[Backend, frozenset[str] | None] = field(default_factory=dict)
    secret_settings: dict[str, str] = field(default_factory=dict)
    # Seals a secret the job must keep (the studio's callback Authorization value) for storage; injected
    # from settings like `check_webhook`. None: such secrets can't be accepted (a 400 says why).
    seal: Callable[[str], str] | None = None
    # The studio's spec names no output folder: per backend, the folder its runs write to (the studio's
    # job_id is appended), inside the container / VM or, for local, inside an allowed root. Missing for
    # local: `<first local root>/studio`.
    studio_output_roots: dict[Backend, str] = field(
        default_factory=lambda: {Backend.KUBERNETES: "/tmp/studio", Backend.VERTEX: "/tmp/studio"}
    )
    # Backend -> (trainer processes per node, nodes) a job gets when its `resources` leave gpus / nodes
    # unset: the studio's global batch_size is split over these data-parallel ranks.
    default_parallel: dict[Backend, tuple[int, int]] = field(default_factory=dict)


@dataclass(frozen=True)
class NormalisedRequest:
    backend: Backend
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


_FLAG_ORDER = {flag.name: i for i, flag in enumerate(trainer_flags.FLAGS)}


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


def _key_name(key: object) -> str:
    """A key as an error's field name: an empty key is shown as `""`, so every error names something."""
    text = str(key)
    return text if text.strip() else json.dumps(text)


def _suggest(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(name.replace("-", "_").lower(), choices, n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def _check_text(value: str, path: str, errors: list[FieldError], *, limit: int = MAX_VALUE_CHARS) -> bool:
    if CONTROL_RE.search(value):
        errors.append(FieldError(path, "must not contain control characters (newlines, tabs, NUL)"))
        return False
    if len(value) > limit:
        errors.append(FieldError(path, f"must be at most {limit} characters"))
        return False
    try:
        value.encode()
    except UnicodeEncodeError:  # a lone surrogate escape: valid JSON, not text (no path, name or label)
        errors.append(FieldError(path, "must not contain lone surrogate escapes (\\ud800-\\udfff)"))
        return False
    return True


def _in_range(flag: trainer_flags.Flag, value: int | float, path: str, errors: list[FieldError]) -> bool:
    """The flag table's range (the one the trainer's parser applies too): int64 at most for every int."""
    if isinstance(value, int) and flag.type == "float" and abs(value) > 2**1023:
        problem: str | None = "must be a finite number"  # float() of it would overflow
    else:
        problem = flag.range_problem(value)
    if problem:
        errors.append(FieldError(path, problem))
        return False
    return True


def _render_scalar(flag: trainer_flags.Flag, value: Any, path: str, errors: list[FieldError]) -> str | None:
    """Check one non-null, non-bool value against its flag's type; return its rendered text."""
    kind = "list" if flag.type == "list" else flag.type
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            errors.append(FieldError(path, f"must be an integer, got {_type_name(value)}"))
            return None
        if not _in_range(flag, value, path, errors):
            return None
        return str(value)
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            errors.append(FieldError(path, f"must be a number, got {_type_name(value)}"))
            return None
        if not _in_range(flag, value, path, errors):
            return None
        return repr(float(value)) if isinstance(value, float) else str(value)
    if not isinstance(value, str):
        errors.append(FieldError(path, f"must be a string, got {_type_name(value)}"))
        return None
    if not _check_text(value, path, errors):
        return None
    if kind == "choice" and value not in flag.choices:
        errors.append(FieldError(path, f"must be one of {', '.join(flag.choices)}{_suggest(value, list(flag.choices))}"))
        return None
    if value == "":
        errors.append(FieldError(path, "must not be empty"))
        return None
    return value


def render_flag(name: str, value: Any, path: str, errors: list[FieldError]) -> list[str]:
    """Render one trainer flag (already known to exist) into argv tokens, or record why it can't be."""
    flag = trainer_flags.BY_NAME[name]
    if value is None:
        return []
    if isinstance(value, dict):
        errors.append(FieldError(path, "must not be an object: trainer flags take a string, number, boolean or list"))
        return []
    if flag.type == "bool":
        if not isinstance(value, bool):
            errors.append(FieldError(path, f"must be a boolean, got {_type_name(value)}"))
            return []
        if value:
            return [flag.cli]
        return [f"--no_{name}"] if flag.default is True else []
    if isinstance(value, bool):
        expected = {"list": "list of strings", "int": "integer", "float": "number", "choice": "string"}.get(flag.type, flag.type)
        errors.append(FieldError(path, f"must be a {expected}, got boolean"))
        return []
    if flag.type == "list":
        items = value if isinstance(value, list) else [value]
        if len(items) > MAX_LIST_ITEMS:
            errors.append(FieldError(path, f"must have at most {MAX_LIST_ITEMS} items"))
            return []
        out: list[str] = []
        for i, item in enumerate(items):
            if isinstance(item, (dict, list)):
                errors.append(FieldError(f"{path}[{i}]", "must be a string"))
                continue
            text = _render_scalar(flag, item, f"{path}[{i}]", errors)
            if text is not None:
                out.append(f"{flag.cli}={text}")
        return out
    if isinstance(value, list):
        errors.append(FieldError(path, f"takes a single value, not a list ({name} is not a repeatable flag)"))
        return []
    text = _render_scalar(flag, value, path, errors)
    return [] if text is None else [f"{flag.cli}={text}"]


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


def _resolve_local(path: str, base: str) -> str:
    joined = path if posixpath.isabs(path) else posixpath.join(base, path)
    return posixpath.normpath(joined)


def _inside(path: str, roots: tuple[str, ...]) -> bool:
    for root in roots:
        root = posixpath.normpath(root)
        if path == root or path.startswith(root.rstrip("/") + "/"):
            return True
    return False


def _check_location(
    backend: Backend, field_name: str, value: str, policy: RequestPolicy, errors: list[FieldError], path: str | None = None
) -> str:
    """Backend rules for dataset_file / output_dir; returns the value the trainer gets. Errors name `path`
    (`dataset_file[1]` for one of several sources), or the field."""
    where = path or field_name
    if backend is Backend.KUBERNETES and field_name == "dataset_file":
        if not value.startswith(("gs://", "s3://")):
            errors.append(FieldError(where, "must be a gs:// or s3:// URI for the kubernetes backend"))
        return value
    if backend is Backend.VERTEX and field_name == "dataset_file":
        if not value.startswith("gs://"):
            errors.append(FieldError(where, "must be a gs:// URI for the vertex backend"))
        return value
    if backend is Backend.LOCAL:
        if value.startswith(("gs://", "s3://")):
            if field_name == "output_dir":
                errors.append(FieldError(where, "must be a local folder; use upload_output_to for gs:// or s3://"))
            return value
        if "://" in value:
            errors.append(FieldError(where, "must be a local path, gs:// or s3:// URI"))
            return value
        resolved = _resolve_local(value, policy.local_base)
        if policy.resolve_links is not None:
            # The trainer gets the resolved path too: a link swapped after this check can't redirect it.
            resolved = policy.resolve_links(resolved)
        if not _inside(resolved, policy.local_roots):
            roots = ", ".join(policy.local_roots) or "(none configured)"
            errors.append(FieldError(where, f"must resolve inside the local backend's allowed roots: {roots}"))
        return resolved
    return value


def normalise_request(
    body: Any, policy: RequestPolicy, *, platform_env: Mapping[str, tuple[str, str]] | None = None
) -> NormalisedRequest:
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
            errors.append(FieldError(_key_name(key), "is not a valid key: keys are snake_case ([a-z][a-z0-9_]*)"))
    if errors:
        raise ValidationFailed(errors)

    try:
        typed = TrainRequestBody.model_validate(body)
    except ValidationError as exc:
        raise ValidationFailed(_pydantic_errors(exc)) from None

    backend = Backend(typed.backend) if typed.backend else policy.default_backend
    problem = policy.backend_problems.get(backend)
    if problem:
        errors.append(FieldError("backend", f"{backend.value} is not available here: {problem}"))

    if typed.job_name is not None:
        _check_text(typed.job_name, "job_name", errors, limit=MAX_NAME_CHARS)
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
        path = f"trainer_args.{_key_name(key)}"
        if not isinstance(key, str) or not KEY_RE.match(key):
            hint = _suggest(str(key), list(trainer_flags.BY_NAME))
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
            errors.append(FieldError(path, f"unknown trainer flag '{key}'{_suggest(key, list(trainer_flags.BY_NAME))}"))
            continue
        if key in ("dataset_file", "output_dir") and isinstance(value, str):
            if not _check_text(value, path, errors):
                continue
            value = _check_location(backend, key, value, policy, errors)
        elif key == "dataset_file" and isinstance(value, list):
            # Several sources: each one passes the same location rules, named by its index.
            if not value:
                errors.append(FieldError(path, "must name at least one source"))
                continue
            value = [
                _check_location(backend, key, item, policy, errors, f"{path}[{i}]")
                if isinstance(item, str) and _check_text(item, f"{path}[{i}]", errors) else item
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
        path = f"env.{_key_name(name)}"
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
            errors.append(FieldError(f"labels.{_key_name(key)}", "is not a valid label key ([a-z][a-z0-9_-], at most 63)"))
        elif _check_text(value, f"labels.{key}", errors, limit=256):
            labels[key] = value

    webhooks = _webhooks(typed.webhooks, policy, errors)

    before = len(errors)
    resources = parse_resources(typed.resources, policy.gpu_types, errors)
    placement = policy.placements.get(backend)
    if placement is not None and len(errors) == before:
        errors += placement_problems(resources, placement)
    errors += _secret_problems(backend, env, typed, policy, origins)

    for name in ("dataset_file", "output_dir"):
        if name in body and isinstance(body[name], str) and not body[name].strip():
            errors.append(FieldError(name, "must not be empty"))

    # Canonical order: the trainer's own table order, so equal requests render equal command lines.
    args = [token for name in sorted(rendered_by_flag, key=_FLAG_ORDER.__getitem__) for token in rendered_by_flag[name]]

    if errors:
        # Report each field once, in the order found.
        seen: set[tuple[str, str]] = set()
        unique = [e for e in errors if not ((e.field, e.message) in seen or seen.add((e.field, e.message)))]
        raise ValidationFailed(unique)

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


def _secret_problems(
    backend: Backend, env: dict[str, str], typed: TrainRequestBody, policy: RequestPolicy, origins: Mapping[str, str] | None = None
) -> list[FieldError]:
    """A secret the backend can't pass is a 400 here, naming where it was given and the setting that
    would make it passable, never a 202 that fails at launch (`secret_settings["*"]`: the one setting
    that makes any secret passable, e.g. Vertex's per-job secrets)."""
    allowed = policy.secret_names.get(backend)
    if allowed is None:
        return []
    out = []
    for name in sorted(env):
        if name in allowed:
            continue
        where = (origins or {}).get(name) or (f"env.{name}" if name in typed.env else "hf_token")
        setting = policy.secret_settings.get(name)
        every = policy.secret_settings.get("*")
        how = " or ".join(f"set {x}" for x in (setting, every) if x) or "no setting maps it"
        out.append(FieldError(where, f"the {backend.value} backend passes secrets only as Secret Manager references and none is configured for {name} ({how})"))
    return out


def _webhooks(urls: list[str], policy: RequestPolicy, errors: list[FieldError]) -> tuple[str, ...]:
    """A request's own webhook URLs: at most MAX_WEBHOOKS, each through the SSRF guard (shape here, its
    addresses through the injected check), each once."""
    if not urls:
        return ()
    if policy.webhooks_problem is not None:
        errors.append(FieldError("webhooks", policy.webhooks_problem))
        return ()
    if len(urls) > MAX_WEBHOOKS:
        errors.append(FieldError("webhooks", f"must list at most {MAX_WEBHOOKS} URLs"))
        return ()
    out: list[str] = []
    for i, url in enumerate(urls):
        _, problem = ssrf.parse_target(url, policy.webhook_allowed_hosts)
        if problem is None and policy.check_webhook is not None:
            problem = policy.check_webhook(url)
        if problem is not None:
            errors.append(FieldError(f"webhooks[{i}]", problem))
        elif url not in out:
            out.append(url)
    return tuple(out)
