"""Trainer flags from request values: the text checks and the rendering rules of a `POST /train` body.

Pure. `trainer/flags.py` (the trainer's own table) is the only source of flag names, types, ranges and
defaults; `render_flag` turns one checked value into argv tokens (`--name=value`, a bare `--name`, or
`--no_<name>`) or records why it can't, naming the value by its JSON path. `shared.domain.request`
calls it for every flag of a body; `shared.domain.studio` reuses the text checks for its own fields.
"""

from __future__ import annotations

import difflib
import json
import re
from typing import Any

from shared.domain.json_types import type_name as _type_name
from shared.errors import FieldError
from trainer import flags as trainer_flags

KEY_RE = re.compile(r"^[a-z][a-z0-9_]*$")
CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")

MAX_VALUE_CHARS = 4096
MAX_LIST_ITEMS = 64

# Canonical order: the trainer's own table order, so equal requests render equal command lines.
FLAG_ORDER = {flag.name: i for i, flag in enumerate(trainer_flags.FLAGS)}


def key_name(key: object) -> str:
    """A key as an error's field name: an empty key is shown as `""`, so every error names something."""
    text = str(key)
    return text if text.strip() else json.dumps(text)


def suggest(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(name.replace("-", "_").lower(), choices, n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def check_text(value: str, path: str, errors: list[FieldError], *, limit: int = MAX_VALUE_CHARS) -> bool:
    if CONTROL_RE.search(value):
        errors.append(FieldError(path, "must not contain control characters (newlines, tabs, NUL)"))
        return False
    if len(value) > limit:
        errors.append(FieldError(path, f"must be at most {limit} characters"))
        return False
    try:
        value.encode()
    except UnicodeEncodeError:  # a lone surrogate escape: valid JSON, not text (no path, name or label)
        errors.append(FieldError(path, "must not contain lone surrogate escapes (\\ud800-\\udfff)"))
        return False
    return True


def _in_range(flag: trainer_flags.Flag, value: int | float, path: str, errors: list[FieldError]) -> bool:
    """The flag table's range (the one the trainer's parser applies too): int64 at most for every int."""
    if isinstance(value, int) and flag.type == "float" and abs(value) > 2**1023:
        problem: str | None = "must be a finite number"  # float() of it would overflow
    else:
        problem = flag.range_problem(value)
    if problem:
        errors.append(FieldError(path, problem))
        return False
    return True


def _render_scalar(flag: trainer_flags.Flag, value: Any, path: str, errors: list[FieldError]) -> str | None:
    """Check one non-null, non-bool value against its flag's type; return its rendered text."""
    kind = "list" if flag.type == "list" else flag.type
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            errors.append(FieldError(path, f"must be an integer, got {_type_name(value)}"))
            return None
        if not _in_range(flag, value, path, errors):
            return None
        return str(value)
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            errors.append(FieldError(path, f"must be a number, got {_type_name(value)}"))
            return None
        if not _in_range(flag, value, path, errors):
            return None
        return repr(float(value)) if isinstance(value, float) else str(value)
    if not isinstance(value, str):
        errors.append(FieldError(path, f"must be a string, got {_type_name(value)}"))
        return None
    if not check_text(value, path, errors):
        return None
    if kind == "choice" and value not in flag.choices:
        errors.append(FieldError(path, f"must be one of {', '.join(flag.choices)}{suggest(value, list(flag.choices))}"))
        return None
    if value == "":
        errors.append(FieldError(path, "must not be empty"))
        return None
    return value


def render_flag(name: str, value: Any, path: str, errors: list[FieldError]) -> list[str]:
    """Render one trainer flag (already known to exist) into argv tokens, or record why it can't be."""
    flag = trainer_flags.BY_NAME[name]
    if value is None:
        return []
    if isinstance(value, dict):
        errors.append(FieldError(path, "must not be an object: trainer flags take a string, number, boolean or list"))
        return []
    if flag.type == "bool":
        if not isinstance(value, bool):
            errors.append(FieldError(path, f"must be a boolean, got {_type_name(value)}"))
            return []
        if value:
            return [flag.cli]
        return [f"--no_{name}"] if flag.default is True else []
    if isinstance(value, bool):
        expected = {"list": "list of strings", "int": "integer", "float": "number", "choice": "string"}.get(flag.type, flag.type)
        errors.append(FieldError(path, f"must be a {expected}, got boolean"))
        return []
    if flag.type == "list":
        items = value if isinstance(value, list) else [value]
        if len(items) > MAX_LIST_ITEMS:
            errors.append(FieldError(path, f"must have at most {MAX_LIST_ITEMS} items"))
            return []
        out: list[str] = []
        for i, item in enumerate(items):
            if isinstance(item, (dict, list)):
                errors.append(FieldError(f"{path}[{i}]", "must be a string"))
                continue
            text = _render_scalar(flag, item, f"{path}[{i}]", errors)
            if text is not None:
                out.append(f"{flag.cli}={text}")
        return out
    if isinstance(value, list):
        errors.append(FieldError(path, f"takes a single value, not a list ({name} is not a repeatable flag)"))
        return []
    text = _render_scalar(flag, value, path, errors)
    return [] if text is None else [f"{flag.cli}={text}"]


def unique_errors(errors: list[FieldError]) -> list[FieldError]:
    """Each (field, message) once, in the order found: several checks may find the same problem."""
    seen: set[tuple[str, str]] = set()
    out = []
    for err in errors:
        if (err.field, err.message) not in seen:
            seen.add((err.field, err.message))
            out.append(err)
    return out
