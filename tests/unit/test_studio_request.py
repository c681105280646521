"""The studio's job spec on `POST /train` (shared/domain/studio.py): the reference page's example body and
variants of it field by field, each mapping asserted on the rendered args / env / resources, each
refusal by its path and message (pure: no I/O)."""

from __future__ import annotations

import copy
import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from shared.domain import ssrf, studio
from shared.domain.backends.kubernetes import KUBERNETES
from shared.domain.backends.local import LOCAL, LOCAL_PLACEMENT
from shared.domain.backends.vertex import VERTEX, vertex_placement
from shared.domain.request import RequestPolicy, normalise_request
from shared.domain.resources import DEFAULT_VERTEX_MACHINE_TYPES
from shared.errors import ValidationFailed
from shared.usecases.service import TrainingService, build_job
from tests.fakes.policy import make_policy
from tests.fakes.studio_example import AUTH_HEADER, EXAMPLE, HF_TOKEN, JOB_ID
from trainer import flags as trainer_flags

KEYS = {
    "aws_access_key_id": "AKIAEXAMPLEKEYID0001",
    "aws_secret_access_key": "sEcReT/access+key+value+0001",
    "aws_session_token": "SeSsIoN-token-0001",
    "aws_region": "eu-west-1",
}
ROLE = {"role_arn": "arn:aws:iam::123456789012:role/studio-artifacts"}
SECRETS = (HF_TOKEN, AUTH_HEADER, KEYS["aws_access_key_id"], KEYS["aws_secret_access_key"], KEYS["aws_session_token"])


def fake_seal(secret: str) -> str:
    return "sealed:" + hashlib.sha256(secret.encode()).hexdigest()


POLICY = make_policy(
    default_backend=KUBERNETES,
    backend_problems={KUBERNETES: None, VERTEX: None, LOCAL: None},
    local_roots=("/repo", "/tmp"),
    local_base="/repo",
    seal=fake_seal,
    default_parallel={KUBERNETES: (1, 1), VERTEX: (1, 1), LOCAL: (1, 1)},
)


def body(**changes: Any) -> dict[str, Any]:
    """The example with `section__key=value` changes (value ... deletes): `customization__rank=8`."""
    out = copy.deepcopy(EXAMPLE)
    for name, value in changes.items():
        parts = name.split("__")
        target = out
        for part in parts[:-1]:
            target = target.setdefault(part, {})
        if value is ...:
            target.pop(parts[-1], None)
        else:
            target[parts[-1]] = value
    return out


def norm(b: dict[str, Any], policy: RequestPolicy = POLICY):
    return studio.normalise_studio_request(b, policy)


def errors_of(b: dict[str, Any], policy: RequestPolicy = POLICY) -> dict[str, str]:
    with pytest.raises(ValidationFailed) as info:
        norm(b, policy)
    return {e.field: e.message for e in info.value.errors}


def flags(req) -> dict[str, Any]:
    return req.flag_values


def assert_no_secrets(req) -> None:
    shown = json.dumps(
        [
            req.args,
            req.flag_values,
            req.labels,
            req.dataset_files,
            req.output_dir,
            req.upload_output_to,
            req.model_id,
            req.callback.to_dict() if req.callback else None,
            req.log_uri,
        ]
    )
    for secret in SECRETS:
        assert secret not in shown


