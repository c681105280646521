"""Table-driven tests of request normalisation and flag rendering (pure: no I/O)."""

from __future__ import annotations

import pytest

from shared.domain.backends.kubernetes import KUBERNETES
from shared.domain.backends.local import LOCAL
from shared.domain.backends.vertex import VERTEX
from shared.domain.request import normalise_request
from shared.errors import ValidationFailed
from tests.fakes.jobs import README_KUBERNETES, README_VERTEX
from tests.fakes.policy import make_policy
from trainer import flags as trainer_flags

POLICY = make_policy(
    default_backend=KUBERNETES,
    backend_problems={KUBERNETES: None, VERTEX: None, LOCAL: None},
    local_roots=("/repo", "/tmp"),
    local_base="/repo",
)
K8S = {"dataset_file": "gs://b/d.jsonl", "output_dir": "/tmp/model"}
BASE_ARGS = ["--dataset_file=gs://b/d.jsonl", "--output_dir=/tmp/model"]

OLD_README_K8S = README_KUBERNETES
OLD_README_VERTEX = README_VERTEX

# (name, body, expected args in order)
RENDER_CASES = [
    (
        "old README kubernetes example",
        OLD_README_K8S,
        [
            "--model_id=meta-llama/Llama-3.2-3B-Instruct",
            "--dataset_file=s3://my-bucket/jobs/job-123/data.jsonl",
            "--output_dir=/tmp/model",
            "--upload_output_to=gs://finery-training/models/job-123",
            "--per_device_train_batch_size=2",
            "--gradient_accumulation_steps=8",
            "--num_train_epochs=2",
        ],
    ),
    (
        "old README vertex example",
        OLD_README_VERTEX,
        [
            "--model_id=nemotron-3-8b",
            "--dataset_file=gs://finery-training/jobs/job-456/data.jsonl",
            "--output_dir=/tmp/model",
            "--upload_output_to=gs://finery-training/models/job-456",
            "--per_device_train_batch_size=4",
            "--num_train_epochs=3",
        ],
    ),
    ("minimal", K8S, BASE_ARGS),
    ("model alias", {**K8S, "model": "m"}, ["--model_id=m", *BASE_ARGS]),
    ("model_name alias", {**K8S, "model_name": "m"}, ["--model_id=m", *BASE_ARGS]),
    ("model alias inside trainer_args", {**K8S, "trainer_args": {"model": "m"}}, ["--model_id=m", *BASE_ARGS]),
    ("aliases that agree", {**K8S, "model": "m", "model_id": "m"}, ["--model_id=m", *BASE_ARGS]),
    ("true renders a bare flag", {**K8S, "packing": True}, [*BASE_ARGS, "--packing"]),
    ("false of a default-off flag is omitted", {**K8S, "packing": False}, BASE_ARGS),
    ("false of a default-on flag renders --no_", {**K8S, "gradient_checkpointing": False}, [*BASE_ARGS, "--no_gradient_checkpointing"]),
    ("true of a default-on flag renders it", {**K8S, "trainer_args": {"gradient_checkpointing": True}}, [*BASE_ARGS, "--gradient_checkpointing"]),
    ("null is omitted", {**K8S, "lora_rank": None, "trainer_args": {"seed": None}}, BASE_ARGS),
    (
        "list repeats the flag",
        {**K8S, "lora_target_modules": ["q_proj", "v_proj"]},
        [*BASE_ARGS, "--lora_target_modules=q_proj", "--lora_target_modules=v_proj"],
    ),
    ("top level overrides trainer_args", {**K8S, "num_train_epochs": 5, "trainer_args": {"num_train_epochs": 1}}, [*BASE_ARGS, "--num_train_epochs=5"]),
    ("small float round-trips", {**K8S, "learning_rate": 1e-05}, [*BASE_ARGS, "--learning_rate=1e-05"]),
    ("float keeps its digits", {**K8S, "learning_rate": 0.0002}, [*BASE_ARGS, "--learning_rate=0.0002"]),
    ("int for a float flag", {**K8S, "num_train_epochs": 3}, [*BASE_ARGS, "--num_train_epochs=3"]),
    ("fractional epochs", {**K8S, "num_train_epochs": 0.5}, [*BASE_ARGS, "--num_train_epochs=0.5"]),
    ("negative int", {**K8S, "max_steps": -1}, [*BASE_ARGS, "--max_steps=-1"]),
    ("choice", {**K8S, "method": "lora"}, ["--method=lora", *BASE_ARGS]),
    ("hf_token is never a flag", {**K8S, "hf_token": "hf_secret"}, BASE_ARGS),
    ("hf_token in trainer_args is never a flag", {**K8S, "trainer_args": {"hf_token": "hf_secret"}}, BASE_ARGS),
    ("reserved keys are not rendered", {**K8S, "job_name": "x", "labels": {"team": "a"}, "env": {"A": "b"}}, BASE_ARGS),
    ("value starting with a dash stays a value", {**K8S, "resume_from_checkpoint": "-ckpt"}, [*BASE_ARGS, "--resume_from_checkpoint=-ckpt"]),
    ("unicode value", {**K8S, "model_id": "org/modèle-😀"}, ["--model_id=org/modèle-😀", *BASE_ARGS]),
    ("s3 dataset for kubernetes", {"dataset_file": "s3://b/x.jsonl", "output_dir": "/o"}, ["--dataset_file=s3://b/x.jsonl", "--output_dir=/o"]),
    (
        "local relative paths resolve from the repo root",
        {"backend": "local", "dataset_file": "data/d.jsonl", "output_dir": "out/run1"},
        ["--dataset_file=/repo/data/d.jsonl", "--output_dir=/repo/out/run1"],
    ),
    (
        "local may read gs://",
        {"backend": "local", "dataset_file": "gs://b/d.jsonl", "output_dir": "/tmp/o"},
        ["--dataset_file=gs://b/d.jsonl", "--output_dir=/tmp/o"],
    ),
    ("zero is a value, not null", {**K8S, "val_split_size": 0}, ["--dataset_file=gs://b/d.jsonl", "--val_split_size=0", "--output_dir=/tmp/model"]),
]


