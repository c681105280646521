"""Dataset sources: every file format from a local path, gs:// (gcp-storage-emulator) and s3:// (moto), folders
of shards, several sources, bad CSV headers and Parquet types named by column (no model needed)."""

from __future__ import annotations

import csv
import io
import json
import uuid
from pathlib import Path

import pytest
from trainer_testlib import chat_rows, prompt_completion_rows

from trainer import data, sources, storage

pytestmark = pytest.mark.trainer


@pytest.fixture(params=["local", "gs", "s3"])
def base(request, tmp_path, monkeypatch) -> str:
    """A fresh place to write data: a local folder, or a new bucket on the GCS / S3 emulator."""
    if request.param == "local":
        return str(tmp_path / "data")
    import fsspec

    env = request.getfixturevalue("gcs_emulator" if request.param == "gs" else "s3_server")
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    name = f"src-{uuid.uuid4().hex[:10]}"
    fsspec.filesystem(request.param, skip_instance_cache=True).mkdir(name)
    return f"{request.param}://{name}"


def put(uri: str, payload: bytes) -> None:
    import fsspec

    fs, path = fsspec.core.url_to_fs(uri)
    if not storage.is_remote(uri):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    with fs.open(path, "wb") as fh:
        fh.write(payload)


def encode(rows: list[dict], fmt: str) -> bytes:
    """`rows` written as a file of format `fmt` (what a studio upload or an export looks like)."""
    if fmt == "jsonl":
        return "".join(json.dumps(r) + "\n" for r in rows).encode()
    if fmt == "json":
        return json.dumps(rows, indent=1).encode()
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
        writer.writeheader()
        for r in rows:  # structured columns travel as JSON in the cell
            writer.writerow({k: v if isinstance(v, str) else json.dumps(v) for k, v in r.items()})
        return buf.getvalue().encode()
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        sink = io.BytesIO()
        pq.write_table(pa.Table.from_pylist(rows), sink)
        return sink.getvalue()
    raise AssertionError(fmt)


def put_saved_dataset(rows: list[dict], uri: str, tmp_path: Path) -> None:
    """A folder written by `datasets`' save_to_disk, placed at `uri`."""
    import datasets

    local = tmp_path / f"saved-{uuid.uuid4().hex[:6]}"
    datasets.Dataset.from_list(rows).save_to_disk(str(local))
    if storage.is_remote(uri):
        storage.upload_dir(local, uri)
    else:
        Path(uri).parent.mkdir(parents=True, exist_ok=True)
        local.rename(uri)


@pytest.mark.parametrize("fmt", ["jsonl", "json", "csv", "parquet", "save_to_disk"])
def test_each_file_format_from_each_place(fmt, base, tmp_path):
    rows = chat_rows()
    if fmt == "save_to_disk":
        uri = f"{base}/saved"
        put_saved_dataset(rows, uri, tmp_path)
    else:
        uri = f"{base}/chat.{fmt}"
        put(uri, encode(rows, fmt))
    loaded = data.load_sources([uri])
    assert loaded.dataset.format == "messages"
    assert loaded.dataset.examples == [{"messages": r["messages"]} for r in rows]
    (src,) = loaded.sources
    assert (src.file_format, src.rows) == ("arrow" if fmt == "save_to_disk" else fmt, len(rows))


def test_prompt_completion_from_csv_and_parquet_columns(tmp_path):
    rows = prompt_completion_rows()
    for fmt in ("csv", "parquet"):
        put(str(tmp_path / f"pc.{fmt}"), encode(rows, fmt))
        assert data.load_sources([str(tmp_path / f"pc.{fmt}")]).dataset.examples == rows


def test_a_folder_of_shards_is_one_source_in_sorted_order(base):
    rows = chat_rows()
    parts = [rows[:3], rows[3:8], rows[8:]]
    for i, part in enumerate(parts):
        put(f"{base}/aml/v1/part-{i:05d}.jsonl", encode(part, "jsonl"))
    put(f"{base}/aml/v1/_SUCCESS", b"")  # markers a job leaves beside its shards are not data
    loaded = data.load_sources([f"{base}/aml/v1/"])
    (src,) = loaded.sources
    assert src.shards == 3 and src.rows == sum(len(p) for p in parts) == len(loaded.dataset.examples)
    assert loaded.dataset.examples == [{"messages": r["messages"]} for r in rows]
    # Rows in a shard are named by shard, so a dropped or bad row can be found again.
    assert loaded.dataset.origins[3] == (0, f"{base}/aml/v1/part-00001.jsonl:line 1")


