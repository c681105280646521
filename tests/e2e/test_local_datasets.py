"""Issue 16's "done when": the old trainer's AML JSONL, a CSV and a Parquet export of the same chat rows, and
an s3:// folder of shards each fine-tune the tiny model to `succeeded` through `POST /train` on the local
backend, and a `dry_run` of each reports the dataset (the preflight report) and succeeds without training."""

from __future__ import annotations

import csv
import io
import json
import uuid
from pathlib import Path

import pytest
import requests

from tests.fakes.s3 import moto_server
from tests.fakes.s3 import s3_env as s3_env_for
from tests.fakes.tiny_job import CHAT, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.trainer]

LABELS = ("CLEAR", "REVIEW", "SAR", "BLOCK")
AML = [
    {
        "facts": {"customer": f"c{i}", "amount": 900 * (i + 1), "country": "XX" if i % 3 else "FR"},
        "decision": {"aml_decision": LABELS[i % 4], "reasons": [f"R{i % 4} matched"], "escalation_level": i % 4},
        "fired_rules": [f"R{i % 4}"],
    }
    for i in range(12)
]


@pytest.fixture(scope="module")
def s3_env():
    """moto's S3 server on a free port; the environment that points s3fs at it (dummy credentials)."""
    with moto_server() as endpoint:
        yield s3_env_for(endpoint)


def write_input(kind: str, tmp: Path, s3_env: dict, monkeypatch) -> tuple[str, dict]:
    """The dataset_file for `kind`, and the env the trainer needs to read it."""
    if kind == "aml_jsonl":
        path = tmp / "aml.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in AML))
        return str(path), {}
    if kind == "chat_csv":
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(["messages"])
        writer.writerows([json.dumps(r["messages"])] for r in CHAT)
        (tmp / "chat.csv").write_text(buf.getvalue())
        return str(tmp / "chat.csv"), {}
    if kind == "chat_parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(CHAT), tmp / "chat.parquet")
        return str(tmp / "chat.parquet"), {}
    import fsspec

    for k, v in s3_env.items():
        monkeypatch.setenv(k, v)
    bucket = f"e2e-{uuid.uuid4().hex[:8]}"
    fs = fsspec.filesystem("s3", skip_instance_cache=True)
    fs.mkdir(bucket)
    for i in range(3):
        with fs.open(f"{bucket}/aml/v1/part-{i:05d}.jsonl", "w") as fh:
            fh.write("".join(json.dumps(r) + "\n" for r in CHAT[i * 8 : (i + 1) * 8]))
    return f"s3://{bucket}/aml/v1/", dict(s3_env)


@pytest.mark.parametrize("kind, rows", [("aml_jsonl", 12), ("chat_csv", 24), ("chat_parquet", 24), ("s3_shards", 24)])
def test_each_input_dry_runs_then_trains_to_succeeded(platform, tiny: Path, s3_env, monkeypatch, kind, rows) -> None:  # noqa: F811
    url, _container, tmp = platform
    dataset_file, env = write_input(kind, tmp, s3_env, monkeypatch)
    base = {
        "backend": "local",
        "model_id": str(tiny),
        "dataset_file": dataset_file,
        "method": "lora",
        "max_steps": 2,
        "logging_steps": 1,
        "per_device_train_batch_size": 4,
        "gradient_accumulation_steps": 1,
        "val_split_size": 0,
        "env": env,
    }

    dry = requests.post(f"{url}/train", json={**base, "output_dir": str(tmp / "dry"), "dry_run": True})
    assert dry.status_code == 202, dry.text
    job = wait_for(url, dry.json()["job"]["id"], lambda j: j["status"] in ("succeeded", "failed", "cancelled"))
    assert job["status"] == "succeeded", job
    report = job["progress"]
    assert report["event"] == "dataset" and report["dry_run"] is True, report
    assert report["rows"] == rows and report["train_rows"] == rows
    assert report["first_example"]["trained_tokens"] > 0 and report["tokens"]["max"] > 0
    if kind == "s3_shards":
        assert report["sources"][0]["shards"] == 3
    assert not (tmp / "dry" / "adapter_config.json").exists()

    r = requests.post(f"{url}/train", json={**base, "output_dir": str(tmp / "out")})
    assert r.status_code == 202, r.text
    done = wait_for(url, r.json()["job"]["id"], lambda j: j["status"] in ("succeeded", "failed", "cancelled"))
    assert done["status"] == "succeeded", done
    assert done["progress"]["event"] == "done" and done["progress"]["step"] == 2
    summary = json.loads((tmp / "out" / "run_summary.json").read_text())
    assert summary["preflight"]["rows"] == rows
    assert summary["dataset"]["format"] == ("aml" if kind == "aml_jsonl" else "messages")