# ---- the example ---------------------------------------------------------------------------------
def test_the_reference_example_renders_one_normalised_request() -> None:
    req = norm(EXAMPLE)
    assert req.backend is KUBERNETES
    assert list(req.args) == [
        "--method=qlora",
        "--model_id=meta-llama/Llama-3.2-3B-Instruct",
        "--dataset_file=s3://studio-data/users/u1/projects/p1/ingestion/chat.jsonl",
        "--dataset_file_format=jsonl",
        f"--output_dir=/tmp/studio/{JOB_ID}",
        "--upload_output_to=s3://studio-models/lora-refinement-1796113031796",
        "--max_length=4096",
        "--per_device_train_batch_size=8",
        "--gradient_accumulation_steps=2",  # 64 = 8 x 2 x 4 GPUs
        "--num_train_epochs=3",
        "--learning_rate=0.0002",
        "--warmup_ratio=0.1",
        "--gradient_checkpointing",
        "--bf16",
        "--lora_rank=32",
        "--lora_alpha=32",
        "--lora_dropout=0.05",
        "--lora_target_modules=q_proj",
        "--lora_target_modules=v_proj",
        "--trainable_layers=decoder.layers.0",
        "--bnb_4bit_use_double_quant",
        "--bnb_4bit_compute_dtype=bfloat16",
        f"--log_uri=s3://studio-data/users/u1/projects/p1/logs/{JOB_ID}/",
    ]
    # The trainer's own parser reads it back.
    parsed = trainer_flags.parse_args(list(req.args))
    assert parsed.per_device_train_batch_size * parsed.gradient_accumulation_steps * 4 == 64
    assert parsed.trainable_layers == ["decoder.layers.0"] and parsed.bnb_4bit_compute_dtype == "bfloat16"
    assert req.env == {"HF_TOKEN": HF_TOKEN}
    assert req.labels == {"studio_job_id": JOB_ID}
    assert req.idempotency_key == f"studio:{JOB_ID}"
    assert req.log_uri == f"s3://studio-data/users/u1/projects/p1/logs/{JOB_ID}/"
    assert req.resources.to_dict() == {"gpus": 4, "gpu_type": "A100", "cpus": 16, "memory_gb": 128, "max_duration_minutes": 720}
    assert req.callback is not None and req.callback.url == EXAMPLE["callbacks"]["webhook_url"]
    assert req.callback.sealed_authorization == fake_seal(AUTH_HEADER) and req.callback.kind == "studio"
    assert_no_secrets(req)


def test_the_job_built_from_it_carries_the_label_key_and_sealed_callback_only() -> None:
    service = TrainingService(store=None, bus=None, policy=POLICY, requests_topic="t", id_factory=lambda: "j1")  # type: ignore[arg-type]
    job, req = service.prepare(EXAMPLE)
    assert job.idempotency_key == f"studio:{JOB_ID}" and job.labels["studio_job_id"] == JOB_ID
    assert job.callback == req.callback and job.env_names == ("HF_TOKEN",)
    stored = json.dumps(job.to_summary())
    for secret in SECRETS:
        assert secret not in stored
    # The header may repeat the key (raw or prefixed); another one is a 400 on job_id.
    assert service.prepare(EXAMPLE, idempotency_key=JOB_ID)[0].idempotency_key == f"studio:{JOB_ID}"
    with pytest.raises(ValidationFailed) as info:
        service.prepare(EXAMPLE, idempotency_key="other-key")
    assert info.value.errors[0].field == "job_id" and "Idempotency-Key" in info.value.errors[0].message


def test_shape_dispatch_keeps_the_old_body_and_job_id_alone_is_not_the_studio() -> None:
    service = TrainingService(store=None, bus=None, policy=POLICY, requests_topic="t")  # type: ignore[arg-type]
    old = service.validate({"dataset_file": "gs://b/d.jsonl", "output_dir": "/tmp/o"})
    assert old.idempotency_key is None and old.callback is None and "--dataset_file=gs://b/d.jsonl" in old.args
    assert not studio.is_studio_body({"job_id": JOB_ID, "dataset_file": "gs://b/d", "output_dir": "/o"})
    assert all(studio.is_studio_body({key: {}}) for key in studio.SHAPE_KEYS)
    # An old body keeps its own log_uri flag, and the normalised request says where the log goes.
    assert service.validate({"dataset_file": "gs://b/d.jsonl", "output_dir": "/tmp/o", "log_uri": "gs://b/logs/"}).log_uri == "gs://b/logs/"


def test_request_hash_covers_the_studio_body_secrets_included() -> None:
    first = norm(EXAMPLE).request_hash
    assert norm(copy.deepcopy(EXAMPLE)).request_hash == first
    assert norm(body(callbacks__auth_header="Bearer another")).request_hash != first
    assert norm(body(base_model__auth_token="hf_other")).request_hash != first
    assert norm(body(tuning_parameters__learning_rate=0.001)).request_hash != first


