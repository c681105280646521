"""Training data: check every row of every source, detect its row format, convert to TRL rows.

This runs as the trainer's preflight, before any model is loaded, so that a bad file costs seconds and
not a GPU start-up: every source is read whole (`trainer.sources` reads the files: JSONL, JSON, CSV,
Parquet, `save_to_disk` folders, local or remote), and the first bad row raises `DatasetError` naming
its source, its line or row, and the reason (the trainer turns that into exit code 2). Pure Python: no
torch, no datasets.

Formats (detected from the first row when `--dataset_format auto`; every later row must match):
- `messages`: `{"messages": [{"role": "user", "content": "..."}, {"role": "assistant", ...}]}`,
  rendered with the tokenizer's chat template by TRL.
- `prompt_completion`: `{"prompt": "...", "completion": "..."}`; the loss is on the completion only.
- `text`: `{"text": "..."}`; plain language modelling.
- `aml`: the old trainer's rows `{"facts": {...}, "decision": ..., "fired_rules": [...]}`. `decision` is
  an object `{"aml_decision": "CLEAR", "reasons": [...], "escalation_level": 0-3}` as the old trainer
  wrote it: prompt = the instruction and the facts as JSON, completion = the decision object as JSON
  (what the rule engine parses back). The older string form (`"decision": "escalate"`) renders as
  `Decision: ...` / `Fired rules: ...` lines, as before.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from trainer import storage

ROLES = ("system", "user", "assistant", "tool")
AML_INSTRUCTION = "Apply the AML rules to these facts. Give the decision and the rules that fired."
AML_JSON_INSTRUCTION = "Apply the AML rules to these facts. Answer with the decision as a JSON object with aml_decision, reasons and escalation_level."
MIN_TRAIN_ROWS = 10


class DatasetError(Exception):
    """The dataset cannot be used; `line` is 1-based when one JSONL line is to blame, `where` names the
    row in other sources ("row 3", "header")."""

    def __init__(self, reason: str, line: int | None = None, uri: str | None = None, where: str | None = None):
        self.reason = reason
        if line is None and where and where.startswith("line ") and where[5:].isdigit():
            line = int(where[5:])
        self.line = line
        self.uri = uri
        self.where = where or (f"line {line}" if line is not None else None)
        prefix = f"{uri}:" if uri else ""
        prefix += f"{self.where}: " if self.where else (" " if uri else "")
        super().__init__(f"{prefix}{reason}")


@dataclass(frozen=True)
class Dataset:
    format: str
    examples: list[dict[str, Any]]  # TRL-ready rows, all with the same keys
    # Where each example came from, parallel to `examples`: (source index, "line 3" / "row 3").
    origins: list[tuple[int, str]] = field(default_factory=list)


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
        if not msg["content"].strip():
            return f"messages[{i}].content is empty"
    return _check_turns([m["role"] for m in messages])


def _check_turns(roles: list[str]) -> str | None:
    """Roles alternate user/assistant after an optional leading system message and end with the
    assistant (what chat templates assume, and what a model is trained to answer). Tool results may
    follow an assistant turn (its tool call) and are answered by the assistant again."""
    expected = "user"
    for i, role in enumerate(roles):
        if role == "system" and i == 0:
            continue
        if role == "tool":
            if i == 0 or roles[i - 1] not in ("assistant", "tool"):
                return f"messages[{i}] is a tool result with no assistant turn before it"
            expected = "assistant"
            continue
        if role != expected:
            return f"messages[{i}].role is {role!r}, expected {expected!r}: roles must alternate user/assistant after an optional first system message"
        expected = "assistant" if role == "user" else "user"
    if roles[-1] != "assistant":
        return "'messages' must end with an assistant message (the answer to learn)"
    return None


def _check_prompt_completion(row: dict) -> str | None:
    return _check_text_field(row, "prompt", allow_empty=True) or _check_text_field(row, "completion")


def _check_text(row: dict) -> str | None:
    return _check_text_field(row, "text")


AML_ESCALATION_LEVELS = range(0, 4)


def _check_aml_decision(decision: Any) -> str | None:
    if isinstance(decision, dict):  # the old trainer's form: the fields the rule engine reads back
        label = decision.get("aml_decision")
        if not isinstance(label, str) or not label.strip():
            return "'decision' has no 'aml_decision' (a non-empty label such as CLEAR, REVIEW, SAR, BLOCK)"
        reasons = decision.get("reasons")
        if reasons is not None and (not isinstance(reasons, list) or not all(isinstance(r, str) for r in reasons)):
            return "'decision.reasons' must be a list of strings"
        level = decision.get("escalation_level")
        if level is not None and (isinstance(level, bool) or not isinstance(level, int) or level not in AML_ESCALATION_LEVELS):
            return f"'decision.escalation_level' must be an integer 0-3, got {level!r}"
        return None
    if isinstance(decision, bool) or not isinstance(decision, (str, int, float)) or str(decision).strip() == "":
        return "'decision' must be an object with 'aml_decision', or a non-empty string"
    return None


def _check_aml(row: dict) -> str | None:
    facts = row.get("facts")
    if not isinstance(facts, (dict, list, str)) or not facts:
        return "'facts' must be a non-empty object, list or string"
    problem = _check_aml_decision(row.get("decision"))
    if problem:
        return problem
    rules = row.get("fired_rules") or []
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
    decision = row["decision"]
    if isinstance(decision, dict):
        # As the old trainer did: the facts as JSON in, the decision object as JSON out, so the tuned
        # model answers in exactly the shape the rule engine parses (key order kept as written).
        facts = json.dumps(row["facts"], ensure_ascii=False, sort_keys=False)
        return {"prompt": f"{AML_JSON_INSTRUCTION}\n\nFacts: {facts}\n\nDecision:\n", "completion": json.dumps(decision, ensure_ascii=False)}
    prompt = f"{AML_INSTRUCTION}\n\nFacts:\n" + "\n".join(_fact_lines(row["facts"])) + "\n\n"
    rules = [str(r) for r in row.get("fired_rules") or []]
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
    _Format("messages", ("messages",), _check_messages, lambda r: {"messages": [{"role": m["role"], "content": m["content"]} for m in r["messages"]]}),
    _Format("prompt_completion", ("prompt", "completion"), _check_prompt_completion, lambda r: {"prompt": r["prompt"], "completion": r["completion"]}),
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


def parse_lines(lines, fmt: str = "auto", uri: str | None = None, allow_empty: bool = False) -> Dataset:
    """Check every JSONL line and convert the rows; raises DatasetError at the first bad one."""
    return parse_rows(_json_lines(lines, uri), fmt, uri, allow_empty=allow_empty)


def _json_lines(lines, uri: str | None) -> Iterator[tuple[str, Any]]:
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue  # blank lines (a trailing newline, a separator) are not rows
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise DatasetError(f"not valid JSON ({e.msg} at column {e.colno})", lineno, uri) from e
        yield f"line {lineno}", row


def format_for_columns(columns: list[str], fmt: str, uri: str | None) -> str:
    """The row format of a table (CSV, Parquet, Arrow) from its columns; a missing column is named."""
    present = set(columns)
    if fmt != "auto":
        chosen = BY_FORMAT.get(fmt)
        if chosen is None:
            raise DatasetError(f"unknown dataset format {fmt!r}", uri=uri)
    else:
        detected = detect_format(dict.fromkeys(columns))
        if detected is not None:
            return detected
        # The format the columns come closest to, so the message names the column that is missing.
        chosen = max(FORMATS, key=lambda f: sum(k in present for k in f.keys))
        if not any(k in present for k in chosen.keys):
            raise DatasetError(f"cannot tell the format from columns {sorted(present)}; expected one of: {_describe_expected()}", uri=uri, where="header")
    missing = [k for k in chosen.keys if k not in present]
    if missing:
        raise DatasetError(f"missing column {missing[0]!r} for {chosen.name} rows (columns: {', '.join(columns)})", uri=uri, where="header")
    return chosen.name


def parse_rows(records: Iterable[tuple[str, Any]], fmt: str = "auto", uri: str | None = None, source: int = 0, allow_empty: bool = False) -> Dataset:
    """Check every (where, row) record of one source and convert it; one row format per source."""
    chosen: _Format | None = None if fmt == "auto" else BY_FORMAT.get(fmt)
    if fmt != "auto" and chosen is None:
        raise DatasetError(f"unknown dataset format {fmt!r}", uri=uri)
    examples: list[dict] = []
    origins: list[tuple[int, str]] = []
    for where, row in records:
        if not isinstance(row, dict):
            raise DatasetError(f"expected a JSON object, got {type(row).__name__}", uri=uri, where=where)
        if chosen is None:
            detected = detect_format(row)
            if detected is None:
                raise DatasetError(
                    f"cannot tell the format from keys {sorted(row)}; expected one of: {_describe_expected()}",
                    uri=uri,
                    where=where,
                )
            chosen = BY_FORMAT[detected]
        elif fmt == "auto" and not all(k in row for k in chosen.keys):
            other = detect_format(row)
            found = f"looks like {other}" if other else f"has keys {sorted(row)}"
            raise DatasetError(f"row {found}, but the file is in {chosen.name} format", uri=uri, where=where)
        reason = chosen.check(row)
        if reason:
            raise DatasetError(reason, uri=uri, where=where)
        examples.append(chosen.convert(row))
        origins.append((source, where))
    if not examples and not allow_empty:
        raise DatasetError("the file has no rows", uri=uri)
    return Dataset(chosen.name if chosen else fmt, examples, origins)


# What each row format becomes for TRL: sources may be concatenated only when these agree.
TRL_SHAPE = {"messages": "messages", "prompt_completion": "prompt_completion", "aml": "prompt_completion", "text": "text"}


@dataclass(frozen=True)
class Source:
    uri: str
    file_format: str  # jsonl, json, csv, parquet, arrow
    shards: int
    format: str  # the row format
    rows: int


@dataclass(frozen=True)
class Loaded:
    dataset: Dataset  # all sources concatenated, in order
    sources: list[Source]


def load_sources(uris: list[str], file_format: str = "auto", fmt: str = "auto", options: list[dict | None] | None = None) -> Loaded:
    """Read and check every source (a file, or a folder / prefix of shards), concatenated in order;
    `options[i]` are the i-th source's storage options (its own credentials, `trainer.credentials`)."""
    from trainer import sources as src

    examples: list[dict] = []
    origins: list[tuple[int, str]] = []
    infos: list[Source] = []
    for index, uri in enumerate(uris):
        try:
            shards = src.resolve(uri, file_format, options[index] if options else None)
        except storage.StorageError as e:
            raise DatasetError(str(e)) from e
        rows = 0
        row_format = fmt
        several = len(shards) > 1  # an empty shard among several is fine (Spark writes them)
        for shard in shards:
            try:
                if shard.file_format == "jsonl":
                    part = parse_lines(src.read_lines(shard), row_format, shard.uri, allow_empty=several)
                else:
                    columns, records = src.read_table(shard)
                    if columns is not None:
                        row_format = format_for_columns(columns, row_format, shard.uri)
                    part = parse_rows(records, row_format, shard.uri, allow_empty=several)
            except storage.StorageError as e:
                raise DatasetError(str(e)) from e
            if not part.examples:
                continue
            if row_format == "auto":
                row_format = part.format  # the first shard decides for the whole source
            elif part.format != row_format:
                raise DatasetError(f"rows are in {part.format} format, but {uri} started in {row_format}", uri=shard.uri)
            examples.extend(part.examples)
            # Name the shard when a source has several, so a dropped row can be found again.
            origins.extend((index, f"{shard.uri}:{where}" if len(shards) > 1 else where) for _, where in part.origins)
            rows += len(part.examples)
        if rows == 0:
            raise DatasetError("no rows in any of its files", uri=uri)
        infos.append(Source(uri, shards[0].file_format, len(shards), row_format, rows))
    shapes = {TRL_SHAPE[s.format] for s in infos}
    if len(shapes) > 1:
        described = ", ".join(f"{s.uri} is {s.format}" for s in infos)
        raise DatasetError(f"the sources have row formats that cannot be trained together ({described}): give sources of one format")
    fmt_name = infos[0].format if len({s.format for s in infos}) == 1 else TRL_SHAPE[infos[0].format]
    return Loaded(Dataset(fmt_name, examples, origins), infos)


def load(uri: str, fmt: str = "auto") -> Dataset:
    """Read and check one source at `uri` (local path, gs:// or s3://)."""
    return load_sources([uri], "auto", fmt).dataset


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
