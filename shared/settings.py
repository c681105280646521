"""Typed settings for every environment variable, read once at the edge and passed down.

Every variable of the old Training API keeps its name and default; ours are added. JSON-valued
variables (`K8S_NODE_SELECTOR`, `K8S_TOLERATIONS`, `K8S_IMAGE_PULL_SECRETS`, `K8S_RESOURCE_LIMITS`) are
parsed here: bad JSON is never silently ignored — it is listed in `config_errors`, logged at start-up,
reported by `/health`, and it makes the backend that needs it unavailable.

The fields live in their groups (`shared/settings_backends.py`: Kubernetes, Vertex;
`shared/settings_platform.py`: the old service's general variables, store and bus, HTTP, operations,
notifications); `Settings` composes them and derives the rest. The README's "Configuration" table is
generated from the field descriptions (`python -m shared.settings`), so the two can't drift.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import AliasChoices, PrivateAttr, field_validator
from pydantic_settings import SettingsConfigDict

from shared.domain import resources as res
from shared.domain.job import Backend
from shared.domain.request import RequestPolicy
from shared.settings_backends import DEFAULT_GPU_NODE_SELECTORS, DEFAULT_RESOURCE_LIMITS, DEFAULT_TOLERATIONS, KubernetesSettings, VertexSettings
from shared.settings_platform import MIN_TOKEN_CHARS, HttpSettings, NotificationSettings, OperationsSettings, PlatformSettings, ServiceSettings

if TYPE_CHECKING:
    from shared.sealing import Sealer

REPO_ROOT = Path(__file__).resolve().parent.parent

# Re-exported: the rest of the code and the tests read them here.
__all__ = ["DEFAULT_GPU_NODE_SELECTORS", "DEFAULT_RESOURCE_LIMITS", "DEFAULT_TOLERATIONS", "MIN_TOKEN_CHARS", "REPO_ROOT", "Settings", "settings_markdown"]


# Pydantic lists a model's inherited fields last base first: this order (read right to left) is the README
# table's: the old service's variables first, as before the split.
class Settings(NotificationSettings, OperationsSettings, HttpSettings, PlatformSettings, VertexSettings, KubernetesSettings, ServiceSettings):
    """Every setting, composed from the groups (`shared.settings_backends`, `shared.settings_platform`),
    and what is derived from them (parsed JSON, problems, the request policy)."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True, case_sensitive=True)

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
    def sealer(self) -> Sealer | None:
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