# ---- field by field: what each maps to ------------------------------------------------------------
MAPPING_CASES = [
    ("revision", body(base_model__revision="v2"), {"model_revision": "v2"}),
    ("weights_url is the folder loaded", body(base_model__weights_url="gs://w/llama/"), {"model_id": "gs://w/llama/"}),
    ("meta provider", body(base_model__provider="meta"), {"model_id": "meta-llama/Llama-3.2-3B-Instruct"}),
    ("lora", body(customization__method="lora", customization__qlora=...), {"method": "lora", "lora_rank": 32}),
    ("full", body(customization__method="full", customization__rank=..., customization__qlora=..., customization__peft={"use": False}), {"method": "full"}),
    ("fp16", body(customization__precision="fp16"), {"fp16": True}),
    (
        "qlora options",
        body(customization__qlora={"use_double_quant": False, "bnb_4bit_quant_type": "fp4"}),
        {"bnb_4bit_use_double_quant": False, "bnb_4bit_quant_type": "fp4"},
    ),
    (
        "peft.config keys",
        body(customization__peft={"use": True, "config": {"task_type": "CAUSAL_LM", "r": 32, "bias": "lora_only", "use_rslora": True}}),
        {"lora_rank": 32, "lora_bias": "lora_only", "use_rslora": True},
    ),
    ("peft.config r alone", body(customization__rank=..., customization__peft={"config": {"r": 16, "lora_alpha": 32}}), {"lora_rank": 16}),
    ("num_train_epochs by name", body(tuning_parameters={"num_train_epochs": 2}), {"num_train_epochs": 2}),
    (
        "other flags by name",
        body(tuning_parameters={"seed": 7, "lr_scheduler_type": "linear", "max_steps": 30}),
        {"seed": 7, "lr_scheduler_type": "linear", "max_steps": 30},
    ),
    ("gradient_checkpointing false", body(tuning_parameters__gradient_checkpointing=False), {"gradient_checkpointing": False}),
]


@pytest.mark.parametrize("name,b,expected", MAPPING_CASES, ids=[c[0] for c in MAPPING_CASES])
def test_field_mapping(name: str, b: dict[str, Any], expected: dict[str, Any]) -> None:
    values = flags(norm(b))
    for key, value in expected.items():
        assert values.get(key) == value, (key, values.get(key))


def test_precision_fp32_renders_neither_and_unset_method_is_the_trainers_default() -> None:
    req = norm(body(customization__precision="fp32"))
    assert "--bf16" not in req.args and "--fp16" not in req.args
    req = norm(body(customization__method=...))  # qlora fields stay valid: the trainer's default is qlora
    assert "method" not in req.flag_values and req.flag_values["lora_rank"] == 32


def test_weights_url_keeps_the_model_name_as_a_label_and_needs_no_revision() -> None:
    req = norm(body(base_model__weights_url="s3://w/llama/"))
    assert req.model_id == "s3://w/llama/" and "model_revision" not in req.flag_values
    assert req.labels == {"studio_job_id": JOB_ID, "studio_model_name": "meta-llama/Llama-3.2-3B-Instruct"}


def test_status_stream_url_alone_is_the_callback_url() -> None:
    req = norm(body(callbacks=...))
    assert req.callback is not None and req.callback.url == EXAMPLE["artifacts"]["status_stream_url"]
    assert req.callback.sealed_authorization is None
    req = norm(body(callbacks=..., artifacts__status_stream_url=...))
    assert req.callback is None


def test_the_local_backend_writes_under_an_allowed_root() -> None:
    policy = make_policy(default_backend=LOCAL, local_roots=("/srv/runs", "/tmp"), local_base="/srv", seal=fake_seal)
    req = norm(EXAMPLE | {"resources": {"gpus": 1}}, policy)
    assert req.backend is LOCAL and req.output_dir == f"/srv/runs/studio/{JOB_ID}"
    policy = make_policy(default_backend=LOCAL, local_roots=("/srv/runs",), seal=fake_seal, studio_output_roots={LOCAL: "/elsewhere"})
    assert errors_of(EXAMPLE | {"resources": {"gpus": 1}}, policy) == {"output_dir": "must resolve inside the local backend's allowed roots: /srv/runs"}


# ---- datasets and their formats -----------------------------------------------------------------
def test_several_datasets_are_several_sources_in_order() -> None:
    req = norm(body(datasets=[{"source": "s3://b/a.jsonl", "format": "jsonl"}, {"source": "gs://b/shards/", "format": "auto"}]))
    assert req.dataset_files == ("s3://b/a.jsonl", "gs://b/shards/")
    assert req.flag_values["dataset_file_format"] == "jsonl"  # one format, the folder's files read as it


def test_different_formats_that_each_match_their_extension_render_auto() -> None:
    req = norm(
        body(
            datasets=[
                {"source": "s3://b/a.jsonl", "format": "jsonl"},
                {"source": "s3://b/b.csv", "format": "csv"},
                {"source": "s3://b/c.parquet", "format": "auto"},
            ]
        )
    )
    assert "dataset_file_format" not in req.flag_values  # auto: the trainer goes by each extension
    assert req.dataset_files == ("s3://b/a.jsonl", "s3://b/b.csv", "s3://b/c.parquet")