@pytest.mark.parametrize("name,body,expected", RENDER_CASES, ids=[c[0] for c in RENDER_CASES])
def test_render(name: str, body: dict, expected: list[str]) -> None:
    req = normalise_request(body, POLICY)
    assert list(req.args) == expected
    # Whatever we render, the trainer's own parser reads back the same values.
    parsed = trainer_flags.parse_args(list(req.args))
    for key, value in req.flag_values.items():
        got = getattr(parsed, key)
        if isinstance(value, bool) or value is None:
            assert got == value
        elif trainer_flags.BY_NAME[key].type == "float":
            assert got == float(value)
        elif trainer_flags.BY_NAME[key].type == "list":
            assert got == list(value)
        else:
            assert got == value


def test_secrets_go_to_env_only() -> None:
    req = normalise_request({**OLD_README_K8S, "env": {}, "hf_token": "hf_top"}, POLICY)
    assert req.env == {"HF_TOKEN": "hf_top"}
    assert not any("hf_" in a for a in req.args)
    assert req.env_names == ("HF_TOKEN",)


def test_hf_token_given_twice_alike_is_one_token() -> None:
    req = normalise_request({**OLD_README_K8S, "hf_token": "hf_xxx"}, POLICY)
    assert req.env == {"HF_TOKEN": "hf_xxx"}


def test_same_body_same_hash_and_args() -> None:
    a = normalise_request(OLD_README_K8S, POLICY)
    b = normalise_request(dict(reversed(list(OLD_README_K8S.items()))), POLICY)
    assert a.request_hash == b.request_hash
    assert a.args == b.args


