"""What a deployment lets a training request do, and the checks that depend on it.

Pure: `RequestPolicy` is built from settings at the edge (`shared.settings`) and passed in, with its
I/O (link resolution, the webhook DNS check, sealing) injected as callables. It carries each backend's
rules (`shared.domain.backend.BackendRules`) by name. Here are the checks that read it: whether the
backend is known and usable (`backend_error`), where its `dataset_file` / `output_dir` may point
(`check_location`, the backend's own rule), which environment
names a request may never set (`FORBIDDEN_ENV`), which secrets a backend can pass (`secret_problems`)
and a request's own webhooks (`webhook_urls`). `shared.domain.request.normalise_request` runs them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from shared.domain import ssrf
from shared.domain.backend import BackendKind, BackendRules
from shared.domain.resources import GPU_TYPES
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

    # The backends this deployment knows, by name: each one's rules (problem, locations, placement, ...),
    # built by its unit from its settings (`shared/adapters/registry.py`).
    backends: Mapping[str, BackendRules] = field(default_factory=dict)
    # The backend of a request that names none (DEFAULT_TRAINING_BACKEND).
    default_backend: BackendKind | None = None
    # Resolves symbolic links in a local path (`os.path.realpath`), so a link inside a root can't lead
    # outside it. Injected by the service: the domain does no I/O. None: the check is lexical only.
    resolve_links: Callable[[str], str] | None = None
    # Why a caller's webhook URL may not be called (the SSRF guard, with DNS), or None. Injected by the
    # service like `resolve_links`; None: only the URL's shape is checked here.
    check_webhook: Callable[[str], str | None] | None = None
    webhook_allowed_hosts: frozenset[str] = frozenset()
    # Why webhooks can't be accepted at all in this deployment (no signing secret), or None.
    webhooks_problem: str | None = None
    # GPU type names `resources.gpu_type` may use (the built-in ones plus the backends' tables).
    gpu_types: tuple[str, ...] = GPU_TYPES
    # Seals a secret the job must keep (the studio's callback Authorization value) for storage; injected
    # from settings like `check_webhook`. None: such secrets can't be accepted (a 400 says why).
    seal: Callable[[str], str] | None = None

    def rules(self, backend: str) -> BackendRules:
        """The rules of a backend this policy knows (`backend_error` says when it doesn't)."""
        return self.backends[backend]

    def backend_error(self, backend: str) -> FieldError | None:
        """Why a request can't run on `backend` here (unknown, or not configured), or None."""
        rules = self.backends.get(backend)
        if rules is None:
            return FieldError("backend", f"must be one of {', '.join(self.backends) or '(none configured)'}")
        if rules.problem:
            return FieldError("backend", f"{backend} is not available here: {rules.problem}")
        return None


def check_location(backend: str, field_name: str, value: str, policy: RequestPolicy, errors: list[FieldError], path: str | None = None) -> str:
    """The backend's rules for dataset_file / output_dir (`BackendRules.check_location`); returns the value
    the trainer gets. Errors name `path` (`dataset_file[1]` for one of several sources), or the field."""
    return policy.rules(backend).check_location(field_name, value, errors, path, policy.resolve_links)


def secret_problems(
    backend: str,
    env: dict[str, str],
    request_env: Mapping[str, str],
    policy: RequestPolicy,
    origins: Mapping[str, str] | None = None,
) -> list[FieldError]:
    """A secret the backend can't pass is a 400 here, naming where it was given and the setting that
    would make it passable, never a 202 that fails at launch (`secret_settings["*"]`: the one setting
    that makes any secret passable, e.g. Vertex's per-job secrets). `request_env`: the body's own `env`
    (a name found there is named `env.<name>`; any other is the token, `hf_token`)."""
    rules = policy.rules(backend)
    allowed = rules.secret_names
    if allowed is None:
        return []
    out = []
    for name in sorted(env):
        if name in allowed:
            continue
        where = (origins or {}).get(name) or (f"env.{name}" if name in request_env else "hf_token")
        setting = rules.secret_settings.get(name)
        every = rules.secret_settings.get("*")
        how = " or ".join(f"set {x}" for x in (setting, every) if x) or "no setting maps it"
        out.append(FieldError(where, f"the {backend} backend passes secrets only as Secret Manager references and none is configured for {name} ({how})"))
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
