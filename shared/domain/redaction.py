"""Secret values out of text we keep (log lines, error messages): redact first, then cut.

Text that is stored or shown is bounded (a log line at 16,384 characters, an error message at 500).
Cutting first and redacting the piece would miss a secret the cut runs through: its first half no longer
matches and is stored as it is. So the whole text is redacted and then cut; the cut can only land inside
`[redacted]`, never inside a secret. Where the text is itself only the head of something longer (a
reader that stopped at its own bound), a secret may start in the head and end beyond it: whatever part
of a secret ends the head is redacted too.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from shared.domain.job import REDACTED

# Shorter values would redact ordinary words; 4 is what every caller has used.
MIN_SECRET_CHARS = 4
# Leaves of a JSON secret that name where, not who: a region in a log line is no leak, and redacting
# `us-east-1` from every line that names an endpoint would only hide what went wrong.
NOT_SECRET_KEYS = frozenset({"aws_region", "region"})


def secret_values(env: Mapping[str, object]) -> tuple[str, ...]:
    """Every piece of the secret variables' values a program may print on its own: each value, each line
    of a multi-line one, and, for a value that is JSON (the per-source credentials in
    `TRAINING_PLATFORM_CREDENTIALS`), each string leaf in it. A trainer logging one access key shows
    that key, never the whole JSON, so redacting only the whole string would miss it."""
    out: list[str] = []
    for value in env.values():
        if not isinstance(value, str) or not value:
            continue
        out += [value, *(line for line in value.splitlines() if line)]
        if value.lstrip()[:1] in ("{", "["):
            try:
                out += _leaves(json.loads(value))
            except ValueError:
                pass
    return tuple(dict.fromkeys(out))


def _leaves(value: Any, key: str | None = None) -> list[str]:
    if isinstance(value, dict):
        return [leaf for k, v in value.items() for leaf in _leaves(v, str(k))]
    if isinstance(value, list):
        return [leaf for v in value for leaf in _leaves(v, key)]
    if isinstance(value, str) and value and key not in NOT_SECRET_KEYS:
        return [value]
    return []


def _values(secrets: Iterable[object]) -> list[str]:
    """The secrets worth redacting, longest first (a secret containing another is replaced whole)."""
    return sorted({s for s in secrets if isinstance(s, str) and len(s) >= MIN_SECRET_CHARS}, key=len, reverse=True)


def redact(text: str, secrets: Iterable[object] = ()) -> str:
    """`text` with every secret value (of 4 characters or more) replaced by `[redacted]`."""
    for value in _values(secrets):
        text = text.replace(value, REDACTED)
    return text


def redact_cut(text: str, secrets: Iterable[object], limit: int, *, continued: bool = False) -> str:
    """`text` redacted, then cut to `limit` characters. `continued`: the text is the head of a longer
    one, so a secret may run past its end; the part of one that ends it is redacted as well."""
    values = _values(secrets)
    text = redact(text, values)
    if continued:
        text = _redact_open_end(text, values)
    return text[:limit]


def _redact_open_end(text: str, values: list[str]) -> str:
    """Replace the longest end of `text` that is the start of a secret (the rest of it was not read)."""
    longest = 0
    for value in values:
        for k in range(min(len(value) - 1, len(text)), longest, -1):
            if text.endswith(value[:k]):
                longest = k
                break
    return text[: len(text) - longest] + REDACTED if longest else text
