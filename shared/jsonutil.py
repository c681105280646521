"""JSON on the hot paths (stored job documents, api answers): orjson when it can, the standard library
when it can't, with the same result either way.

orjson is ~5-10x faster. It refuses to write integers beyond 64 bits and non-string keys, and to read
NaN: those rare values fall back to `json`. One difference remains: an integer beyond 64 bits that was
written reads back as a float (no stored field holds one; only a trainer's progress numbers could).
Request bodies are parsed with `json` (`functions/api.py`), where such an integer must stay exact.
"""

from __future__ import annotations

import json
from typing import Any

try:
    import orjson
except ImportError:  # pragma: no cover - orjson is a dependency; this keeps a bare checkout working
    orjson = None  # type: ignore[assignment]


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON (no spaces, non-ASCII kept as is)."""
    if orjson is not None:
        try:
            return orjson.dumps(value)
        except TypeError:  # orjson.JSONEncodeError: a >64-bit int, a non-str key, an unknown type
            pass
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def loads(raw: bytes | str) -> Any:
    if orjson is not None:
        try:
            return orjson.loads(raw)
        except ValueError:  # orjson.JSONDecodeError: NaN / Infinity written by `json`, lone surrogates
            pass
    return json.loads(raw)
