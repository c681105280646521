"""gs:// and s3:// for the dataset, the uploaded output and a resume from uploaded checkpoints, against
gcp-storage-emulator and moto's S3 server (started by the session fixtures in conftest.py)."""

from __future__ import annotations

import json

import pytest
from trainer_testlib import FAST, chat_rows

from trainer import storage

pytestmark = pytest.mark.trainer


@pytest.fixture(params=["gs", "s3"])
def bucket(request, monkeypatch):
    """A fresh bucket on the emulator for `request.param`; yields its gs:// or s3:// URI."""
    import uuid

    import fsspec

    env = request.getfixturevalue("gcs_emulator" if request.param == "gs" else "s3_server")
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    name = f"trainer-{uuid.uuid4().hex[:10]}"
    fs = fsspec.filesystem(request.param, skip_instance_cache=True)
    fs.mkdir(name)
    return f"{request.param}://{name}"


def put_text(uri: str, text: str) -> None:
    import fsspec

    with fsspec.open(uri, "w") as fh:
        fh.write(text)


def test_read_lines_and_checkpoint_listing(bucket, tmp_path):
    put_text(f"{bucket}/d.jsonl", '{"text": "a"}\n{"text": "b"}\n')
    assert list(storage.read_lines(f"{bucket}/d.jsonl")) == ['{"text": "a"}', '{"text": "b"}']
    with pytest.raises(storage.StorageError, match="no such file"):
        list(storage.read_lines(f"{bucket}/missing.jsonl"))

    ckpt = tmp_path / "checkpoint-7"
    ckpt.mkdir()
    (ckpt / "adapter_model.safetensors").write_bytes(b"w")
    (ckpt / "trainer_state.json").write_text("{}")
    assert storage.upload_dir(ckpt, f"{bucket}/run/checkpoint-7") == 2
    put_text(f"{bucket}/run/checkpoint-9/adapter_model.safetensors", "half-uploaded: no trainer_state.json")
    assert storage.complete_checkpoints(f"{bucket}/run") == [(7, f"{bucket}/run/checkpoint-7")]
    assert storage.complete_checkpoints(f"{bucket}/nothing-here") == []


def test_train_from_bucket_uploads_output_and_resumes_from_uploaded_checkpoint(bucket, tiny_model, tmp_path, train_inproc):
    import fsspec

    data_uri, dest = f"{bucket}/data/chat.jsonl", f"{bucket}/runs/job-1"
    put_text(data_uri, "".join(json.dumps(r) + "\n" for r in chat_rows()))
    common = ["--model_id", tiny_model, "--dataset_file", data_uri, *FAST, "--upload_output_to", dest, "--save_steps", "3"]

    first = train_inproc(*common, "--output_dir", tmp_path / "a", "--max_steps", "6")
    assert first.code == 0, first.stderr
    uploads = first.of("upload")
    assert [u["uri"] for u in uploads] == [f"{dest}/checkpoint-3", f"{dest}/checkpoint-6", dest]
    fs, root = fsspec.core.url_to_fs(dest)
    names = {p[len(root) :].lstrip("/") for p in fs.find(root)}
    assert {
        "adapter_model.safetensors",
        "adapter_config.json",
        "tokenizer.json",
        "run_summary.json",
        "checkpoint-3/trainer_state.json",
        "checkpoint-6/adapter_model.safetensors",
    } <= names
    with fs.open(f"{root}/run_summary.json") as fh:
        assert json.load(fh)["steps"] == 6

    # A new pod: empty local disk, same upload_output_to. `auto` finds checkpoint-6 in the bucket.
    second = train_inproc(*common, "--output_dir", tmp_path / "b", "--max_steps", "8", "--resume_from_checkpoint", "auto")
    assert second.code == 0, second.stderr
    summary = json.loads((tmp_path / "b" / "run_summary.json").read_text())
    assert summary["resumed_from"] == str(tmp_path / "b" / "checkpoint-6")
    assert summary["steps"] == 8
    assert [e["step"] for e in second.of("step")] == [7, 8]