def test_formats_that_cannot_hold_together_name_the_datasets() -> None:
    errors = errors_of(body(datasets=[{"source": "s3://b/a.jsonl", "format": "jsonl"}, {"source": "s3://b/export/", "format": "csv"}]))
    assert list(errors) == ["datasets[1].format"]
    assert "one format unless each goes by its file extension" in errors["datasets[1].format"]
    errors = errors_of(body(datasets=[{"source": "s3://b/a.data", "format": "jsonl"}, {"source": "s3://b/b.csv", "format": "auto"}]))
    assert list(errors) == ["datasets[0].format"]


# ---- the batch split ----------------------------------------------------------------------------
BATCH_CASES = [
    # (name, resources, tuning changes, per-device, accumulation)
    ("4 GPUs", {"gpus": 4}, {"batch_size": 64}, 8, 2),
    ("2 nodes x 4", {"gpus": 4, "nodes": 2}, {"batch_size": 64}, 8, 1),
    ("odd per rank", {"gpus": 1}, {"batch_size": 12}, 4, 3),
    ("prime per rank", {"gpus": 2}, {"batch_size": 14}, 1, 7),
    ("long sequences fit fewer per device", {"gpus": 1}, {"batch_size": 32, "max_sequence_length": 16384}, 2, 16),
    ("no GPUs is one process", {"gpus": 0}, {"batch_size": 6}, 2, 3),
    ("per-device given", {"gpus": 4}, {"batch_size": 64, "per_device_train_batch_size": 2}, 2, 8),
    ("accumulation given", {"gpus": 4}, {"batch_size": 64, "gradient_accumulation_steps": 4}, 4, 4),
    ("both given and agree", {"gpus": 4}, {"batch_size": 64, "per_device_train_batch_size": 4, "gradient_accumulation_steps": 4}, 4, 4),
]


@pytest.mark.parametrize("name,resources,tuning,device,accumulation", BATCH_CASES, ids=[c[0] for c in BATCH_CASES])
def test_batch_size_is_the_global_batch(name: str, resources: dict, tuning: dict, device: int, accumulation: int) -> None:
    req = norm(body(resources=resources, tuning_parameters=tuning))
    assert (req.flag_values["per_device_train_batch_size"], req.flag_values["gradient_accumulation_steps"]) == (device, accumulation)


def test_unset_gpus_take_the_backends_default_ranks() -> None:
    policy = make_policy(default_backend=KUBERNETES, seal=fake_seal, default_parallel={KUBERNETES: (2, 1)})
    req = norm(body(resources=..., tuning_parameters={"batch_size": 8}), policy)
    assert (req.flag_values["per_device_train_batch_size"], req.flag_values["gradient_accumulation_steps"]) == (4, 1)
    # Vertex: a type alone gets its machine's count (the default count when the type comes in it, else its smallest).
    vertex = make_policy(
        default_backend=VERTEX,
        seal=fake_seal,
        default_parallel={VERTEX: (1, 1)},
        placements={VERTEX: vertex_placement(DEFAULT_VERTEX_MACHINE_TYPES, "NVIDIA_TESLA_A100", 1), LOCAL: LOCAL_PLACEMENT},
    )
    assert studio.data_parallel_ranks(
        norm(body(resources={"gpu_type": "H200"}, datasets=[{"source": "gs://b/d.jsonl"}]), vertex).resources, vertex.rules(VERTEX)
    ) == (8, 1)
    errors = errors_of(body(resources={"gpu_type": "H200"}, datasets=[{"source": "gs://b/d.jsonl"}], tuning_parameters={"batch_size": 12}), vertex)
    assert errors == {
        "tuning_parameters.batch_size": "must be a multiple of the 8 data-parallel ranks (8 per node x 1 node): the global batch is split evenly over them, and 12 isn't"
    }


BATCH_REFUSALS = [
    ("not divisible by the ranks", {"batch_size": 62}, "must be a multiple of the 4 data-parallel ranks (4 per node x 1 node)"),
    (
        "disagrees with both",
        {"batch_size": 64, "per_device_train_batch_size": 4, "gradient_accumulation_steps": 2},
        "must equal per_device_train_batch_size x gradient_accumulation_steps x 4 data-parallel ranks (4 per node x 1 node) = 32, got 64",
    ),
    (
        "per-device doesn't divide",
        {"batch_size": 64, "per_device_train_batch_size": 3},
        "must be a multiple of per_device_train_batch_size x 4 data-parallel ranks",
    ),
    ("not an integer", {"batch_size": "64"}, "must be an integer, got string"),
    ("zero", {"batch_size": 0}, "must be between 1 and"),
]


