"""Training data: read a JSONL file (local, gs://, s3://), detect its format, check every row, convert.

This runs as the trainer's preflight, before any model is loaded, so that a bad file costs seconds and
not a GPU start-up: the whole file is read, and the first bad row raises `DatasetError` naming its line
and the reason (the trainer turns that into exit code 2). Pure Python: no torch, no datasets.

Formats (detected from the first row when `--dataset_format auto`; every later row must match):
- `messages`: `{"messages": [{"role": "user", "content": "..."}, {"role": "assistant", ...}]}`,
  rendered with the tokenizer's chat template by TRL.
- `prompt_completion`: `{"prompt": "...", "completion": "..."}`; the loss is on the completion only.
- `text`: `{"text": "..."}`; plain language modelling.
- `aml`: the old trainer's rows `{"facts": {...}, "decision": "...", "fired_rules": [...]}`, rendered
  into a prompt (the facts) and a completion (the decision and the fired rules).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable

from trainer import storage

ROLES = ("system", "user", "assistant", "tool")
AML_INSTRUCTION = "Apply the AML rules to these facts. Give the decision and the rules that fired."


class DatasetError(Exception):
    """The dataset cannot be used; `line` is 1-based when one row is to blame."""

    def __init__(self, reason: str, line: int | None = None, uri: str | None = None):
        self.reason = reason
        self.line = line
        self.uri = uri
        where = f"{uri}:" if uri else ""
        where += f"line {line}: " if line is not None else (" " if uri else "")
        super().__init__(f"{where}{reason}")


@dataclass(frozen=True)
class Dataset:
    format: str
    examples: list[dict[str, Any]]  # TRL-ready rows, all with the same keys


# ---- per-format checks: each returns None when the row is fine, else the reason -------------------


def _check_text_field(row: dict, key: str, allow_empty: bool = False) -> str | None:
    value = row.get(key)
    if not isinstance(value, str):
        return f"'{key}' must be a string, got {type(value).__name__}"
    if not allow_empty and not value.strip():
        return f"'{key}' is empty"
    return None


def _check_messages(row: dict) -> str | None:
    messages = row.get("messages")
    if not isinstance(messages, list) or not messages:
        return "'messages' must be a non-empty list"
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict):
            return f"messages[{i}] must be an object with 'role' and 'content'"
        if msg.get("role") not in ROLES:
            return f"messages[{i}].role must be one of {', '.join(ROLES)}, got {msg.get('role')!r}"
        if not isinstance(msg.get("content"), str):
            return f"messages[{i}].content must be a string"
    if not any(m["role"] == "assistant" and m["content"].strip() for m in messages):
        return "'messages' has no non-empty assistant message to learn from"
    return None


def _check_prompt_completion(row: dict) -> str | None:
    return _check_text_field(row, "prompt", allow_empty=True) or _check_text_field(row, "completion")


def _check_text(row: dict) -> str | None:
    return _check_text_field(row, "text")


def _check_aml(row: dict) -> str | None:
    facts = row.get("facts")
    if not isinstance(facts, (dict, list, str)) or not facts:
        return "'facts' must be a non-empty object, list or string"
    decision = row.get("decision")
    if isinstance(decision, bool) or not isinstance(decision, (str, int, float)) or str(decision).strip() == "":
        return "'decision' must be a non-empty string"
    rules = row.get("fired_rules", [])
    if not isinstance(rules, list) or not all(isinstance(r, (str, int)) for r in rules):
        return "'fired_rules' must be a list of rule names"
    return None


# ---- conversions to what TRL's SFTTrainer expects ------------------------------------------------


def _fact_lines(facts: Any) -> list[str]:
    if isinstance(facts, dict):
        return [f"- {k}: {json.dumps(v, ensure_ascii=False) if not isinstance(v, str) else v}" for k, v in facts.items()]
    if isinstance(facts, list):
        return [f"- {f if isinstance(f, str) else json.dumps(f, ensure_ascii=False)}" for f in facts]
    return [str(facts)]


def render_aml(row: dict) -> dict[str, str]:
    """The old trainer's (facts, decision, fired_rules) row as a prompt/completion pair."""
    prompt = f"{AML_INSTRUCTION}\n\nFacts:\n" + "\n".join(_fact_lines(row["facts"])) + "\n\n"
    rules = [str(r) for r in row.get("fired_rules", [])]
    completion = f"Decision: {row['decision']}\nFired rules: {', '.join(rules) if rules else 'none'}"
    return {"prompt": prompt, "completion": completion}