# (name, body, field, message fragment)
ERROR_CASES = [
    ("body not an object", [1, 2], "body", "must be a JSON object"),
    ("dataset_file missing", {"output_dir": "/o"}, "dataset_file", "is required"),
    ("output_dir missing", {"dataset_file": "gs://b/d"}, "output_dir", "is required"),
    ("dataset_file not a string", {**K8S, "dataset_file": 3}, "dataset_file", "string"),
    ("output_dir not a string", {**K8S, "output_dir": ["/o"]}, "output_dir", "string"),
    ("empty dataset_file", {**K8S, "dataset_file": ""}, "dataset_file", "empty"),
    ("unsupported backend", {**K8S, "backend": "slurm"}, "backend", "kubernetes, vertex, local"),
    ("kubernetes dataset not a bucket URI", {**K8S, "dataset_file": "/data/d.jsonl"}, "dataset_file", "gs:// or s3://"),
    ("vertex dataset on s3", {**K8S, "backend": "vertex", "dataset_file": "s3://b/d"}, "dataset_file", "gs://"),
    ("unknown flag with suggestion", {**K8S, "num_train_epoch": 1}, "num_train_epoch", "did you mean 'num_train_epochs'"),
    ("unknown flag in trainer_args", {**K8S, "trainer_args": {"lora_rnk": 8}}, "trainer_args.lora_rnk", "did you mean 'lora_rank'"),
    ("kebab-case key", {**K8S, "trainer_args": {"num-train-epochs": 1}}, "trainer_args.num-train-epochs", "did you mean 'num_train_epochs'"),
    ("key with a space", {**K8S, "bad key": 1}, "bad key", "snake_case"),
    ("key with a leading dash", {**K8S, "-x": 1}, "-x", "snake_case"),
    ("key with =", {**K8S, "a=b": 1}, "a=b", "snake_case"),
    ("wrong type int", {**K8S, "lora_rank": "32"}, "lora_rank", "integer"),
    ("float for int", {**K8S, "lora_rank": 3.5}, "lora_rank", "integer"),
    ("bool for int", {**K8S, "max_steps": True}, "max_steps", "integer"),
    ("string for float", {**K8S, "learning_rate": "2e-4"}, "learning_rate", "number"),
    ("string for bool", {**K8S, "packing": "yes"}, "packing", "boolean"),
    ("bad choice", {**K8S, "method": "qlora2"}, "method", "one of qlora, lora, full"),
    ("nested object", {**K8S, "trainer_args": {"seed": {"a": 1}}}, "trainer_args.seed", "object"),
    ("list for a scalar flag", {**K8S, "seed": [1, 2]}, "seed", "single value"),
    ("newline in a value", {**K8S, "model_id": "a\nb"}, "model_id", "control characters"),
    ("NUL in a value", {**K8S, "model_id": "a\x00b"}, "model_id", "control characters"),
    ("conflicting model aliases", {**K8S, "model": "a", "model_id": "b"}, "model_id", "conflicting"),
    (
        "hf_token differs from env.HF_TOKEN",
        {**K8S, "hf_token": "hf_a", "env": {"HF_TOKEN": "hf_b"}},
        "hf_token",
        "conflicting values in hf_token, env.HF_TOKEN",
    ),
    ("trainer_args.hf_token differs", {**K8S, "trainer_args": {"hf_token": "hf_a"}, "env": {"HF_TOKEN": "hf_b"}}, "hf_token", "trainer_args.hf_token"),
    ("trainer_args not an object", {**K8S, "trainer_args": [1]}, "trainer_args", "dictionary"),
    ("env value not a string", {**K8S, "env": {"A": 1}}, "env.A", "string"),
    ("env name that changes the child", {**K8S, "env": {"LD_PRELOAD": "/x.so"}}, "env.LD_PRELOAD", "can't be set"),
    ("env PYTHONPATH", {**K8S, "env": {"PYTHONPATH": "/evil"}}, "env.PYTHONPATH", "can't be set"),
    ("env bad name", {**K8S, "env": {"A-B": "x"}}, "env.A-B", "not a valid environment"),
    ("upload to a local path", {**K8S, "upload_output_to": "/tmp/x"}, "upload_output_to", "gs:// or s3://"),
    ("reserved key in trainer_args", {**K8S, "trainer_args": {"backend": "local"}}, "trainer_args.backend", "request field"),
    ("local path outside the roots", {"backend": "local", "dataset_file": "/etc/passwd", "output_dir": "/tmp/o"}, "dataset_file", "allowed roots"),
    ("local .. escape", {"backend": "local", "dataset_file": "/tmp/d.jsonl", "output_dir": "/repo/../etc"}, "output_dir", "allowed roots"),
    ("local relative .. escape", {"backend": "local", "dataset_file": "../../etc/x", "output_dir": "/tmp/o"}, "dataset_file", "allowed roots"),
    ("NaN", {**K8S, "learning_rate": float("nan")}, "learning_rate", "finite"),
    ("job_name with a newline", {**K8S, "job_name": "a\nb"}, "job_name", "control characters"),
    ("bad label key", {**K8S, "labels": {"Bad Key": "v"}}, "labels.Bad Key", "label key"),
]


@pytest.mark.parametrize("name,body,field,fragment", ERROR_CASES, ids=[c[0] for c in ERROR_CASES])
def test_validation_errors(name: str, body: object, field: str, fragment: str) -> None:
    with pytest.raises(ValidationFailed) as info:
        normalise_request(body, POLICY)
    errors = {e.field: e.message for e in info.value.errors}
    assert field in errors, errors
    assert fragment in errors[field], errors[field]
    body_json = info.value.to_body()
    assert field in body_json["error"] or len(body_json["errors"]) > 1
    assert {"field": field, "message": errors[field]} in body_json["errors"]


def test_unconfigured_backend_names_what_is_missing() -> None:
    policy = make_policy(
        default_backend=KUBERNETES,
        backend_problems={KUBERNETES: "K8S_TRAINING_IMAGE is not set", VERTEX: "VERTEX_IMAGE_URI is not set", LOCAL: None},
        local_roots=("/tmp",),
        local_base="/tmp",
    )
    with pytest.raises(ValidationFailed) as info:
        normalise_request(K8S, policy)
    assert info.value.errors[0].field == "backend"
    assert "K8S_TRAINING_IMAGE" in info.value.errors[0].message
    with pytest.raises(ValidationFailed) as info:
        normalise_request({**K8S, "backend": "vertex"}, policy)
    assert "VERTEX_IMAGE_URI" in info.value.errors[0].message


def test_every_error_is_reported_at_once() -> None:
    with pytest.raises(ValidationFailed) as info:
        normalise_request({**K8S, "lora_rank": "x", "packing": 1, "nope": 2}, POLICY)
    assert {e.field for e in info.value.errors} == {"lora_rank", "packing", "nope"}