@pytest.mark.parametrize("name,tuning,message", BATCH_REFUSALS, ids=[c[0] for c in BATCH_REFUSALS])
def test_batch_size_refusals(name: str, tuning: dict, message: str) -> None:
    errors = errors_of(body(tuning_parameters=tuning))
    assert message in errors["tuning_parameters.batch_size"], errors


# ---- refusals, each by its path ------------------------------------------------------------------
REFUSALS = [
    ("unknown top-level key", body(priority="high"), "priority", "is not a field of the studio's job spec"),
    ("old key in the studio's body", body(dataset_file="s3://b/d"), "dataset_file", "in the studio's spec set datasets[].source"),
    ("top-level typo", body(tuning_parameter={}), "tuning_parameter", "did you mean 'tuning_parameters'?"),
    ("job_id missing", body(job_id=...), "job_id", "is required"),
    ("job_id not an id", body(job_id="../../etc"), "job_id", "must be the studio's run id"),
    ("job_id too long", body(job_id="a" * 65), "job_id", "at most 64 characters"),
    ("nemo", body(base_model__provider="nemo"), "base_model.provider", "nemo isn't supported"),
    ("unknown provider", body(base_model__provider="huggingfce"), "base_model.provider", "did you mean 'huggingface'?"),
    ("base_model key typo", body(base_model__revison="main"), "base_model.revison", "did you mean 'revision'?"),
    ("no model", body(base_model__model_name=...), "base_model.model_name", "is required (or base_model.weights_url)"),
    ("weights_url not a bucket", body(base_model__weights_url="https://x/w"), "base_model.weights_url", "must be a gs:// or s3:// URI"),
    ("weights_url with a revision", body(base_model__weights_url="gs://w/", base_model__revision="v2"), "base_model.revision", "drop one of them"),
    ("auth_token not a string", body(base_model__auth_token=12), "base_model.auth_token", "must be a string, got number"),
    ("new-transformer", body(customization__method="new-transformer"), "customization.method", "new-transformer isn't supported"),
    ("unknown method", body(customization__method="qlor"), "customization.method", "did you mean 'qlora'?"),
    (
        "rank with full",
        body(customization__method="full", customization__qlora=..., customization__peft=...),
        "customization.rank",
        "full fine-tuning has no LoRA rank",
    ),
    ("rank not an integer", body(customization__rank="32"), "customization.rank", "must be an integer, got string"),
    ("rank zero", body(customization__rank=0), "customization.rank", "must be at least 1"),
    ("lora_dropout out of range", body(customization__lora_dropout=1.5), "customization.lora_dropout", "less than 1"),
    ("target_modules item", body(customization__target_modules=["q_proj", 3]), "customization.target_modules[1]", "must be a string"),
    ("trainable_layers not strings", body(customization__trainable_layers=[{"x": 1}]), "customization.trainable_layers[0]", "must be a string"),
    ("precision", body(customization__precision="int8"), "customization.precision", "must be one of bf16, fp16, fp32"),
    ("qlora with lora", body(customization__method="lora"), "customization.qlora", "applies only to method qlora (method is lora)"),
    (
        "qlora key typo",
        body(customization__qlora={"use_double_quantization": True}),
        "customization.qlora.use_double_quantization",
        "did you mean 'use_double_quant'?",
    ),
    (
        "qlora dtype",
        body(customization__qlora={"bnb_4bit_compute_dtype": "bf16"}),
        "customization.qlora.bnb_4bit_compute_dtype",
        "must be one of auto, bfloat16, float16, float32",
    ),
    ("peft off with qlora", body(customization__peft={"use": False}), "customization.peft.use", "false contradicts customization.method qlora"),
    (
        "peft on with full",
        body(customization__method="full", customization__rank=..., customization__qlora=...),
        "customization.peft.use",
        "true contradicts customization.method full",
    ),
    (
        "peft config unknown",
        body(customization__peft={"use": True, "config": {"modules_to_save": ["lm_head"]}}),
        "customization.peft.config.modules_to_save",
        "is not a field of our LoRA config (customization.peft.config); our LoRA config (customization.peft.config) has task_type, r, lora_alpha",
    ),
    ("peft task_type", body(customization__peft={"config": {"task_type": "SEQ_CLS"}}), "customization.peft.config.task_type", "must be CAUSAL_LM"),
    ("peft r disagrees", body(customization__peft={"config": {"r": 16}}), "customization.peft.config.r", "must agree with customization.rank (32), got 16"),
    ("peft bias", body(customization__peft={"config": {"bias": "some"}}), "customization.peft.config.bias", "must be one of none, all, lora_only"),
    (
        "peft lora key with full",
        body(customization__method="full", customization__rank=..., customization__qlora=..., customization__peft={"use": False, "config": {"r": 8}}),
        "customization.peft.config.r",
        "customization.method is full",
    ),
    ("customization typo", body(customization__lora_aplha=16), "customization.lora_aplha", "did you mean 'lora_alpha'?"),
    ("resources gpu type", body(resources={"gpus": 4, "gpu_type": "L40"}), "resources.gpu_type", "must be one of L4, A100"),
    ("resources key", body(resources={"gpu": 4}), "resources.gpu", "is not a resource"),
    ("no datasets", body(datasets=[]), "datasets", "must be a list of at least one"),
    ("datasets missing", body(datasets=...), "datasets", "is required"),
    ("too many datasets", body(datasets=[{"source": "s3://b/d.jsonl"}] * 65), "datasets", "at most 64 items"),
    ("dataset not an object", body(datasets=["s3://b/d.jsonl"]), "datasets[0]", "must be an object, got string"),
    ("dataset source missing", body(datasets=[{"format": "jsonl"}]), "datasets[0].source", "is required"),
    (
        "dataset source location",
        body(datasets=[{"source": "s3://b/a.jsonl"}, {"source": "/data/b.jsonl"}]),
        "datasets[1].source",
        "must be a gs:// or s3:// URI for the kubernetes backend",
    ),
    ("dataset format", body(datasets=[{"source": "s3://b/a.jsonl", "format": "json"}]), "datasets[0].format", "must be one of jsonl, csv, parquet, auto"),
    ("dataset key typo", body(datasets=[{"source": "s3://b/a.jsonl", "fromat": "jsonl"}]), "datasets[0].fromat", "did you mean 'format'?"),
    ("output_uri missing", body(artifacts={"log_uri": "s3://b/logs/"}), "artifacts.output_uri", "is required"),
    ("artifacts missing", body(artifacts=...), "artifacts", "is required"),
    ("output_uri not a bucket", body(artifacts__output_uri="/models/x"), "artifacts.output_uri", "must be a gs:// or s3:// URI"),
    ("log_uri not a bucket", body(artifacts__log_uri="https://logs"), "artifacts.log_uri", "must be a gs:// or s3:// URI"),
    ("artifacts key typo", body(artifacts__ouput_uri="s3://x"), "artifacts.ouput_uri", "did you mean 'output_uri'?"),
    (
        "stream url differs",
        body(artifacts__status_stream_url="https://studio.example/other"),
        "artifacts.status_stream_url",
        "must be the same URL as callbacks.webhook_url",
    ),
    (
        "tuning unknown",
        body(tuning_parameters={"learning_rat": 0.1}),
        "tuning_parameters.learning_rat",
        "unknown trainer flag 'learning_rat'; did you mean 'learning_rate'?",
    ),
    ("tuning reserved", body(tuning_parameters={"output_dir": "/x"}), "tuning_parameters.output_dir", "the platform picks the output folder"),
    ("tuning elsewhere", body(tuning_parameters={"lora_rank": 8}), "tuning_parameters.lora_rank", "set customization.rank"),
    ("tuning dataset", body(tuning_parameters={"dataset_file": "s3://x"}), "tuning_parameters.dataset_file", "set datasets[].source"),
    ("tuning log_uri", body(tuning_parameters={"log_uri": "s3://x"}), "tuning_parameters.log_uri", "set artifacts.log_uri"),
    ("tuning model", body(tuning_parameters={"model_id": "m"}), "tuning_parameters.model_id", "set base_model.model_name"),
    (
        "tuning bad key",
        body(tuning_parameters={"Learning-Rate": 0.1}),
        "tuning_parameters.Learning-Rate",
        "names are snake_case; did you mean 'learning_rate'?",
    ),
    ("tuning type", body(tuning_parameters={"learning_rate": "fast"}), "tuning_parameters.learning_rate", "must be a number, got string"),
    ("tuning range", body(tuning_parameters={"warmup_ratio": 2}), "tuning_parameters.warmup_ratio", "less than 1"),
    ("num_epochs range", body(tuning_parameters={"num_epochs": -1}), "tuning_parameters.num_epochs", "must be at least 0"),
    ("max_sequence_length type", body(tuning_parameters={"max_sequence_length": 1.5}), "tuning_parameters.max_sequence_length", "must be an integer"),
    (
        "alias and name disagree",
        body(tuning_parameters={"num_epochs": 3, "num_train_epochs": 2}),
        "tuning_parameters.num_epochs",
        "must agree with tuning_parameters.num_train_epochs",
    ),
    ("tuning not an object", body(tuning_parameters=[1]), "tuning_parameters", "must be an object, got array"),
    ("callback key unknown", body(callbacks__auth="x"), "callbacks.auth", "is not a field of callbacks; callbacks has webhook_url, auth_header"),
    ("callback not https", body(callbacks__webhook_url="http://studio.example/h", artifacts__status_stream_url=...), "callbacks.webhook_url", "https"),
    ("auth_header control characters", body(callbacks__auth_header="Bearer x\r\nX-Evil: 1"), "callbacks.auth_header", "must not contain control characters"),
    ("auth_header not a string", body(callbacks__auth_header=["Bearer"]), "callbacks.auth_header", "must be a string, got array"),
    (
        "auth_header without a url",
        body(callbacks={"auth_header": AUTH_HEADER}, artifacts__status_stream_url=...),
        "callbacks.webhook_url",
        "is required with callbacks.auth_header",
    ),
    # credentials
    ("auth on a gs source", body(datasets=[{"source": "gs://b/a.jsonl", "auth": KEYS}]), "datasets[0].auth", "applies to s3:// locations only"),
    (
        "auth key typo",
        body(datasets=[{"source": "s3://b/a.jsonl", "auth": {**KEYS, "aws_secret_key": "x"}}]),
        "datasets[0].auth.aws_secret_key",
        "did you mean 'aws_secret_access_key'?",
    ),
    (
        "auth secret missing",
        body(datasets=[{"source": "s3://b/a.jsonl", "auth": {"aws_access_key_id": "AKIA1"}}]),
        "datasets[0].auth.aws_secret_access_key",
        "is required",
    ),
    (
        "auth empty value",
        body(datasets=[{"source": "s3://b/a.jsonl", "auth": {**KEYS, "aws_session_token": ""}}]),
        "datasets[0].auth.aws_session_token",
        "must not be empty",
    ),
    (
        "auth not strings",
        body(datasets=[{"source": "s3://b/a.jsonl", "auth": {**KEYS, "aws_region": 1}}]),
        "datasets[0].auth.aws_region",
        "must be a string, got number",
    ),
    (
        "auth region",
        body(datasets=[{"source": "s3://b/a.jsonl", "auth": {**KEYS, "aws_region": "Europe"}}]),
        "datasets[0].auth.aws_region",
        "must be an AWS region name",
    ),
    (
        "role arn malformed",
        body(datasets=[{"source": "s3://b/a.jsonl", "auth": {"role_arn": "arn:aws:iam::1234:role/x"}}]),
        "datasets[0].auth.role_arn",
        "must be an IAM role ARN",
    ),
    ("role and keys", body(artifacts__auth={**ROLE, "aws_access_key_id": "AKIA1"}), "artifacts.auth", "not both"),
    ("artifact auth on gs", body(artifacts__auth=ROLE, artifacts__output_uri="gs://m/out"), "artifacts.auth", "applies to s3:// locations only"),
    ("auth empty object", body(artifacts__auth={}), "artifacts.auth.aws_access_key_id", "is required (or give role_arn instead of keys)"),
]


