"""JSON on the hot paths (stored job documents, api answers, request bodies): orjson when it can, the
standard library when it can't, with the same result either way.

orjson is ~5-10x faster. It refuses to write integers beyond 64 bits, non-string keys and lone
surrogates, and to read NaN: those rare values fall back to `json`, which then writes what orjson would
have (NaN as null). Differences that remain: an integer beyond 64 bits that was written reads back as a
float (no stored field holds one; only a trainer's progress numbers could), and a float may be spelled
differently (`1e-07` / `1e-7`) for the same value.
Request bodies are parsed with `loads_strict`, where such an integer must stay exact and a key given
twice in one object is an error (`DuplicateKeyError`), not "the last one wins".
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

try:
    import orjson
except ImportError:  # pragma: no cover - orjson is a dependency; this keeps a bare checkout working
    orjson = None  # type: ignore[assignment]  # the module or None: every use checks `orjson is not None`


def dumps(value: Any, *, sort_keys: bool = False) -> bytes:
    """Compact UTF-8 JSON (no spaces, non-ASCII kept as is). NaN and infinities are written as null, as
    orjson does; a string with a lone surrogate (valid JSON input, not text) is written escaped."""
    if orjson is not None:
        try:
            return orjson.dumps(value, option=orjson.OPT_SORT_KEYS if sort_keys else 0)
        except TypeError:  # orjson.JSONEncodeError: a >64-bit int, a non-str key, a lone surrogate
            pass
    value = _finite(value)
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=sort_keys).encode()
    except UnicodeEncodeError:  # a lone surrogate: \uXXXX escapes keep the text valid JSON
        return json.dumps(value, separators=(",", ":"), ensure_ascii=True, sort_keys=sort_keys).encode()


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def canonical(value: Any) -> bytes:
    """One spelling for one JSON value (request fingerprints): sorted keys, compact, UTF-8. Raises
    UnicodeEncodeError for a string with a lone surrogate (orjson refuses it, and so does UTF-8)."""
    if orjson is not None:
        try:
            return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
        except TypeError:  # a >64-bit int, a lone surrogate: the standard library decides
            pass
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()


_LONG_NUMBER = re.compile(rb"\d{19}")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


class DuplicateKeyError(ValueError):
    """A key given more than once in one JSON object (`{"backend": "local", "backend": "kubernetes"}`):
    `locations` are the paths of the repeated keys, each a tuple of keys and list indexes."""

    def __init__(self, locations: list[tuple[str | int, ...]]):
        self.locations = locations
        super().__init__(f"duplicate key {', '.join(json_path(loc) for loc in locations)}")

    @property
    def paths(self) -> list[str]:
        return [json_path(loc) for loc in self.locations]


def json_path(location: tuple[str | int, ...]) -> str:
    """`("trainer_args", "max_steps")` -> `trainer_args.max_steps`; `(0, "backend")` -> `[0].backend`."""
    out = ""
    for part in location:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            name = part if part.strip() else json.dumps(part)  # an empty key still names something
            out += f".{name}" if out else name
    return out or "body"


class _Repeated(dict[str, Any]):
    """An object that had repeated keys (the last value kept), found again by `_repeated`."""

    repeated: list[str]


def _pairs_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    value = dict(pairs)
    if len(value) == len(pairs):
        return value
    marked = _Repeated(value)
    seen: set[str] = set()
    marked.repeated = []
    for key, _ in pairs:
        if key in seen:
            marked.repeated.append(key)  # every occurrence after the first
        else:
            seen.add(key)
    return marked


def _repeated(value: Any, here: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    found: list[tuple[str | int, ...]] = []
    if isinstance(value, dict):
        if isinstance(value, _Repeated):
            found += [(*here, key) for key in dict.fromkeys(value.repeated)]
        for key, item in value.items():
            if isinstance(item, (dict, list)):
                found += _repeated(item, (*here, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            if isinstance(item, (dict, list)):
                found += _repeated(item, (*here, i))
    return found


def _no_repeats_possible(raw: bytes, value: Any) -> bool:
    """True when orjson's reading of `raw` can't have dropped a repeated key (it keeps the last, silently).
    Without a backslash every `:` in the text is literal: one per key plus those inside strings, which
    orjson writes back unchanged. So writing the value back gives as many colons as the text has only
    if no key (and no string value with it) was dropped. ~1 us for a typical body, no Python walk."""
    if b"\\" in raw:
        return False
    try:
        return raw.count(b":") == orjson.dumps(value).count(b":")
    except TypeError:
        return False


def _loads_checked(raw: bytes) -> Any:
    value = json.loads(raw, parse_constant=_reject_constant, object_pairs_hook=_pairs_hook)
    found = _repeated(value)
    if found:
        raise DuplicateKeyError(found)
    return value


def loads_strict(raw: bytes) -> Any:
    """Input from outside (request bodies) exactly as `json.loads` reads it, NaN / Infinity refused
    (ValueError), a key repeated in one object refused (DuplicateKeyError, naming each by its path).
    orjson reads it ~5x faster and agrees on everything but integers of 19+ digits (it may turn them
    into floats), repeated keys (it keeps the last) and what it refuses (lone surrogate escapes,
    malformed input): those go to `json`, which also words the errors."""
    if orjson is not None and not _LONG_NUMBER.search(raw):
        try:
            value = orjson.loads(raw)
        except ValueError:
            pass
        else:
            if _no_repeats_possible(raw, value):
                return value
    return _loads_checked(raw)


def loads(raw: bytes | str) -> Any:
    """What we wrote ourselves (stored documents, messages): orjson, or `json` for what only it reads."""
    if orjson is not None:
        try:
            return orjson.loads(raw)
        except ValueError:  # orjson.JSONDecodeError: NaN / Infinity written by `json`, lone surrogates
            pass
    return json.loads(raw)
