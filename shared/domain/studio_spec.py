"""The studio's job spec: its keys and limits, and the small checks its translation is made of.

Pure. `TranslationBase` holds one studio body on its way to the old request shape (the old body, the
map old path -> studio path, the errors by studio path) and the checks every section uses (`obj`,
`text`, `choice`, `uri`, `flag`). The sections are in `studio_model.py` (base model, customization),
`studio_data.py` (datasets, artifacts, their credentials) and `studio_tuning.py` (tuning parameters and
the global batch split); `studio.py` puts them together and runs the old normaliser.
"""

from __future__ import annotations

import re
from typing import Any

from shared.domain.callback import Callback
from shared.domain.flag_rendering import MAX_LIST_ITEMS, MAX_VALUE_CHARS, check_text, key_name, suggest
from shared.domain.json_types import type_name as _type_name
from shared.domain.request_policy import RequestPolicy
from shared.errors import FieldError
from trainer import flags as trainer_flags

# Keys that mark a body as the studio's (`job_id` alone does not: it could be anyone's flag typo).
SHAPE_KEYS = ("base_model", "customization", "datasets", "artifacts", "tuning_parameters", "callbacks")
TOP_KEYS = ("job_id", "base_model", "customization", "resources", "datasets", "artifacts", "tuning_parameters", "callbacks")
BASE_MODEL_KEYS = ("provider", "model_name", "revision", "auth_token", "weights_url")
CUSTOMIZATION_KEYS = ("method", "rank", "target_modules", "lora_alpha", "lora_dropout", "trainable_layers", "precision", "qlora", "peft")
QLORA_KEYS = {"use_double_quant": "bnb_4bit_use_double_quant", "bnb_4bit_compute_dtype": "bnb_4bit_compute_dtype", "bnb_4bit_quant_type": "bnb_4bit_quant_type"}
PEFT_KEYS = ("use", "config")
# peft.config keys our LoRA config has -> the trainer flag (task_type is checked, not rendered).
PEFT_CONFIG_KEYS = {
    "task_type": None,
    "r": "lora_rank",
    "lora_alpha": "lora_alpha",
    "lora_dropout": "lora_dropout",
    "target_modules": "lora_target_modules",
    "bias": "lora_bias",
    "use_rslora": "use_rslora",
}
DATASET_KEYS = ("source", "format", "auth")
ARTIFACT_KEYS = ("output_uri", "log_uri", "status_stream_url", "auth")
CALLBACK_KEYS = ("webhook_url", "auth_header")
PROVIDERS = ("huggingface", "meta")
METHODS = ("qlora", "lora", "full")
PRECISIONS = {"bf16": "bf16", "fp16": "fp16", "fp32": None}
FORMATS = ("jsonl", "csv", "parquet", "auto")
EXTENSION_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
KEY_AUTH = ("aws_access_key_id", "aws_secret_access_key", "aws_session_token", "aws_region")
ROLE_AUTH = ("role_arn", "aws_region")
ROLE_ARN_RE = re.compile(r"^arn:aws(-[a-z]+)*:iam::\d{12}:role/[A-Za-z0-9+=,.@_/-]{1,512}$")
REGION_RE = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d{1,2}$")
JOB_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")  # a UUID and friends: safe in a path and a label
MAX_DATASETS = MAX_LIST_ITEMS
MAX_SECRET_CHARS = 4096
MAX_BATCH_SIZE = 1 << 20
PER_DEVICE_CHOICES = (8, 4, 2, 1)
MAX_TOKENS_PER_DEVICE = 32768  # per-device batch x max_length the platform picks at most (memory, not a limit on you)
TUNING_ALIASES = {"num_epochs": "num_train_epochs", "max_sequence_length": "max_length"}
LABEL = "studio_job_id"
IDEMPOTENCY_PREFIX = "studio:"
# Where the studio's spec sets what a tuning parameter (or an old request key) would: refused there.
ELSEWHERE = {
    "dataset_file": "datasets[].source",
    "dataset_file_format": "datasets[].format",
    "output_dir": "nothing: the platform picks the output folder (artifacts.output_uri is where the output goes)",
    "upload_output_to": "artifacts.output_uri",
    "log_uri": "artifacts.log_uri",
    "model_id": "base_model.model_name (or base_model.weights_url)",
    "model": "base_model.model_name",
    "model_name": "base_model.model_name",
    "model_revision": "base_model.revision",
    "hf_token": "base_model.auth_token",
    "method": "customization.method",
    "lora_rank": "customization.rank",
    "lora_alpha": "customization.lora_alpha",
    "lora_dropout": "customization.lora_dropout",
    "lora_target_modules": "customization.target_modules",
    "lora_bias": "customization.peft.config.bias",
    "use_rslora": "customization.peft.config.use_rslora",
    "trainable_layers": "customization.trainable_layers",
    "bf16": "customization.precision",
    "fp16": "customization.precision",
    "bnb_4bit_quant_type": "customization.qlora.bnb_4bit_quant_type",
    "bnb_4bit_use_double_quant": "customization.qlora.use_double_quant",
    "bnb_4bit_compute_dtype": "customization.qlora.bnb_4bit_compute_dtype",
    "resources": "resources (top level)",
    "webhooks": "callbacks.webhook_url",
    "backend": "nothing: the platform picks the backend (DEFAULT_TRAINING_BACKEND)",
    "job_name": "nothing: the studio's spec has no job name",
    "env": "nothing: secrets go in base_model.auth_token, datasets[].auth and artifacts.auth",
    "labels": "nothing: the job is labelled studio_job_id=<job_id>",
    "trainer_args": "tuning_parameters",
    "idempotency_key": "job_id",
}
# Trainer flags a tuning parameter may name (the rest have their own studio field).
TUNING_FLAGS = tuple(name for name in trainer_flags.BY_NAME if name not in ELSEWHERE)
PLACEHOLDER_SOURCE = "gs://studio-placeholder/invalid.jsonl"  # stands in for a refused source (its error is ours)


