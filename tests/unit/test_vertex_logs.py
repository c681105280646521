"""Vertex log-sink entries -> log lines and state hints (golden fixtures)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from shared.domain.vertex_logs import is_log_entry, parse_log_entry

NOW = datetime(2026, 11, 29, 13, tzinfo=UTC)
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "vertex_logs"


@pytest.mark.parametrize("path", sorted(FIXTURES.glob("*.json")), ids=lambda p: p.stem)
def test_golden_entries(path: Path) -> None:
    spec = json.loads(path.read_text())
    parsed = parse_log_entry(spec["entry"], NOW)
    want = spec["expect"]
    assert parsed.vertex_job_id == want["vertex_job_id"]
    ev = parsed.event
    assert ev.source == "vertex" and ev.state == want["state"] and ev.event_id == want["event_id"]
    if want["stream"] is None:
        assert ev.logs == ()
    else:
        assert [(l.stream, l.message) for l in ev.logs] == [(want["stream"], want["message"])]
    assert ev.observed_at.tzinfo is not None


def test_not_an_ml_job_entry() -> None:
    assert not is_log_entry({"resource": {"type": "gce_instance"}})
    assert parse_log_entry({"resource": {"type": "gce_instance"}}, NOW) is None
    assert parse_log_entry({"resource": {"type": "ml_job", "labels": {}}}, NOW) is None
