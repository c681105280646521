"""Metric points from PROGRESS lines (pure): one row per case."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared.domain.job import LogLine
from shared.domain.metrics import MetricPoint, metric_points, point_of

T = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)

CASES = [
    (
        "a step",
        'PROGRESS {"event":"step","step":3,"total_steps":9,"loss":1.5,"tokens_per_second":10}',
        {"seq": 5, "at": "2026-12-01T10:00:00.000Z", "event": "step", "step": 3, "totalSteps": 9, "loss": 1.5, "tokensPerSecond": 10.0},
    ),
    (
        "eval loss",
        'PROGRESS {"event":"eval","step":4,"eval_loss":0.25}',
        {"seq": 5, "at": "2026-12-01T10:00:00.000Z", "event": "eval", "step": 4, "evalLoss": 0.25},
    ),
    (
        "the trainer's time wins",
        'PROGRESS {"event":"step","time":1764583200.5,"step":1}',
        {"seq": 5, "at": "2025-12-01T10:00:00.500Z", "event": "step", "step": 1},
    ),
    ("an absurd time is ignored", 'PROGRESS {"event":"step","time":1e300,"step":1}', {"seq": 5, "at": "2026-12-01T10:00:00.000Z", "event": "step", "step": 1}),
    (
        "bad values are left out",
        'PROGRESS {"event":"step","step":1.5,"loss":"x","grad_norm":true,"learning_rate":null,"epoch":1e999}',
        {"seq": 5, "at": "2026-12-01T10:00:00.000Z", "event": "step"},
    ),
    ("a huge step is left out", 'PROGRESS {"event":"step","step":100000000000000000000}', {"seq": 5, "at": "2026-12-01T10:00:00.000Z", "event": "step"}),
    ("no event name", 'PROGRESS {"step":2}', {"seq": 5, "at": "2026-12-01T10:00:00.000Z", "event": "progress", "step": 2}),
]


@pytest.mark.parametrize("message,expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_point_of(message: str, expected: dict) -> None:
    point = point_of(LogLine(T, "stdout", message, seq=5))
    assert point is not None and point.to_api() == expected
    assert MetricPoint.from_api(point.to_api()).to_api() == expected


@pytest.mark.parametrize("message", ["plain", "PROGRESS not json", "PROGRESS [1, 2]", " PROGRESS {}"])
def test_not_a_point(message: str) -> None:
    assert point_of(LogLine(T, "stdout", message, seq=1)) is None


def test_metric_points_keeps_order_and_skips_other_lines() -> None:
    lines = [LogLine(T, "stdout", m, seq=i) for i, m in enumerate(["x", 'PROGRESS {"step":1}', "y", 'PROGRESS {"step":2}'], 1)]
    assert [p.seq for p in metric_points(lines)] == [2, 4]
