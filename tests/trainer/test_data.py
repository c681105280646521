"""The dataset preflight: format detection, conversion, and bad rows named by line (pure Python)."""

from __future__ import annotations

import json

import pytest

from trainer import data

pytestmark = pytest.mark.trainer

CHAT = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
PC = {"prompt": "2+2=", "completion": " 4"}
TEXT = {"text": "some plain text"}
AML = {"facts": {"amount": 12000, "country": "XX"}, "decision": "escalate", "fired_rules": ["R1", "R7"]}


@pytest.mark.parametrize(
    "row, expected",
    [
        pytest.param(CHAT, "messages", id="messages"),
        pytest.param(PC, "prompt_completion", id="prompt_completion"),
        pytest.param(TEXT, "text", id="text"),
        pytest.param(AML, "aml", id="aml"),
        pytest.param({**CHAT, "text": "also"}, "messages", id="messages wins over text"),
        pytest.param({**AML, "prompt": "x"}, "aml", id="prompt alone is not prompt_completion"),
        pytest.param({"foo": 1}, None, id="unknown"),
    ],
)
def test_detect_format(row, expected):
    assert data.detect_format(row) == expected


def lines(*rows) -> list[str]:
    return [r if isinstance(r, str) else json.dumps(r) for r in rows]


def test_converts_each_format_to_trl_rows():
    assert data.parse_lines(lines(CHAT)).examples == [{"messages": CHAT["messages"]}]
    assert data.parse_lines(lines(PC)).examples == [PC]
    assert data.parse_lines(lines(TEXT)).examples == [TEXT]
    ds = data.parse_lines(lines(AML))
    assert ds.format == "aml"
    (ex,) = ds.examples
    assert set(ex) == {"prompt", "completion"}
    assert "- amount: 12000" in ex["prompt"] and "- country: XX" in ex["prompt"]
    assert ex["completion"] == "Decision: escalate\nFired rules: R1, R7"


def test_aml_without_fired_rules_says_none():
    ex = data.render_aml({"facts": ["customer is new"], "decision": "approve", "fired_rules": []})
    assert "- customer is new" in ex["prompt"]
    assert ex["completion"].endswith("Fired rules: none")


def test_extra_message_keys_are_dropped_and_blank_lines_skipped():
    row = {"messages": [{"role": "user", "content": "a", "name": "x"}, {"role": "assistant", "content": "b"}]}
    ds = data.parse_lines(["", json.dumps(row), "   "])
    assert ds.examples == [{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}]


@pytest.mark.parametrize(
    "rows, line, reason",
    [
        pytest.param([CHAT, "{not json"], 2, "not valid JSON", id="bad json"),
        pytest.param([PC, PC, "[1, 2]"], 3, "expected a JSON object", id="not an object"),
        pytest.param([{"foo": 1}], 1, "cannot tell the format", id="unknown keys"),
        pytest.param([CHAT, PC], 2, "looks like prompt_completion, but the file is in messages", id="mixed"),
        pytest.param([{"messages": []}], 1, "non-empty list", id="empty messages"),
        pytest.param([{"messages": [{"role": "bot", "content": "x"}]}], 1, "messages[0].role", id="bad role"),
        pytest.param([{"messages": [{"role": "user", "content": "x"}]}], 1, "must end with an assistant", id="no answer"),
        pytest.param(
            [{"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": " "}]}], 1, "messages[1].content is empty", id="empty content"
        ),
        pytest.param([{"messages": [{"role": "assistant", "content": "x"}]}], 1, "expected 'user'", id="starts with the answer"),
        pytest.param(
            [
                {
                    "messages": [
                        {"role": "system", "content": "s"},
                        {"role": "user", "content": "a"},
                        {"role": "user", "content": "b"},
                        {"role": "assistant", "content": "c"},
                    ]
                }
            ],
            1,
            "messages[2].role is 'user', expected 'assistant'",
            id="two user turns",
        ),
        pytest.param(
            [{"messages": [{"role": "user", "content": "a"}, {"role": "system", "content": "s"}, {"role": "assistant", "content": "c"}]}],
            1,
            "messages[1].role is 'system'",
            id="system not first",
        ),
        pytest.param(
            [{"messages": [{"role": "user", "content": "a"}, {"role": "tool", "content": "t"}, {"role": "assistant", "content": "c"}]}],
            1,
            "no assistant turn before it",
            id="tool without a call",
        ),
        pytest.param([{"messages": [{"role": "user", "content": 3}]}], 1, "content must be a string", id="content"),
        pytest.param([PC, {"prompt": "a", "completion": ""}], 2, "'completion' is empty", id="empty completion"),
        pytest.param([{"prompt": 1, "completion": "a"}], 1, "'prompt' must be a string", id="prompt type"),
        pytest.param([TEXT, {"text": "  "}], 2, "'text' is empty", id="empty text"),
        pytest.param([{"facts": {}, "decision": "x"}], 1, "'facts' must be a non-empty", id="aml facts"),
        pytest.param([{**AML, "fired_rules": "R1"}], 1, "'fired_rules' must be a list", id="aml rules"),
        pytest.param([{**AML, "decision": None}], 1, "'decision' must be", id="aml decision"),
    ],
)
def test_bad_rows_name_line_and_reason(rows, line, reason):
    with pytest.raises(data.DatasetError) as err:
        data.parse_lines(lines(*rows), uri="d.jsonl")
    assert err.value.line == line
    assert reason in err.value.reason
    assert str(err.value).startswith(f"d.jsonl:line {line}: ")


def test_explicit_format_is_enforced():
    with pytest.raises(data.DatasetError, match="'text' must be a string"):
        data.parse_lines(lines(PC), fmt="text")


def test_empty_file_and_missing_file(tmp_path):
    with pytest.raises(data.DatasetError, match="no rows"):
        data.parse_lines(["", ""])
    with pytest.raises(data.DatasetError, match="no such file"):
        data.load(str(tmp_path / "missing.jsonl"))


def test_load_reads_local_file(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(lines(PC, PC)) + "\n")
    ds = data.load(str(path))
    assert ds.format == "prompt_completion" and len(ds.examples) == 2


@pytest.mark.parametrize("n, frac, n_val", [(8, 0.1, 0), (20, 0.1, 2), (10, 0.25, 2), (5, 0.0, 0)])
def test_split_is_deterministic_and_disjoint(n, frac, n_val):
    rows = [{"text": str(i)} for i in range(n)]
    train, val = data.split(rows, frac, seed=1)
    assert len(val) == n_val and len(train) + len(val) == n
    assert sorted(r["text"] for r in train + val) == sorted(r["text"] for r in rows)
    assert data.split(rows, frac, seed=1) == (train, val)
