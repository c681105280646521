"""What a deployment lets a training request do, and the checks that depend on it.

Pure: `RequestPolicy` is built from settings at the edge (`shared.settings`) and passed in, with its
I/O (link resolution, the webhook DNS check, sealing) injected as callables. Here are the rules that
read it: where a backend's `dataset_file` / `output_dir` may point (`check_location`), which environment
names a request may never set (`FORBIDDEN_ENV`), which secrets a backend can pass (`secret_problems`)
and a request's own webhooks (`webhook_urls`). `shared.domain.request.normalise_request` runs them.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from shared.domain import ssrf
from shared.domain.job import Backend
from shared.domain.resources import GPU_TYPES, LOCAL_PLACEMENT, Placement
from shared.errors import FieldError

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

MAX_WEBHOOKS = 5


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
    studio_output_roots: dict[Backend, str] = field(default_factory=lambda: {Backend.KUBERNETES: "/tmp/studio", Backend.VERTEX: "/tmp/studio"})
    # Backend -> (trainer processes per node, nodes) a job gets when its `resources` leave gpus / nodes
    # unset: the studio's global batch_size is split over these data-parallel ranks.
    default_parallel: dict[Backend, tuple[int, int]] = field(default_factory=dict)


def _resolve_local(path: str, base: str) -> str:
    joined = path if posixpath.isabs(path) else posixpath.join(base, path)
    return posixpath.normpath(joined)


def _inside(path: str, roots: tuple[str, ...]) -> bool:
    for root in roots:
        root = posixpath.normpath(root)
        if path == root or path.startswith(root.rstrip("/") + "/"):
            return True
    return False


def check_location(backend: Backend, field_name: str, value: str, policy: RequestPolicy, errors: list[FieldError], path: str | None = None) -> str:
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


def secret_problems(
    backend: Backend,
    env: dict[str, str],
    request_env: Mapping[str, str],
    policy: RequestPolicy,
    origins: Mapping[str, str] | None = None,
) -> list[FieldError]:
    """A secret the backend can't pass is a 400 here, naming where it was given and the setting that
    would make it passable, never a 202 that fails at launch (`secret_settings["*"]`: the one setting
    that makes any secret passable, e.g. Vertex's per-job secrets). `request_env`: the body's own `env`
    (a name found there is named `env.<name>`; any other is the token, `hf_token`)."""
    allowed = policy.secret_names.get(backend)
    if allowed is None:
        return []
    out = []
    for name in sorted(env):
        if name in allowed:
            continue
        where = (origins or {}).get(name) or (f"env.{name}" if name in request_env else "hf_token")
        setting = policy.secret_settings.get(name)
        every = policy.secret_settings.get("*")
        how = " or ".join(f"set {x}" for x in (setting, every) if x) or "no setting maps it"
        out.append(FieldError(where, f"the {backend.value} backend passes secrets only as Secret Manager references and none is configured for {name} ({how})"))
    return out


def webhook_urls(urls: list[str], policy: RequestPolicy, errors: list[FieldError]) -> tuple[str, ...]:
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