@dataclass(frozen=True)
class _Format:
    name: str
    keys: tuple[str, ...]  # all present => the row is (probably) in this format
    check: Callable[[dict], str | None]
    convert: Callable[[dict], dict]


# Detection order matters: a chat row may also carry a "text" field, an aml row a "prompt".
FORMATS: tuple[_Format, ...] = (
    _Format("messages", ("messages",), _check_messages,
            lambda r: {"messages": [{"role": m["role"], "content": m["content"]} for m in r["messages"]]}),
    _Format("prompt_completion", ("prompt", "completion"), _check_prompt_completion,
            lambda r: {"prompt": r["prompt"], "completion": r["completion"]}),
    _Format("aml", ("facts", "decision"), _check_aml, render_aml),
    _Format("text", ("text",), _check_text, lambda r: {"text": r["text"]}),
)
BY_FORMAT = {f.name: f for f in FORMATS}


def detect_format(row: dict) -> str | None:
    for fmt in FORMATS:
        if all(k in row for k in fmt.keys):
            return fmt.name
    return None


def _describe_expected() -> str:
    return "; ".join(f"{f.name} ({', '.join(f.keys)})" for f in FORMATS)


def parse_lines(lines, fmt: str = "auto", uri: str | None = None) -> Dataset:
    """Check every line and convert the rows; raises DatasetError at the first bad one."""
    chosen: _Format | None = None if fmt == "auto" else BY_FORMAT.get(fmt)
    if fmt != "auto" and chosen is None:
        raise DatasetError(f"unknown dataset format {fmt!r}", uri=uri)
    examples: list[dict] = []
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue  # blank lines (a trailing newline, a separator) are not rows
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise DatasetError(f"not valid JSON ({e.msg} at column {e.colno})", lineno, uri) from e
        if not isinstance(row, dict):
            raise DatasetError(f"expected a JSON object, got {type(row).__name__}", lineno, uri)
        if chosen is None:
            detected = detect_format(row)
            if detected is None:
                raise DatasetError(
                    f"cannot tell the format from keys {sorted(row)}; expected one of: {_describe_expected()}",
                    lineno, uri,
                )
            chosen = BY_FORMAT[detected]
        elif fmt == "auto" and not all(k in row for k in chosen.keys):
            other = detect_format(row)
            found = f"looks like {other}" if other else f"has keys {sorted(row)}"
            raise DatasetError(f"row {found}, but the file is in {chosen.name} format", lineno, uri)
        reason = chosen.check(row)
        if reason:
            raise DatasetError(reason, lineno, uri)
        examples.append(chosen.convert(row))
    if not examples:
        raise DatasetError("the file has no rows", uri=uri)
    return Dataset(chosen.name, examples)


def load(uri: str, fmt: str = "auto") -> Dataset:
    """Read and check the whole file at `uri` (local path, gs:// or s3://)."""
    try:
        return parse_lines(storage.read_lines(uri), fmt, uri)
    except storage.StorageError as e:
        raise DatasetError(str(e)) from e


def split(examples: list[dict], val_fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """Deterministic train/validation split; validation is empty when the fraction rounds to no row."""
    import random

    n_val = int(len(examples) * val_fraction) if 0 < val_fraction < 1 else 0
    if n_val == 0 or n_val >= len(examples):
        return list(examples), []
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    val_idx = set(order[:n_val])
    train = [e for i, e in enumerate(examples) if i not in val_idx]
    val = [e for i, e in enumerate(examples) if i in val_idx]
    return train, val