@pytest.mark.parametrize("name,b,path,message", REFUSALS, ids=[c[0] for c in REFUSALS])
def test_refusals_name_the_studio_path(name: str, b: dict[str, Any], path: str, message: str) -> None:
    errors = errors_of(b)
    assert path in errors, errors
    assert message in errors[path], errors[path]
    for secret in (*SECRETS, "x\r\nX-Evil"):
        assert secret not in json.dumps(errors)


def test_callbacks_need_a_seal() -> None:
    policy = make_policy(default_backend=KUBERNETES, seal=None)
    errors = errors_of(EXAMPLE, policy)
    assert list(errors) == ["callbacks"] and "WEBHOOK_SIGNING_SECRET" in errors["callbacks"]


def test_callback_url_passes_the_injected_address_check() -> None:
    seen = []

    def check(url: str) -> str | None:  # the SSRF guard with DNS answering a private address
        seen.append(url)
        return ssrf.guard(url, frozenset(), lambda host, port: ["10.0.0.5"])[1]

    policy = make_policy(default_backend=KUBERNETES, seal=fake_seal, check_webhook=check)
    errors = errors_of(EXAMPLE, policy)
    assert list(errors) == ["callbacks.webhook_url"] and "studio.example resolves to" in errors["callbacks.webhook_url"]
    assert seen == [EXAMPLE["callbacks"]["webhook_url"]]
    allowed = make_policy(default_backend=KUBERNETES, seal=fake_seal, webhook_allowed_hosts=frozenset({"studio.local"}))
    url = "http://studio.local:3000/api/training/webhooks/x"
    assert norm(body(callbacks__webhook_url=url, artifacts__status_stream_url=url), allowed).callback.url == url


