"""The metrics history in both stores (SQLite and the Firestore emulator): every PROGRESS line appended is
a point, with its log line's seq, written in the same commit, paged by seq, never duplicated."""

from __future__ import annotations

import json
from datetime import timedelta

from shared.domain.job import LogLine
from tests.fakes.jobs import T0, make_job


def progress(step: int, loss: float) -> str:
    return "PROGRESS " + json.dumps({"event": "step", "step": step, "total_steps": 50, "loss": loss, "learning_rate": 1e-4, "time": 1764583200 + step})


def test_points_are_the_progress_lines_with_their_seq(store) -> None:
    job = store.create(make_job(1)).job
    lines = []
    for i in range(1, 51):
        lines.append(LogLine(T0 + timedelta(seconds=i), "stdout", f"plain line {i}"))
        lines.append(LogLine(T0 + timedelta(seconds=i), "stdout", progress(i, 2.0 / i)))
    lines.append(LogLine(T0, "stdout", "PROGRESS not json"))  # not a point
    store.append_logs(job.id, lines[:60], max_tail_chars=1000)
    store.append_logs(job.id, lines[60:], max_tail_chars=1000)
    points = store.get_metrics(job.id, after=0, limit=1000)
    assert [p.seq for p in points] == list(range(2, 101, 2))  # the seq of each PROGRESS line
    assert [dict(p.values)["step"] for p in points] == list(range(1, 51))
    first = points[0].to_api()
    assert first == {"seq": 2, "at": "2025-12-01T10:00:01.000Z", "event": "step", "step": 1, "totalSteps": 50, "loss": 2.0, "learningRate": 1e-4}
    logs = {l.seq: l.message for l in store.get_logs(job.id, limit=1000)}
    assert all(logs[p.seq].startswith("PROGRESS ") for p in points)
    # Paged by seq.
    page1 = store.get_metrics(job.id, after=0, limit=7)
    page2 = store.get_metrics(job.id, after=page1[-1].seq, limit=1000)
    assert [p.seq for p in page1 + page2] == [p.seq for p in points]
    assert store.get_metrics(job.id, after=points[-1].seq) == []
    assert store.get_metrics("no-such-job") == []


def test_a_point_is_written_with_its_line_once(store) -> None:
    """Points come with the commit that appends their lines: an apply that writes nothing writes no point."""
    job = store.create(make_job(2)).job
    line = LogLine(T0, "stdout", progress(1, 1.0))
    store.apply(job.id, lambda current: (None, [line]), max_tail_chars=100)
    store.apply(job.id, lambda current: (None, []), max_tail_chars=100)
    assert [p.seq for p in store.get_metrics(job.id)] == [1]
