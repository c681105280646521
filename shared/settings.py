"""Typed settings for every environment variable, read once at the edge and passed down.

Every variable of the old Training API keeps its name and default; ours are added. The platform's
fields live in their groups (`shared/settings_platform.py`: the old service's general variables, store
and bus, HTTP, operations, notifications), which `Settings` composes; each backend's live in its unit's
own group (a `shared.settings_group.SettingsGroup` under its env prefix, e.g. `K8S_*`), one per backend
of the registry (`shared/adapters/registry.py`), built beside them (`group`, `backend_settings`). A
JSON-valued variable that does not parse is never silently ignored: it is listed in `config_errors`,
logged at start-up, reported by `/health`, and it makes the backend that needs it unavailable.

The README's "Configuration" table is generated from the field descriptions (`python -m shared.settings`),
so the two can't drift.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import AliasChoices, PrivateAttr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.adapters.registry import REGISTRY
from shared.adapters.unit import BackendUnit, RulesContext
from shared.domain import resources as res
from shared.domain.backend import BackendKind, BackendRules
from shared.domain.request import RequestPolicy
from shared.settings_group import REPO_ROOT, SettingsGroup, blank_is_unset
from shared.settings_platform import MIN_TOKEN_CHARS, HttpSettings, NotificationSettings, OperationsSettings, PlatformSettings, ServiceSettings

if TYPE_CHECKING:
    from shared.sealing import Sealer


# Re-exported: the rest of the code and the tests read them here.
__all__ = ["MIN_TOKEN_CHARS", "REPO_ROOT", "Settings", "settings_markdown"]
G = TypeVar("G", bound=SettingsGroup)


# Pydantic lists a model's inherited fields last base first: this order (read right to left) is the README
# table's: the old service's variables first, as before the split.
class Settings(NotificationSettings, OperationsSettings, HttpSettings, PlatformSettings, ServiceSettings):
    """Every setting: the platform's groups (`shared.settings_platform`), each registered backend's own
    group, and what is derived from them (problems, the backends' rules, the request policy)."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True, case_sensitive=True)

    _errors: list[str] = PrivateAttr(default_factory=list)
    _auth_problem: str | None = PrivateAttr(default=None)
    _backends: dict[BackendKind, SettingsGroup] = PrivateAttr(default_factory=dict)
    _rules: dict[str, BackendRules] | None = PrivateAttr(default=None)

    def __init__(self, **values: Any) -> None:
        """`values`: variables by name (`Settings(K8S_APPLY="1")`), over the environment."""
        super().__init__(**values)
        self._backends = {unit.kind: unit.settings.from_values(values) for unit in REGISTRY.units}
        if self.default_training_backend not in self._backends:
            known = ", ".join(self._backends)
            raise ValueError(f"DEFAULT_TRAINING_BACKEND: {str(self.default_training_backend)!r} is not a backend here (one of {known})")

    @field_validator("*", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: Any, info: Any) -> Any:
        # Not API_TOKENS: a blank value there is a mistake to report (auth_problem), not "auth off";
        # not COLLECTION_PREFIX, whose default is the blank.
        if info.field_name in ("collection_prefix", "api_tokens"):
            return value
        return blank_is_unset(cls, value, info.field_name)

    def model_post_init(self, __context: Any) -> None:
        self._errors.extend(self._webhook_problems())
        self._auth_problem = _token_problem(self.api_tokens)
        if self._auth_problem is not None:
            self._errors.append(self._auth_problem)

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

    # ---- the backends ----------------------------------------------------------------------------
    def backend_settings(self, kind: str) -> SettingsGroup:
        """The settings group of a registered backend."""
        return self._backends[BackendKind(kind)]

    def group(self, model: type[G]) -> G:
        """The settings group of this type (`settings.group(KubernetesSettings).namespace`)."""
        for group in self._backends.values():
            if isinstance(group, model):
                return group
        raise LookupError(f"no registered backend has the settings group {model.__name__}")

    def _units(self) -> list[BackendUnit]:
        return [unit for unit in REGISTRY.units if unit.kind in self._backends]

    def backend_problems(self) -> dict[BackendKind, str | None]:
        """Per backend: None when it can take jobs, else what is missing (named by variable)."""
        return {unit.kind: unit.problem(self._backends[unit.kind]) for unit in self._units()}

    def backend_rules(self) -> dict[str, BackendRules]:
        """Per backend: its pure rules under these settings (what the request policy and status sync read)."""
        if self._rules is None:
            context = RulesContext(repo_root=REPO_ROOT)
            rules: dict[str, BackendRules] = {}
            for unit in self._units():
                group = self._backends[unit.kind]
                rules[unit.kind] = dataclasses.replace(unit.rules(group, context), problem=unit.problem(group))
            self._rules = rules
        return dict(self._rules)

    def backend_health(self) -> dict[str, dict[str, Any]]:
        """What /health shows of each backend: `configured`, `problem` and what its unit adds."""
        out = {}
        for unit in self._units():
            group = self._backends[unit.kind]
            problem = unit.problem(group)
            out[str(unit.kind)] = {"configured": problem is None, "problem": problem, **unit.health(group)}
        return out

    @property
    def config_errors(self) -> list[str]:
        return [*self._errors, *(e for group in self._backends.values() for e in group.config_errors)]

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

    def request_policy(self) -> RequestPolicy:
        rules = self.backend_rules()
        return RequestPolicy(
            backends=rules,
            default_backend=self.default_training_backend,
            webhook_allowed_hosts=self.webhook_allowed_host_set,
            webhooks_problem=None if self.webhook_key is not None else "webhooks need WEBHOOK_SIGNING_SECRET to be set on the platform",
            # A callback's Authorization is kept sealed under a key derived from the signing secret.
            seal=self.sealer.seal if self.sealer is not None else None,
            gpu_types=res.known_gpu_types(*(r.placement.gpu_types for r in rules.values() if r.placement is not None and r.placement.gpu_types)),
        )


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
    """The README's configuration table, generated from the fields: the old service's general variables,
    each backend's group in the registry's order, then the rest of the platform's."""
    rows = ["| Variable | Default | Purpose |", "| --- | --- | --- |"]
    service = list(ServiceSettings.model_fields)
    groups: list[tuple[type[BaseSettings], list[str]]] = [(Settings, service)]
    groups += [(unit.settings, list(unit.settings.model_fields)) for unit in REGISTRY.units]
    groups.append((Settings, [n for n in Settings.model_fields if n not in service]))
    for model, names in groups:
        for name in names:
            field = model.model_fields[name]
            env = " / ".join(f"`{n}`" for n in _env_names(model, name))
            extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
            default = extra.get("readme_default", field.get_default(call_default_factory=True))
            if isinstance(default, dict | list):
                default = json.dumps(default)
            shown = "_unset_" if default is None else f"`{default}`"
            rows.append(f"| {env} | {shown} | {field.description or ''} |")
    return "\n".join(rows)


def _env_names(model: type[BaseSettings], name: str) -> list[str]:
    if issubclass(model, SettingsGroup):
        return model.env_names(name)
    alias = model.model_fields[name].validation_alias
    return [str(c) for c in alias.choices] if isinstance(alias, AliasChoices) else [str(alias or name.upper())]


if __name__ == "__main__":  # pragma: no cover
    print(settings_markdown())
