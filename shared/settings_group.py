"""How a group of settings reads the environment: the platform's groups (`shared/settings_platform.py`)
and each backend's own (`SettingsGroup`, one per backend unit, under its env prefix).

Bad JSON in a JSON-valued variable is never silently ignored, and never a crash at start-up: the
variable reads as unset, and the group lists the problem (`config_errors`), which makes its backend
unavailable and `/health` say why.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Self

from pydantic import AliasChoices, BeforeValidator, PrivateAttr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent
# The platform's groups read variables by their exact names (each field names its own).
GROUP_CONFIG = SettingsConfigDict(extra="ignore", populate_by_name=True, case_sensitive=True)


def env(*names: str) -> AliasChoices:
    """A field read from the first of several variables that is set."""
    return AliasChoices(*names)


def blank_is_unset(model: type[BaseSettings], value: Any, field_name: str | None) -> Any:
    """The old service treated an empty variable as unset; keep that: a blank value reads as the default."""
    if isinstance(value, str) and value.strip() == "" and field_name is not None:
        return model.model_fields[field_name].get_default(call_default_factory=True)
    return value


@dataclass(frozen=True)
class BadJson:
    """A JSON-valued variable that did not parse (or has the wrong shape): what to report."""

    problem: str


def _json_of(kind: type) -> Any:
    def parse(value: Any) -> Any:
        if not isinstance(value, str):
            return value
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError as exc:
            return BadJson(f"is not valid JSON ({exc.msg} at character {exc.pos})")
        if not isinstance(parsed, kind):
            return BadJson(f"must be a JSON {'object' if kind is dict else 'array'}")
        return parsed

    return BeforeValidator(parse)


# A variable holding a JSON object / array (parsed here; a value given in code is taken as it is).
JsonObject = Annotated[Any, NoDecode, _json_of(dict)]
JsonArray = Annotated[Any, NoDecode, _json_of(list)]


class SettingsGroup(BaseSettings):
    """A backend's settings: one pydantic-settings model whose fields read `<env_prefix><FIELD>` (or the
    variables a field's alias names), with their defaults here and nowhere else. The backend's adapter
    takes the group itself; `shared.settings.Settings` builds one per registered backend."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True, case_sensitive=False)

    _errors: list[str] = PrivateAttr(default_factory=list)

    @field_validator("*", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: Any, info: Any) -> Any:
        return blank_is_unset(cls, value, info.field_name)

    def model_post_init(self, __context: Any) -> None:
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, BadJson):
                self._errors.append(f"{self.env_names(name)[0]} {value.problem}")
                object.__setattr__(self, name, None)
        self._errors.extend(self.shape_problems())

    def shape_problems(self) -> list[str]:
        """Problems beyond a variable's JSON syntax (a table's rows); a group overrides it."""
        return []

    @property
    def config_errors(self) -> list[str]:
        return list(self._errors)

    def problems(self) -> list[str]:
        """What keeps the backend from taking jobs, named by variable (none: it can). A group adds its
        required variables to its JSON problems."""
        return self.config_errors

    def describe(self) -> dict[str, Any]:
        """What `/health` shows of the backend beside `configured` and `problem`."""
        return {}

    @classmethod
    def env_names(cls, name: str) -> list[str]:
        """The variables a field reads, in order: its alias's, else `<env_prefix><NAME>`."""
        alias = cls.model_fields[name].validation_alias
        if isinstance(alias, AliasChoices):
            return [str(c) for c in alias.choices]
        if isinstance(alias, str):
            return [alias]
        return [f"{cls.model_config.get('env_prefix', '')}{name}".upper()]

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> Self:
        """The group from variables given by name (`Settings(K8S_APPLY="1")`), the environment for the rest."""
        kwargs = {}
        for name in cls.model_fields:
            for variable in cls.env_names(name):
                if variable in values:
                    kwargs[name] = values[variable]
                    break
        return cls(**kwargs)

    @classmethod
    def of(cls, settings: Any) -> Self:
        """This group as `settings` (a `shared.settings.Settings`) read it."""
        group = settings.group(cls)
        assert isinstance(group, cls)
        return group