def test_several_sources_concatenate_in_order_and_keep_their_counts(tmp_path):
    a, b = tmp_path / "a.parquet", tmp_path / "b.jsonl"
    put(str(a), encode(chat_rows()[:4], "parquet"))
    put(str(b), encode(chat_rows()[4:], "jsonl"))
    loaded = data.load_sources([str(a), str(b)])
    assert [(s.uri, s.rows) for s in loaded.sources] == [(str(a), 4), (str(b), len(chat_rows()) - 4)]
    assert loaded.dataset.examples == [{"messages": r["messages"]} for r in chat_rows()]
    assert {src for src, _ in loaded.dataset.origins} == {0, 1}


def test_sources_of_formats_that_cannot_train_together_are_refused(tmp_path):
    put(str(tmp_path / "a.jsonl"), encode(chat_rows(), "jsonl"))
    put(str(tmp_path / "b.jsonl"), encode([{"text": "t"}], "jsonl"))
    with pytest.raises(data.DatasetError, match="cannot be trained together"):
        data.load_sources([str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl")])


def test_explicit_file_format_overrides_the_extension(tmp_path):
    put(str(tmp_path / "export.txt"), encode(chat_rows(), "csv"))
    with pytest.raises(data.DatasetError, match="--dataset_file_format"):
        data.load_sources([str(tmp_path / "export.txt")])
    assert data.load_sources([str(tmp_path / "export.txt")], "csv").sources[0].rows == len(chat_rows())


@pytest.mark.parametrize(
    "payload, where, fragment",
    [
        pytest.param(b"prompt,completoin\na,b\n", "header", "missing column 'completion'", id="misspelt column"),
        pytest.param(b"prompt,prompt\na,b\n", "header", "duplicate column 'prompt'", id="duplicate column"),
        pytest.param(b"prompt,completion\na,b\nc\n", "row 2", "1 fields, but the header has 2", id="short row"),
        pytest.param(b'messages\n"[{""role"": ""user""\n', "row 1", "column 'messages': not valid JSON", id="bad json cell"),
        pytest.param(b"prompt,completion\na,\xe9t\xe9\n", None, "not UTF-8", id="latin-1"),
    ],
)
def test_bad_csv_names_source_row_and_column(tmp_path, payload, where, fragment):
    uri = str(tmp_path / "bad.csv")
    put(uri, payload)
    with pytest.raises(data.DatasetError) as err:
        data.load_sources([uri])
    assert uri in str(err.value) and fragment in str(err.value)
    if where:
        assert err.value.where == where


def test_wrong_parquet_type_names_row_and_column(tmp_path):
    rows = [{"prompt": "a", "completion": "b"}, {"prompt": "c", "completion": None}]
    uri = str(tmp_path / "bad.parquet")
    put(uri, encode(rows, "parquet"))
    with pytest.raises(data.DatasetError) as err:
        data.load_sources([uri])
    assert str(err.value).startswith(f"{uri}:row 2: 'completion' must be a string")


def test_empty_folder_and_unknown_files(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.md").write_text("x")
    with pytest.raises(data.DatasetError, match="no data files"):
        data.load_sources([str(tmp_path / "empty")])
    with pytest.raises(data.DatasetError, match="no such file or folder"):
        data.load_sources([str(tmp_path / "missing")])


def test_resolve_finds_the_train_split_of_a_saved_dataset_dict(tmp_path):
    import datasets

    datasets.DatasetDict({"train": datasets.Dataset.from_list(chat_rows()), "test": datasets.Dataset.from_list(chat_rows()[:2])}).save_to_disk(
        str(tmp_path / "dd")
    )
    shards = sources.resolve(str(tmp_path / "dd"))
    assert shards and all("/train/" in s.uri and s.file_format == "arrow" for s in shards)
    assert data.load_sources([str(tmp_path / "dd")]).sources[0].rows == len(chat_rows())
