"""A backend's name, as the job, the request and the api carry it (its rules: `shared.domain.backend`)."""

from __future__ import annotations

import re
from typing import Any

from pydantic import GetCoreSchemaHandler
from pydantic_core import core_schema

NAME_PATTERN = r"^[a-z][a-z0-9-]{0,30}$"
_NAME = re.compile(NAME_PATTERN)
_INTERNED: dict[str, BackendKind] = {}


class BackendKind(str):
    """A backend's name (`"kubernetes"`); which names exist is the registry's business, not this type's.

    A `str` (it is stored, compared and serialised as one) with the enum spelling `.value` kept for the
    callers that read it; pydantic validates it as a lower-case name."""

    __slots__ = ()

    def __new__(cls, name: str) -> BackendKind:
        # One object per name, as an enum has: `job.backend is LOCAL` holds wherever the name came from.
        known = _INTERNED.get(name) if isinstance(name, str) else None
        if known is not None:
            return known
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError(f"a backend name is lower-case letters, digits and '-', got {name!r}")
        made = _INTERNED[str(name)] = super().__new__(cls, name)
        return made

    @property
    def value(self) -> str:
        return str(self)

    def __reduce__(self) -> tuple[Any, ...]:
        return (BackendKind, (str(self),))

    def __repr__(self) -> str:
        return f"BackendKind({str(self)!r})"

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(
            cls, core_schema.str_schema(pattern=NAME_PATTERN), serialization=core_schema.plain_serializer_function_ser_schema(str)
        )
