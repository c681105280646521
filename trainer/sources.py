"""Dataset sources: what `--dataset_file` names, turned into shards and rows.

A source is a file, or a folder / prefix (local, `gs://`, `s3://`) whose files are its shards (read in
sorted order; names starting with `.` or `_`, such as `_SUCCESS`, are not data), or a folder written by
the `datasets` library's `save_to_disk` (its Arrow files; the `train` split of a `DatasetDict`). The file
format comes from the extension (`.jsonl`/`.ndjson`, `.json`, `.csv`, `.parquet`/`.pq`, `.arrow`) or from
`--dataset_file_format`. `trainer.data` checks and converts the rows; this module only reads them, each
with the place it came from ("line 3" for JSONL, "row 3" otherwise, 1-based, a CSV's header excluded).

CSV cells are text: the columns that hold structures (`messages`, `facts`, an object `decision`,
`fired_rules`) are JSON in the cell (`fired_rules` may also be `R1;R7` or `R1,R7`, and empty for none).

Each source may have credentials of its own (`trainer.credentials`): `resolve` takes that source's
storage options and every shard it returns carries them, so each shard is read with its source's.
"""

from __future__ import annotations

import csv
import io
import json
import posixpath
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from trainer import storage

FILE_FORMATS = ("auto", "jsonl", "json", "csv", "parquet", "arrow")
EXTENSIONS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".arrow": "arrow"}
# Files a `save_to_disk` folder holds besides its Arrow data: they mark the folder as one.
SAVE_TO_DISK_MARKERS = ("state.json", "dataset_info.json")
DATASET_DICT_MARKER = "dataset_dict.json"
JSON_CELLS = ("messages", "facts", "decision", "fired_rules")


@dataclass(frozen=True)
class Shard:
    uri: str
    file_format: str
    # fsspec storage options of the source's credentials (None: the ambient identity); never shown
    options: dict | None = field(default=None, compare=False, repr=False)


def _error(reason: str, uri: str, where: str | None = None):
    from trainer.data import DatasetError  # data imports this module lazily: no cycle at import time

    return DatasetError(reason, uri=uri, where=where)


def _format_of(uri: str, file_format: str) -> str | None:
    if file_format != "auto":
        return file_format
    return EXTENSIONS.get(posixpath.splitext(uri.rstrip("/"))[1].lower())


def _hidden(rel: str) -> bool:
    return any(part.startswith((".", "_")) for part in rel.split("/"))


def resolve(uri: str, file_format: str = "auto", options: dict | None = None) -> list[Shard]:
    """The shards of one source, in order; raises DatasetError/StorageError when there are none."""
    files = storage.list_folder(uri, options)
    if files is None:
        fmt = _format_of(uri, file_format)
        if fmt is None:
            raise _error("cannot tell the file format from the extension: use .jsonl, .json, .csv, .parquet or .arrow, or pass --dataset_file_format", uri)
        return [Shard(uri, fmt, options)]
    root = uri.rstrip("/")
    rel = {f: f[len(root) :].lstrip("/") for f in files}
    names = set(rel.values())
    if DATASET_DICT_MARKER in names:
        if not any(r.startswith("train/") for r in names):
            raise _error("a saved DatasetDict with no 'train' split", uri)
        return resolve(f"{root}/train", file_format, options)
    if all(m in names for m in SAVE_TO_DISK_MARKERS):
        state = json.loads(storage.read_text(f"{root}/state.json", options))
        data_files = [f["filename"] for f in state.get("_data_files", [])]
        if not data_files:
            raise _error("a save_to_disk folder whose state.json lists no data files", uri)
        return [Shard(f"{root}/{name}", "arrow", options) for name in data_files]
    shards = [Shard(f, fmt, options) for f in files if not _hidden(rel[f]) for fmt in [_format_of(f, file_format)] if fmt is not None]
    if not shards:
        listed = ", ".join(sorted(names)[:5]) or "nothing"
        raise _error(
            f"no data files in this folder (found: {listed}); data files end in .jsonl, .json, .csv, .parquet or .arrow, or pass --dataset_file_format", uri
        )
    kinds = sorted({s.file_format for s in shards})
    if len(kinds) > 1:
        raise _error(f"the folder mixes file formats ({', '.join(kinds)}): one format per source", uri)
    return shards


