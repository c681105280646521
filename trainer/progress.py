"""`PROGRESS {json}` lines: the trainer's only machine-readable output, parsed by status_sync.

The format is a contract (documented in trainer/README.md): the literal prefix `PROGRESS `, then one JSON
object on the same line, with an `event` key and, where known, `step`, `total_steps`, `epoch`, `loss`,
`learning_rate`, `tokens_per_second`, `eta_seconds`. NaN and infinities become `null` so that every
line is strict JSON. Only rank 0 prints (a multi-process run would otherwise report N times), and every
line is flushed at once so a log tail seen by the controller is never behind the trainer.

No environment value is ever printed: messages pass through `redact`, which blanks the values of
secret-looking variables (HF_TOKEN and friends), every string inside the per-source credentials variable
(`TRAINING_PLATFORM_CREDENTIALS`: a botocore error may echo an access key id), and the temporary keys the
trainer obtained at run time (`add_secret`), should an exception happen to quote one.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from typing import Any, TextIO

from trainer.flags import CREDENTIALS_ENV  # every string inside it is a secret

PREFIX = "PROGRESS "
EVENTS = ("dataset", "started", "step", "eval", "checkpoint", "upload", "done", "error")
SECRET_ENV = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
# Keys inside it whose values are not secrets: redacting a region would blank "us-east-1" everywhere.
NOT_SECRET_KEYS = ("aws_region",)
_runtime_secrets: set[str] = set()


def add_secret(value: str | None) -> None:
    """A secret the trainer came by at run time (keys from an assumed role): redacted from now on."""
    if value and len(value) >= 4:
        _runtime_secrets.add(value)


def _leaf_strings(value: Any, key: str | None = None) -> list[str]:
    if isinstance(value, str):
        return [] if key in NOT_SECRET_KEYS else [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in _leaf_strings(v, k)]
    if isinstance(value, list):
        return [s for v in value for s in _leaf_strings(v, key)]
    return []


def secret_values(environ: dict[str, str] | None = None) -> list[str]:
    """Every value `redact` blanks, longest first (so a secret containing another goes whole)."""
    env = os.environ if environ is None else environ
    values = [env.get(name) or "" for name in SECRET_ENV]
    raw = env.get(CREDENTIALS_ENV)
    if raw:
        try:
            values += _leaf_strings(json.loads(raw))
        except (json.JSONDecodeError, RecursionError):
            values.append(raw)  # unparseable: the whole of it is the secret
    values += _runtime_secrets
    return sorted({v for v in values if len(v) >= 4}, key=len, reverse=True)


def is_rank_zero(environ: dict[str, str] | None = None) -> bool:
    env = os.environ if environ is None else environ
    return env.get("RANK", "0") in ("", "0") and env.get("LOCAL_RANK", "0") in ("", "0", "-1")


def sanitize(value: Any) -> Any:
    """JSON-safe copy: non-finite floats become None, tuples become lists, other objects become strings."""
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): sanitize(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [sanitize(v) for v in value]
    if hasattr(value, "item"):  # numpy / torch scalars
        try:
            return sanitize(value.item())
        except (TypeError, ValueError):
            pass
    return str(value)


def redact(text: str, environ: dict[str, str] | None = None) -> str:
    for secret in secret_values(environ):
        text = text.replace(secret, "***")
    return text


def format_line(event: str, **fields: Any) -> str:
    if event not in EVENTS:
        raise ValueError(f"unknown progress event {event!r}")
    payload = {"event": event, **{k: v for k, v in fields.items() if v is not None}}
    payload = sanitize(payload)
    if isinstance(payload.get("message"), str):
        payload["message"] = redact(payload["message"])
    return PREFIX + json.dumps(payload, allow_nan=False, separators=(",", ":"), ensure_ascii=False)


def parse_line(line: str) -> dict | None:
    """The object of a PROGRESS line, or None for any other log line (what status_sync does)."""
    if not line.startswith(PREFIX):
        return None
    return json.loads(line[len(PREFIX) :])


class Reporter:
    """Prints PROGRESS lines and keeps the running figures (tokens/s, ETA) that go into them."""

    def __init__(self, stream: TextIO | None = None, enabled: bool | None = None, clock=time.monotonic):
        self._stream = stream
        self.enabled = is_rank_zero() if enabled is None else enabled
        self._clock = clock
        self.train_started_at: float | None = None
        self.start_step = 0
        self.start_tokens = 0

    def emit(self, event: str, **fields: Any) -> None:
        if not self.enabled:
            return
        stream = self._stream or sys.stdout
        stream.write(format_line(event, time=round(time.time(), 3), **fields) + "\n")
        stream.flush()

    def mark_training_start(self, step: int, tokens: int) -> None:
        """Rates are measured from here: a resumed run does not count the steps it skipped."""
        self.train_started_at = self._clock()
        self.start_step = step
        self.start_tokens = tokens

    def rates(self, step: int, total_steps: int | None, tokens: int | None) -> dict[str, float | None]:
        if self.train_started_at is None:
            return {"tokens_per_second": None, "eta_seconds": None}
        elapsed = self._clock() - self.train_started_at
        done = step - self.start_step
        tps = (tokens - self.start_tokens) / elapsed if tokens is not None and elapsed > 0 else None
        eta = None
        if total_steps and done > 0 and elapsed > 0:
            eta = max(total_steps - step, 0) * elapsed / done
        return {
            "tokens_per_second": round(tps, 2) if tps is not None else None,
            "eta_seconds": round(eta, 2) if eta is not None else None,
        }
