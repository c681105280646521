"""JSON on the hot paths (stored job documents, api answers): orjson when it can, the standard library
when it can't, with the same result either way.

orjson is ~5-10x faster. It refuses to write integers beyond 64 bits, non-string keys and lone
surrogates, and to read NaN: those rare values fall back to `json`, which then writes what orjson would
have (NaN as null). Differences that remain: an integer beyond 64 bits that was written reads back as a
float (no stored field holds one; only a trainer's progress numbers could), and a float may be spelled
differently (`1e-07` / `1e-7`) for the same value.
Request bodies are parsed with `json` (`functions/api.py`), where such an integer must stay exact.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

try:
    import orjson
except ImportError:  # pragma: no cover - orjson is a dependency; this keeps a bare checkout working
    orjson = None  # type: ignore[assignment]


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


def loads_strict(raw: bytes) -> Any:
    """Input from outside (request bodies) exactly as `json.loads` reads it, NaN / Infinity refused
    (ValueError). orjson reads it ~5x faster and agrees on everything but integers of 19+ digits (it may
    turn them into floats) and what it refuses (lone surrogate escapes, malformed input): those go to
    `json`, which also words the errors."""
    if orjson is not None and not _LONG_NUMBER.search(raw):
        try:
            return orjson.loads(raw)
        except ValueError:
            pass
    return json.loads(raw, parse_constant=_reject_constant)


def loads(raw: bytes | str) -> Any:
    if orjson is not None:
        try:
            return orjson.loads(raw)
        except ValueError:  # orjson.JSONDecodeError: NaN / Infinity written by `json`, lone surrogates
            pass
    return json.loads(raw)
