"""A job's metrics history: every `PROGRESS {json}` line of its log, kept as a point of its training curve.

Pure. The stores call `metric_points` on the log lines they have just numbered, in the same commit that
appends them, so a point's `seq` is its log line's seq: one numbering, no second counter, and a line
that is written once is a point that exists once. Points live outside the job document (like logs),
so a job with 100,000 of them costs nothing to list.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shared.domain.job import LogLine, iso
from shared.domain.translate import parse_progress

# The trainer's keys (snake_case, see trainer/progress.py) -> the api's (camelCase).
FIELDS: dict[str, str] = {
    "step": "step",
    "total_steps": "totalSteps",
    "epoch": "epoch",
    "loss": "loss",
    "eval_loss": "evalLoss",
    "learning_rate": "learningRate",
    "grad_norm": "gradNorm",
    "tokens_per_second": "tokensPerSecond",
    "eta_seconds": "etaSeconds",
}
INTEGERS = frozenset({"step", "total_steps"})


@dataclass(frozen=True)
class MetricPoint:
    seq: int
    at: datetime
    event: str
    values: tuple[tuple[str, float | int], ...] = ()  # (api key, value), only the keys the point has

    def to_api(self) -> dict[str, Any]:
        return {"seq": self.seq, "at": iso(self.at), "event": self.event, **dict(self.values)}

    @classmethod
    def from_api(cls, doc: dict[str, Any]) -> MetricPoint:
        at = datetime.fromisoformat(str(doc["at"]).replace("Z", "+00:00"))
        values = tuple((k, doc[k]) for k in FIELDS.values() if doc.get(k) is not None)
        return cls(seq=int(doc["seq"]), at=at, event=str(doc.get("event") or ""), values=values)


def _number(key: str, value: Any) -> float | int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if key in INTEGERS:
        return int(value) if float(value).is_integer() and abs(value) < 2**63 else None
    return float(value) if math.isfinite(value) else None


def point_of(line: LogLine) -> MetricPoint | None:
    """The point a numbered log line carries, or None for any other line."""
    progress = parse_progress(line.message)
    if progress is None:
        return None
    values = []
    for ours, theirs in FIELDS.items():
        number = _number(ours, progress.get(ours))
        if number is not None:
            values.append((theirs, number))
    at = line.timestamp
    reported = _number("time", progress.get("time"))
    if reported is not None and 0 < reported < 32503680000:  # the trainer's own clock, when it is sane
        at = datetime.fromtimestamp(reported, UTC)
    event = progress.get("event")
    return MetricPoint(seq=line.seq, at=at, event=event if isinstance(event, str) else "progress", values=tuple(values))


def metric_points(lines: Iterable[LogLine]) -> list[MetricPoint]:
    return [p for p in map(point_of, lines) if p is not None]
