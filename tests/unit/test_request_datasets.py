"""`dataset_file` as one source or several, and the trainer's new dataset/model flags, through the api's
validation and rendering (pure: no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared.domain.backends.kubernetes import KUBERNETES
from shared.domain.backends.local import LOCAL
from shared.domain.backends.vertex import VERTEX
from shared.domain.request import normalise_request
from shared.errors import ValidationFailed
from shared.usecases.service import build_job
from tests.fakes.policy import make_policy
from trainer import flags as trainer_flags

POLICY = make_policy(
    default_backend=KUBERNETES,
    backend_problems={KUBERNETES: None, VERTEX: None, LOCAL: None},
    local_roots=("/repo", "/tmp"),
    local_base="/repo",
)
OUT = {"output_dir": "/tmp/o"}


def errors_of(body: dict) -> dict[str, str]:
    with pytest.raises(ValidationFailed) as info:
        normalise_request(body, POLICY)
    return {e.field: e.message for e in info.value.errors}


def test_one_source_renders_one_flag_and_keeps_the_summary_shape() -> None:
    req = normalise_request({"dataset_file": "gs://b/d.jsonl", **OUT}, POLICY)
    assert [a for a in req.args if a.startswith("--dataset_file")] == ["--dataset_file=gs://b/d.jsonl"]
    assert req.dataset_file == "gs://b/d.jsonl" and req.dataset_files == ("gs://b/d.jsonl",)
    summary = build_job(req, job_id="j1", now=datetime.now(UTC), idempotency_key=None).to_summary()
    assert summary["datasetFile"] == "gs://b/d.jsonl" and summary["datasetFiles"] == ["gs://b/d.jsonl"]


def test_several_sources_render_repeated_flags_in_order_and_parse_back() -> None:
    body = {"dataset_file": ["s3://b/aml/v1/", "gs://b/extra.parquet"], "dataset_file_format": "auto", **OUT}
    req = normalise_request(body, POLICY)
    assert [a for a in req.args if a.startswith("--dataset_file=")] == ["--dataset_file=s3://b/aml/v1/", "--dataset_file=gs://b/extra.parquet"]
    assert trainer_flags.parse_args(list(req.args)).dataset_file == ["s3://b/aml/v1/", "gs://b/extra.parquet"]
    summary = build_job(req, job_id="j2", now=datetime.now(UTC), idempotency_key=None).to_summary()
    assert summary["datasetFile"] == "s3://b/aml/v1/"
    assert summary["datasetFiles"] == ["s3://b/aml/v1/", "gs://b/extra.parquet"]


def test_local_sources_are_each_resolved_inside_the_roots() -> None:
    req = normalise_request({"backend": "local", "dataset_file": ["data/a.csv", "/tmp/b/"], **OUT}, POLICY)
    assert req.dataset_files == ("/repo/data/a.csv", "/tmp/b")


@pytest.mark.parametrize(
    "body, field, fragment",
    [
        pytest.param({"dataset_file": ["gs://b/a", "/data/b.jsonl"]}, "dataset_file[1]", "gs:// or s3://", id="k8s local item"),
        pytest.param({"backend": "vertex", "dataset_file": ["gs://b/a", "s3://b/c"]}, "dataset_file[1]", "gs:// URI", id="vertex s3 item"),
        pytest.param({"backend": "local", "dataset_file": ["/tmp/a", "/etc/shadow"]}, "dataset_file[1]", "allowed roots", id="local outside"),
        pytest.param({"dataset_file": ["gs://b/a", 3]}, "dataset_file[1]", "must be a string", id="item not a string"),
        pytest.param({"dataset_file": ["gs://b/a", "gs://b/\nx"]}, "dataset_file[1]", "control characters", id="item newline"),
        pytest.param({"dataset_file": []}, "dataset_file", "at least one source", id="empty list"),
        pytest.param({"dataset_file": {"a": 1}}, "dataset_file", "string or a list of strings", id="object"),
        pytest.param({"dataset_file": "gs://b/a", "dataset_file_format": "xlsx"}, "dataset_file_format", "one of auto, jsonl", id="file format"),
        pytest.param({"dataset_file": "gs://b/a", "dry_run": "yes"}, "dry_run", "boolean", id="dry_run type"),
        pytest.param({"dataset_file": "gs://b/a", "model_revision": 3}, "model_revision", "string", id="revision type"),
    ],
)
def test_bad_sources_are_named_by_index(body: dict, field: str, fragment: str) -> None:
    errors = errors_of({**body, **OUT})
    assert field in errors and fragment in errors[field], errors


def test_new_flags_render_like_every_other_flag() -> None:
    body = {
        "dataset_file": "gs://b/d.csv",
        "dataset_file_format": "csv",
        "dry_run": True,
        "drop_long_examples": True,
        "model_revision": "v2",
        "trust_remote_code": False,
        **OUT,
    }
    args = normalise_request(body, POLICY).args
    assert {"--dataset_file_format=csv", "--dry_run", "--drop_long_examples", "--model_revision=v2"} <= set(args)
    assert not any("trust_remote_code" in a for a in args)  # off is the default: omitted