def read_table(shard: Shard) -> tuple[list[str] | None, Iterator[tuple[str, Any]]]:
    """(columns, (where, row) records) of a non-JSONL shard; columns is None where rows are free-form."""
    if shard.file_format == "json":
        return None, _json_array(shard)
    if shard.file_format == "csv":
        return _csv(shard)
    if shard.file_format in ("parquet", "arrow"):
        return _arrow(shard)
    raise _error(f"unknown file format {shard.file_format!r}", shard.uri)


def _json_array(shard: Shard) -> Iterator[tuple[str, Any]]:
    uri = shard.uri
    text = storage.read_text(uri, shard.options)
    try:
        rows = json.loads(text)
    except json.JSONDecodeError as e:
        raise _error(f"not valid JSON ({e.msg} at line {e.lineno} column {e.colno})", uri) from e
    if not isinstance(rows, list):
        raise _error(f"a .json source must be an array of row objects, got {type(rows).__name__} (one object per line is .jsonl)", uri)
    for i, row in enumerate(rows, start=1):
        yield f"row {i}", row


def _csv_cell(column: str, value: str) -> Any:
    """A CSV cell as the value its column holds: JSON for the structured columns, text otherwise."""
    if column not in JSON_CELLS:
        return value
    text = value.strip()
    if column == "fired_rules" and not text.startswith("["):
        return [r.strip() for r in re.split(r"[;,]", text) if r.strip()]
    if column in ("decision", "facts") and not text.startswith(("{", "[")):
        return value  # the string forms
    return json.loads(text)


def _csv(shard: Shard) -> tuple[list[str], Iterator[tuple[str, Any]]]:
    uri = shard.uri
    reader = csv.reader(io.StringIO(storage.read_text(uri, shard.options), newline=""))
    header = next(reader, None)
    if not header:
        raise _error("the file is empty (no header row)", uri, "header")
    header = [h.strip().lstrip("\ufeff") for h in header]  # Excel writes a byte-order mark
    dupes = sorted({h for h in header if header.count(h) > 1})
    if dupes or "" in header:
        raise _error(f"duplicate column {dupes[0]!r}" if dupes else "a column with no name", uri, "header")

    def records() -> Iterator[tuple[str, Any]]:
        for i, cells in enumerate(reader, start=1):
            if not any(c.strip() for c in cells):
                continue  # a blank line
            where = f"row {i}"
            if len(cells) != len(header):
                raise _error(f"{len(cells)} fields, but the header has {len(header)}", uri, where)
            row = {}
            for column, cell in zip(header, cells):
                try:
                    row[column] = _csv_cell(column, cell)
                except json.JSONDecodeError as e:
                    raise _error(f"column {column!r}: not valid JSON ({e.msg} at column {e.colno})", uri, where) from e
            yield where, row

    return header, records()


def _arrow(shard: Shard) -> tuple[list[str], Iterator[tuple[str, Any]]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    with storage.open_binary(shard.uri, shard.options) as fh:
        raw = fh.read()
    try:
        if shard.file_format == "parquet":
            table = pq.read_table(pa.BufferReader(raw))
        else:
            try:  # `save_to_disk` writes the streaming format; others write the file format
                table = pa.ipc.open_stream(pa.BufferReader(raw)).read_all()
            except pa.ArrowInvalid:
                table = pa.ipc.open_file(pa.BufferReader(raw)).read_all()
    except (pa.ArrowInvalid, OSError) as e:
        raise _error(f"not a readable {shard.file_format} file ({e})", shard.uri) from e

    def records() -> Iterator[tuple[str, Any]]:
        for i, row in enumerate(table.to_pylist(), start=1):
            decision = row.get("decision")
            if isinstance(decision, dict):
                # A struct column has every field in every row; null means the row did not have it.
                row["decision"] = {k: v for k, v in decision.items() if v is not None}
            yield f"row {i}", row

    return table.column_names, records()


def read_lines(shard: Shard) -> Iterator[str]:
    """The lines of a JSONL shard, read with its source's credentials."""
    return storage.read_lines(shard.uri, shard.options)
