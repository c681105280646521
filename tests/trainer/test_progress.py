"""The PROGRESS line format: strict JSON after a fixed prefix, NaN/inf as null, rank 0 only, no secrets."""

from __future__ import annotations

import io
import json
import math

import pytest

from trainer import progress

pytestmark = pytest.mark.trainer


def test_line_is_prefix_plus_strict_json():
    line = progress.format_line("step", step=3, total_steps=10, loss=1.5, learning_rate=None)
    assert line.startswith("PROGRESS ") and "\n" not in line
    payload = json.loads(line[len("PROGRESS ") :])
    assert payload == {"event": "step", "step": 3, "total_steps": 10, "loss": 1.5}  # None fields are left out
    assert progress.parse_line(line) == payload
    assert progress.parse_line("{'loss': 1.0}") is None


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_numbers_become_null(bad):
    line = progress.format_line("eval", step=1, eval_loss=bad, extra={"x": [bad, 1.0]})
    payload = json.loads(line[len("PROGRESS ") :])  # json.loads would accept NaN; the text must not hold it
    assert "NaN" not in line and "Infinity" not in line
    assert payload["eval_loss"] is None and payload["extra"] == {"x": [None, 1.0]}


def test_unknown_event_is_rejected():
    with pytest.raises(ValueError):
        progress.format_line("finished")


def test_only_rank_zero_prints():
    assert progress.is_rank_zero({})
    assert progress.is_rank_zero({"RANK": "0", "LOCAL_RANK": "0"})
    assert not progress.is_rank_zero({"RANK": "1"})
    assert not progress.is_rank_zero({"RANK": "0", "LOCAL_RANK": "1"})
    out = io.StringIO()
    progress.Reporter(stream=out, enabled=False).emit("started", step=0)
    assert out.getvalue() == ""


def test_secret_values_are_redacted(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_supersecretvalue")
    line = progress.format_line("error", message="401 for token hf_supersecretvalue", exit_code=1)
    assert "hf_supersecretvalue" not in line and "***" in line


def test_rates_measure_from_the_training_start():
    now = [100.0]
    rep = progress.Reporter(stream=io.StringIO(), enabled=True, clock=lambda: now[0])
    assert rep.rates(0, 10, 0) == {"tokens_per_second": None, "eta_seconds": None}
    rep.mark_training_start(step=4, tokens=400)  # a resumed run: 4 steps were done before
    now[0] = 110.0
    assert rep.rates(step=6, total_steps=10, tokens=1400) == {"tokens_per_second": 100.0, "eta_seconds": 20.0}