def test_every_error_is_collected_at_once() -> None:
    b = body(
        base_model__provider="nemo",
        customization__precision="int8",
        datasets=[{"source": "s3://b/a.jsonl", "format": "xml"}],
        tuning_parameters={"learning_rate": -1, "batch_size": 63, "lora_rank": 8, "learning_rat": 1},
        resources={"gpus": 4, "gpu_type": "L40"},
    )
    errors = errors_of(b)
    assert set(errors) == {
        "base_model.provider",
        "customization.precision",
        "datasets[0].format",
        "tuning_parameters.learning_rate",
        "tuning_parameters.batch_size",
        "tuning_parameters.lora_rank",
        "tuning_parameters.learning_rat",
        "resources.gpu_type",
    }


def test_a_refused_source_is_reported_once() -> None:
    errors = errors_of(body(datasets=[{"source": 5}, {"source": "s3://b/ok.jsonl"}]))
    assert errors == {"datasets[0].source": "must be a string, got number"}


# ---- credentials -----------------------------------------------------------------------------------
def test_credentials_travel_only_in_the_secret_env() -> None:
    b = body(
        datasets=[
            {"source": "s3://b/a.jsonl", "format": "jsonl", "auth": KEYS},
            {"source": "gs://b/b.jsonl", "format": "jsonl"},
            {"source": "s3://c/c.jsonl", "format": "jsonl", "auth": {**ROLE, "aws_region": "us-east-1"}},
        ],
        artifacts__auth={"aws_access_key_id": "AKIAARTIFACTS", "aws_secret_access_key": "artifact-secret"},
    )
    req = norm(b)
    creds = json.loads(req.env[trainer_flags.CREDENTIALS_ENV])
    assert creds == {
        "datasets": [KEYS, None, {**ROLE, "aws_region": "us-east-1"}],
        "artifacts": {"aws_access_key_id": "AKIAARTIFACTS", "aws_secret_access_key": "artifact-secret"},
    }
    assert set(req.env) == {"HF_TOKEN", trainer_flags.CREDENTIALS_ENV}
    assert_no_secrets(req)
    assert "artifact-secret" not in json.dumps([req.args, req.flag_values, req.labels])
    job = build_job(req, job_id="j", now=datetime.now(UTC), idempotency_key=req.idempotency_key)
    summary = json.dumps(job.to_summary())
    for secret in (*SECRETS, "artifact-secret"):
        assert secret not in summary
    # Artifacts only: the datasets get a null each.
    only = json.loads(norm(body(artifacts__auth=ROLE)).env[trainer_flags.CREDENTIALS_ENV])
    assert only == {"datasets": [None], "artifacts": ROLE}
    assert trainer_flags.CREDENTIALS_ENV not in norm(EXAMPLE).env


def test_a_backend_that_cannot_pass_the_credentials_names_their_field() -> None:
    policy = make_policy(default_backend=VERTEX, seal=fake_seal, secret_names={VERTEX: frozenset({"HF_TOKEN"})})
    errors = errors_of(body(resources=..., datasets=[{"source": "gs://b/a.jsonl"}], artifacts__auth=ROLE), policy)
    assert list(errors) == ["artifacts.auth"] and trainer_flags.CREDENTIALS_ENV in errors["artifacts.auth"]
    assert "arn:aws" not in errors["artifacts.auth"]


def test_a_request_env_still_cannot_set_the_credentials_variable() -> None:
    with pytest.raises(ValidationFailed) as info:
        normalise_request({"dataset_file": "gs://b/d", "output_dir": "/tmp/o", "env": {trainer_flags.CREDENTIALS_ENV: "{}"}}, POLICY)
    assert info.value.errors[0].field == f"env.{trainer_flags.CREDENTIALS_ENV}"