def elsewhere(key: str, template: str) -> str:
    """Where the studio's spec sets `key` ("" when it has no place), as `template` words it."""
    where = ELSEWHERE.get(key)
    if where is None:
        return ""
    return f": {where.removeprefix('nothing: ')}" if where.startswith("nothing: ") else template.format(where)


def same(a: Any, b: Any) -> bool:
    return a == b and isinstance(a, bool) == isinstance(b, bool)


class TranslationBase:
    """One studio body on its way to the old shape: the old body, where each old key came from, and
    the errors found on the way (by studio path)."""

    def __init__(self, body: dict[str, Any], policy: RequestPolicy):
        self.body = body
        self.policy = policy
        self.errors: list[FieldError] = []
        self.old: dict[str, Any] = {}
        self.paths: dict[str, str] = {}  # old path (a key, or `dataset_file[i]`) -> studio path
        self.platform_env: dict[str, tuple[str, str]] = {}
        self.callback: Callback | None = None
        self.job_id: str | None = None
        self.dataset_creds: list[dict[str, str] | None] | None = None  # one per source, when any has some
        self.stream_url: Any = None  # artifacts.status_stream_url, checked with the callbacks

    # ---- small checks ------------------------------------------------------------------------------
    def error(self, path: str, message: str) -> None:
        self.errors.append(FieldError(path, message))

    def obj(self, value: Any, path: str, keys: tuple[str, ...] | list[str], what: str) -> dict[str, Any] | None:
        """An object with only `keys` (None / missing: None). Unknown keys are refused, with a hint."""
        if value is None:
            return None
        if not isinstance(value, dict):
            self.error(path, f"must be an object, got {_type_name(value)}")
            return None
        for key in value:
            if key not in keys:
                hint = suggest(str(key), list(keys)) or f"; {what} has {', '.join(keys)}"
                self.error(f"{path}.{key_name(key)}", f"is not a field of {what}{hint}")
        return {k: v for k, v in value.items() if k in keys}

    def text(self, value: Any, path: str, *, required: bool = False, limit: int = MAX_VALUE_CHARS) -> str | None:
        """A non-empty string (None: absent). Messages never show the value: some are secrets."""
        if value is None:
            if required:
                self.error(path, "is required")
            return None
        if not isinstance(value, str):
            self.error(path, f"must be a string, got {_type_name(value)}")
            return None
        if not value.strip():
            self.error(path, "must not be empty")
            return None
        return value if check_text(value, path, self.errors, limit=limit) else None

    def choice(self, value: Any, path: str, choices: tuple[str, ...] | list[str]) -> str | None:
        text = self.text(value, path)
        if text is not None and text not in choices:
            self.error(path, f"must be one of {', '.join(choices)}{suggest(text, list(choices))}")
            return None
        return text

    def uri(self, value: Any, path: str, *, required: bool = False) -> str | None:
        text = self.text(value, path, required=required)
        if text is not None and not text.startswith(("gs://", "s3://")):
            self.error(path, "must be a gs:// or s3:// URI")
            return None
        return text

    def flag(self, name: str, value: Any, path: str) -> None:
        """Set an old-shape key (a trainer flag) from a studio field; the old normaliser checks its type."""
        if value is None:
            return
        self.old[name] = value
        self.paths[name] = path
