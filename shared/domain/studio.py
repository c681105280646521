"""The studio's job spec on `POST /train`, translated into the old request shape and normalised by it.

Pure. The studio (`reference/studio-contract.md`) sends `job_id`, `base_model`, `customization`,
`resources`, `datasets[]`, `artifacts`, `tuning_parameters` and `callbacks`. `normalise_studio_request`
checks each field, builds the equivalent old body (`dataset_file`, `model_id`, trainer flags, ...) and
runs `normalise_request` on it, so one `NormalisedRequest` comes out of both shapes and nothing after
the api can tell them apart. While translating it keeps a map old path -> studio path, so an error the
old normaliser finds (`trainer_args`-style `lora_rank`, `dataset_file[1]`) names the studio's field
(`customization.rank`, `datasets[1].source`). Every studio field is honoured or refused by its path.

Decisions the spec leaves open (the README's "Connecting the studio" table says the same):
- `datasets[i].format`: the trainer's `--dataset_file_format` applies to every source. One explicit
  format for all (or `auto` for the rest, whose extensions agree) renders that format; sources whose
  explicit formats differ but each match the file's own extension render `auto` (the trainer goes by
  each extension); anything else is a 400 naming the formats that can't hold together.
- `tuning_parameters.batch_size` is the global batch: per-device batch x accumulation x data-parallel
  ranks (GPUs per node x nodes: the request's resources, else the backend's defaults). The per-device
  batch is the largest of 8, 4, 2, 1 that divides batch / ranks and keeps per-device tokens
  (x max_length) within MAX_TOKENS_PER_DEVICE; accumulation is the rest.
- The output folder is the platform's: `RequestPolicy.studio_output_roots[backend]/<job_id>`.
- Credentials (`datasets[i].auth`, `artifacts.auth`) travel only as the secret env
  `trainer.flags.CREDENTIALS_ENV`; `callbacks.auth_header` only sealed (`RequestPolicy.seal`).
"""

from __future__ import annotations

import dataclasses
import json
import posixpath
import re
from typing import Any

from shared.domain import ssrf
from shared.domain.callback import Callback
from shared.domain.job import Backend
from shared.domain.json_types import type_name as _type_name
from shared.domain.flag_rendering import KEY_RE, MAX_LIST_ITEMS, MAX_VALUE_CHARS, check_text, key_name, suggest
from shared.domain.request import NormalisedRequest, RequestPolicy, normalise_request, request_fingerprint
from shared.domain.resources import Resources, parse_resources
from shared.errors import FieldError, ValidationFailed
from trainer import flags as trainer_flags

# Keys that mark a body as the studio's (`job_id` alone does not: it could be anyone's flag typo).
SHAPE_KEYS = ("base_model", "customization", "datasets", "artifacts", "tuning_parameters", "callbacks")
TOP_KEYS = ("job_id", "base_model", "customization", "resources", "datasets", "artifacts", "tuning_parameters", "callbacks")
BASE_MODEL_KEYS = ("provider", "model_name", "revision", "auth_token", "weights_url")
CUSTOMIZATION_KEYS = ("method", "rank", "target_modules", "lora_alpha", "lora_dropout", "trainable_layers", "precision", "qlora", "peft")
QLORA_KEYS = {"use_double_quant": "bnb_4bit_use_double_quant", "bnb_4bit_compute_dtype": "bnb_4bit_compute_dtype", "bnb_4bit_quant_type": "bnb_4bit_quant_type"}
PEFT_KEYS = ("use", "config")
# peft.config keys our LoRA config has -> the trainer flag (task_type is checked, not rendered).
PEFT_CONFIG_KEYS = {"task_type": None, "r": "lora_rank", "lora_alpha": "lora_alpha", "lora_dropout": "lora_dropout",
                    "target_modules": "lora_target_modules", "bias": "lora_bias", "use_rslora": "use_rslora"}
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
_PLACEHOLDER_SOURCE = "gs://studio-placeholder/invalid.jsonl"  # stands in for a refused source (its error is ours)


def is_studio_body(body: Any) -> bool:
    """The studio's job spec, recognised by its shape (any of its own top-level objects)."""
    return isinstance(body, dict) and any(key in body for key in SHAPE_KEYS)


def idempotency_key_for(job_id: str) -> str:
    return f"{IDEMPOTENCY_PREFIX}{job_id}"


def data_parallel_ranks(res: Resources, backend: Backend, policy: RequestPolicy) -> tuple[int, int]:
    """(trainer processes per node, nodes) a job will run with: what its resources say, else what the
    backend does when they are unset (the same choices its adapter makes; `gpus: 0` is one CPU process)."""
    default_per_node, default_nodes = policy.default_parallel.get(backend, (1, 1))
    if res.gpus is not None:
        per_node = max(res.gpus, 1)
    else:
        per_node = default_per_node
        placement = policy.placements.get(backend)
        if res.gpu_type is not None and placement is not None and placement.gpu_types:
            counts = placement.gpu_types.get(res.gpu_type) or ()
            if counts:  # a type that comes in fixed counts (Vertex): its default count, else its smallest
                per_node = placement.default_gpus if placement.default_gpus in counts else min(counts)
    nodes = res.nodes if res.nodes is not None else default_nodes
    return max(per_node, 1), max(nodes, 1)


class _Translation:
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

    # ---- the fields ----------------------------------------------------------------------------------
    def run(self) -> None:
        for key in self.body:
            if key not in TOP_KEYS:
                hint = _elsewhere(str(key), "; in the studio's spec set {}") or suggest(str(key), list(TOP_KEYS))
                self.error(key_name(key), f"is not a field of the studio's job spec{hint}")
        self.job()
        self.base_model()
        method = self.customization()
        backend = self.policy.default_backend
        resources = self.resources()
        self.datasets()
        self.artifacts(backend)
        self.tuning(resources, backend, method)
        self.callbacks()

    def job(self) -> None:
        value = self.body.get("job_id")
        text = self.text(value, "job_id", required=True, limit=64)
        if text is not None and not JOB_ID_RE.match(text):
            self.error("job_id", "must be the studio's run id: 1-64 letters, digits, '-' or '_' (a UUID)")
            return
        if text is not None:
            self.job_id = text
            self.old["labels"] = {LABEL: text}

    def base_model(self) -> None:
        base = self.obj(self.body.get("base_model"), "base_model", BASE_MODEL_KEYS, "base_model")
        if base is None:
            if "base_model" not in self.body or self.body["base_model"] is None:
                self.error("base_model", "is required: base_model.model_name names the model to fine-tune")
            return
        provider = base.get("provider")
        if provider == "nemo":
            self.error("base_model.provider", "nemo isn't supported: the platform trains models in the Hugging Face format (huggingface or meta)")
        elif provider is not None:
            self.choice(provider, "base_model.provider", PROVIDERS)
        name = self.text(base.get("model_name"), "base_model.model_name")
        weights = self.uri(base.get("weights_url"), "base_model.weights_url")
        revision = self.text(base.get("revision"), "base_model.revision", limit=256)
        if weights is not None:
            # The weights are loaded from there; the name is kept with the job so the studio's run shows it.
            self.flag("model_id", weights, "base_model.weights_url")
            if name is not None and check_text(name, "base_model.model_name", [], limit=256):
                self.old.setdefault("labels", {})["studio_model_name"] = name
            if revision not in (None, "main"):
                self.error("base_model.revision", "names a revision of a hub model; base_model.weights_url is a folder of weights: drop one of them")
        elif name is not None:
            self.flag("model_id", name, "base_model.model_name")
            # `main` is the hub's default (and the studio's): not rendered, so a model folder (the hub id
            # may name one) is not refused for having a revision.
            self.flag("model_revision", None if revision == "main" else revision, "base_model.revision")
        elif base.get("model_name") is None and base.get("weights_url") is None:
            self.error("base_model.model_name", "is required (or base_model.weights_url)")
        token = base.get("auth_token")
        if token is not None:
            token = self.text(token, "base_model.auth_token", limit=MAX_SECRET_CHARS)
            if token is not None:
                self.old["hf_token"] = token
                self.paths["hf_token"] = "base_model.auth_token"

    def customization(self) -> str:
        """The fine-tuning fields; returns the effective method (the trainer's default when unset)."""
        cust = self.obj(self.body.get("customization"), "customization", CUSTOMIZATION_KEYS, "customization") or {}
        default = str(trainer_flags.BY_NAME["method"].default)
        raw = cust.get("method")
        if raw == "new-transformer":
            self.error("customization.method", "new-transformer isn't supported: the platform fine-tunes an existing base model (qlora, lora or full)")
            method = None
        else:
            method = self.choice(raw, "customization.method", METHODS) if raw is not None else None
        self.flag("method", method, "customization.method")
        effective = method or (default if raw is None else None)
        lora = effective in ("lora", "qlora")
        if cust.get("rank") is not None and effective == "full":
            self.error("customization.rank", "full fine-tuning has no LoRA rank: drop rank, or use method lora or qlora")
        elif effective != "full":
            self.flag("lora_rank", cust.get("rank"), "customization.rank")
        self.flag("lora_target_modules", cust.get("target_modules"), "customization.target_modules")
        self.flag("lora_alpha", cust.get("lora_alpha"), "customization.lora_alpha")
        self.flag("lora_dropout", cust.get("lora_dropout"), "customization.lora_dropout")
        self.flag("trainable_layers", cust.get("trainable_layers"), "customization.trainable_layers")
        precision = cust.get("precision")
        if precision is not None:
            chosen = self.choice(precision, "customization.precision", list(PRECISIONS))
            if chosen is not None and PRECISIONS[chosen] is not None:
                self.flag(PRECISIONS[chosen], True, "customization.precision")
        qlora = self.obj(cust.get("qlora"), "customization.qlora", list(QLORA_KEYS), "customization.qlora")
        if qlora and effective is not None and effective != "qlora":
            self.error("customization.qlora", f"applies only to method qlora (method is {effective}): drop it or use qlora")
        elif qlora:
            for key, flag in QLORA_KEYS.items():
                self.flag(flag, qlora.get(key), f"customization.qlora.{key}")
        peft = self.obj(cust.get("peft"), "customization.peft", PEFT_KEYS, "customization.peft")
        if peft:
            self.peft(peft, cust, effective, lora)
        return effective or default

    def peft(self, peft: dict[str, Any], cust: dict[str, Any], method: str | None, lora: bool) -> None:
        use = peft.get("use")
        if use is not None and not isinstance(use, bool):
            self.error("customization.peft.use", f"must be a boolean, got {_type_name(use)}")
        elif use is False and lora:
            self.error("customization.peft.use", f"false contradicts customization.method {method}, a PEFT (LoRA) method: set peft.use true, or method full")
        elif use is True and method == "full":
            self.error("customization.peft.use", "true contradicts customization.method full, which trains every weight (no adapter): set peft.use false, or method lora or qlora")
        config = self.obj(peft.get("config"), "customization.peft.config", list(PEFT_CONFIG_KEYS), "our LoRA config (customization.peft.config)")
        if not config:
            return
        same_as = {"r": "rank", "lora_alpha": "lora_alpha", "lora_dropout": "lora_dropout", "target_modules": "target_modules"}
        for key, value in config.items():
            path = f"customization.peft.config.{key}"
            if value is None:
                continue
            if key == "task_type":
                if value != "CAUSAL_LM":
                    self.error(path, "must be CAUSAL_LM: the platform fine-tunes causal language models")
                continue
            if method == "full":
                self.error(path, "configures LoRA, and customization.method is full: drop it, or use method lora or qlora")
                continue
            twin = same_as.get(key)
            if twin is not None and cust.get(twin) is not None:
                if not _same(cust[twin], value):
                    self.error(path, f"must agree with customization.{twin} ({json.dumps(cust[twin])}), got {json.dumps(value)}: give one")
                continue  # the customization field is already set
            flag = PEFT_CONFIG_KEYS[key]
            assert flag is not None
            self.flag(flag, value, path)

    def resources(self) -> Resources:
        value = self.body.get("resources")
        if value is None:
            return Resources()
        self.old["resources"] = value  # as is: its own checks name resources.<key>
        return parse_resources(value, self.policy.gpu_types, [])  # errors reported by the old normaliser

    def datasets(self) -> None:
        value = self.body.get("datasets")
        if value is None:
            self.error("datasets", "is required: at least one {source, format} to train on")
            self.old["dataset_file"] = [_PLACEHOLDER_SOURCE]
            return
        if not isinstance(value, list) or not value:
            self.error("datasets", "must be a list of at least one {source, format}" if isinstance(value, list) else f"must be a list, got {_type_name(value)}")
            self.old["dataset_file"] = [_PLACEHOLDER_SOURCE]
            return
        if len(value) > MAX_DATASETS:
            self.error("datasets", f"must have at most {MAX_DATASETS} items")
            self.old["dataset_file"] = [_PLACEHOLDER_SOURCE]
            return
        sources: list[str] = []
        formats: list[str | None] = []  # None: auto
        creds: list[dict[str, str] | None] = []
        self.paths["dataset_file"] = "datasets"
        for i, item in enumerate(value):
            path = f"datasets[{i}]"
            self.paths[f"dataset_file[{i}]"] = f"{path}.source"
            entry = self.obj(item, path, DATASET_KEYS, "a dataset")
            if entry is None:
                if item is None:
                    self.error(path, "must be an object {source, format}")
                sources.append(_PLACEHOLDER_SOURCE)
                formats.append(None)
                creds.append(None)
                continue
            source = self.text(entry.get("source"), f"{path}.source", required=True)
            sources.append(source if source is not None else _PLACEHOLDER_SOURCE)
            fmt = self.choice(entry.get("format"), f"{path}.format", FORMATS) if entry.get("format") is not None else "auto"
            formats.append(None if fmt in (None, "auto") else fmt)
            creds.append(self.auth(entry.get("auth"), f"{path}.auth", [source] if source is not None else []))
        self.old["dataset_file"] = sources
        self.file_format(sources, formats)
        if any(c is not None for c in creds):
            self.dataset_creds = creds

    def file_format(self, sources: list[str], formats: list[str | None]) -> None:
        """One `--dataset_file_format` for every source (the trainer's rule): see the module docstring."""
        explicit = {f for f in formats if f is not None}
        if not explicit:
            return
        by_ext = [EXTENSION_FORMATS.get(posixpath.splitext(s.rstrip("/"))[1].lower()) for s in sources]
        if len(explicit) == 1:
            (only,) = explicit
            if all(f is not None or ext in (None, only) for f, ext in zip(formats, by_ext)):
                self.flag("dataset_file_format", only, f"datasets[{formats.index(only)}].format")
                return
        if all(f is None or f == ext for f, ext in zip(formats, by_ext)):
            return  # auto: each source is read by its own extension, which is what each one asked for
        firsts = ", ".join(f"datasets[{i}] is {f or 'auto'}" for i, f in enumerate(formats))
        for i, (f, ext) in enumerate(zip(formats, by_ext)):
            if f is not None and f != ext:
                self.error(
                    f"datasets[{i}].format",
                    f"the trainer reads every source in one format unless each goes by its file extension ({firsts}): "
                    "give every dataset the same format, or use auto with .jsonl, .csv or .parquet names",
                )

    def auth(self, value: Any, path: str, destinations: list[str]) -> dict[str, str] | None:
        """Per-source AWS credentials: keys (+ session token, region) or a role to assume (+ region).
        The values are secrets: no message shows one."""
        if value is None:
            return None
        keys = KEY_AUTH + ("role_arn",)
        auth = self.obj(value, path, keys, "auth")
        if auth is None:
            return None
        before = len(self.errors)
        non_s3 = [d for d in destinations if not d.startswith("s3://")]
        if non_s3:
            self.error(path, "applies to s3:// locations only (credentials are AWS ones)")
        out: dict[str, str] = {}
        for key, item in auth.items():
            text = self.text(item, f"{path}.{key}", required=True, limit=MAX_SECRET_CHARS)
            if text is not None:
                out[key] = text
        if "role_arn" in auth:
            mixed = [k for k in auth if k not in ROLE_AUTH]
            if mixed:
                self.error(path, f"gives role_arn and {', '.join(mixed)}: give keys (aws_access_key_id, aws_secret_access_key) or a role_arn, not both")
            elif "role_arn" in out and not ROLE_ARN_RE.match(out["role_arn"]):
                self.error(f"{path}.role_arn", "must be an IAM role ARN: arn:aws:iam::<12-digit account>:role/<name>")
        else:
            for key in ("aws_access_key_id", "aws_secret_access_key"):
                if key not in auth:
                    self.error(f"{path}.{key}", "is required (or give role_arn instead of keys)")
        if "aws_region" in out and not REGION_RE.match(out["aws_region"]):
            self.error(f"{path}.aws_region", "must be an AWS region name such as us-east-1")
        return out if len(self.errors) == before else None

    def artifacts(self, backend: Backend) -> None:
        arts = self.obj(self.body.get("artifacts"), "artifacts", ARTIFACT_KEYS, "artifacts")
        if arts is None:
            if self.body.get("artifacts") is None:
                self.error("artifacts", "is required: artifacts.output_uri is where the trained model goes")
            arts = {}
        output = self.uri(arts.get("output_uri"), "artifacts.output_uri", required="artifacts" in self.body and isinstance(self.body["artifacts"], dict))
        self.flag("upload_output_to", output, "artifacts.output_uri")
        log_uri = self.uri(arts.get("log_uri"), "artifacts.log_uri")
        self.flag("log_uri", log_uri, "artifacts.log_uri")
        self.stream_url = arts.get("status_stream_url")
        artifact_creds = self.auth(arts.get("auth"), "artifacts.auth", [u for u in (output, log_uri) if u is not None])
        dataset_creds = self.dataset_creds
        if dataset_creds is not None or artifact_creds is not None:
            datasets_count = len(self.old.get("dataset_file") or [])
            doc = {"datasets": dataset_creds or [None] * datasets_count, "artifacts": artifact_creds}
            where = "artifacts.auth" if dataset_creds is None else f"datasets[{next(i for i, c in enumerate(dataset_creds) if c)}].auth"
            self.platform_env[trainer_flags.CREDENTIALS_ENV] = (json.dumps(doc, separators=(",", ":"), sort_keys=True), where)
        # The platform picks the output folder: one per studio run, in a place the backend's rules allow.
        root = self.policy.studio_output_roots.get(backend)
        if root is None and backend is Backend.LOCAL and self.policy.local_roots:
            root = posixpath.join(self.policy.local_roots[0], "studio")
        if root is None:
            self.error("backend", f"the {backend.value} backend has no output folder for the studio's runs configured")
            root = "/tmp/studio"
        self.old["output_dir"] = posixpath.join(root, self.job_id or "invalid-job-id")
        self.paths["output_dir"] = "output_dir"

    def tuning(self, resources: Resources, backend: Backend, method: str) -> None:
        value = self.body.get("tuning_parameters")
        if value is None:
            return
        if not isinstance(value, dict):
            self.error("tuning_parameters", f"must be an object, got {_type_name(value)}")
            return
        names = [*TUNING_FLAGS, *TUNING_ALIASES, "batch_size"]
        for key, item in value.items():
            path = f"tuning_parameters.{key_name(key)}"
            if not isinstance(key, str) or not KEY_RE.match(key):
                self.error(path, f"is not a valid parameter name: names are snake_case{suggest(str(key), names)}")
            elif key in ELSEWHERE:
                self.error(path, f"'{key}' is not a tuning parameter{_elsewhere(key, ': set {}')}")
            elif key == "batch_size":
                continue
            elif key in TUNING_ALIASES:
                flag = TUNING_ALIASES[key]
                if flag in value and value[flag] is not None and item is not None and not _same(value[flag], item):
                    self.error(path, f"must agree with tuning_parameters.{flag}: give one")
                else:
                    self.flag(flag, item, path)
            elif key in trainer_flags.BY_NAME:
                if key in self.old:  # an alias set it already (and agreed)
                    continue
                self.flag(key, item, path)
            else:
                self.error(path, f"unknown trainer flag '{key}'{suggest(key, names)}")
        if "batch_size" in value and value["batch_size"] is not None:
            self.batch(value, resources, backend)

    def batch(self, tuning: dict[str, Any], resources: Resources, backend: Backend) -> None:
        """The studio's global batch size, split into per-device batch x accumulation x ranks."""
        path = "tuning_parameters.batch_size"
        size = tuning["batch_size"]
        if isinstance(size, float) and size.is_integer():
            size = int(size)  # JavaScript has one number type
        if isinstance(size, bool) or not isinstance(size, int):
            self.error(path, f"must be an integer, got {_type_name(size)}")
            return
        if not 1 <= size <= MAX_BATCH_SIZE:
            self.error(path, f"must be between 1 and {MAX_BATCH_SIZE}, got {size}")
            return
        per_node, nodes = data_parallel_ranks(resources, backend, self.policy)
        ranks = per_node * nodes
        how = f"{ranks} data-parallel rank{'s' if ranks != 1 else ''} ({per_node} per node x {nodes} node{'s' if nodes != 1 else ''})"
        if size % ranks:
            self.error(path, f"must be a multiple of the {how}: the global batch is split evenly over them, and {size} isn't")
            return
        per_rank = size // ranks

        def given(name: str) -> int | None:
            item = tuning.get(name)
            return item if isinstance(item, int) and not isinstance(item, bool) and item >= 1 else None

        device, accumulation = given("per_device_train_batch_size"), given("gradient_accumulation_steps")
        if device is not None and accumulation is not None:
            if device * accumulation != per_rank:
                self.error(path, f"must equal per_device_train_batch_size x gradient_accumulation_steps x {how} = {device * accumulation * ranks}, got {size}")
            return
        if device is not None or accumulation is not None:
            known = device if device is not None else accumulation
            assert known is not None
            if per_rank % known:
                other = "per_device_train_batch_size" if device is not None else "gradient_accumulation_steps"
                self.error(path, f"must be a multiple of {other} x {how} = {known * ranks}, got {size}")
                return
            if device is None:
                self.flag("per_device_train_batch_size", per_rank // known, path)
            else:
                self.flag("gradient_accumulation_steps", per_rank // known, path)
            return
        length = self.old.get("max_length")
        if not isinstance(length, int) or isinstance(length, bool) or length < 1:
            length = int(trainer_flags.BY_NAME["max_length"].default)
        fits = [c for c in PER_DEVICE_CHOICES if per_rank % c == 0 and c * length <= MAX_TOKENS_PER_DEVICE] or [1]
        self.flag("per_device_train_batch_size", fits[0], path)
        self.flag("gradient_accumulation_steps", per_rank // fits[0], path)

    def callbacks(self) -> None:
        cbs = self.obj(self.body.get("callbacks"), "callbacks", CALLBACK_KEYS, "callbacks") or {}
        url_path = "callbacks.webhook_url"
        url = cbs.get("webhook_url")
        stream = self.stream_url
        if stream is not None:
            if url is not None and stream != url:
                self.error("artifacts.status_stream_url", "must be the same URL as callbacks.webhook_url (the studio sends one URL for both)")
                return
            if url is None:
                url, url_path = stream, "artifacts.status_stream_url"
        header = cbs.get("auth_header")
        if header is not None:
            header = self.text(header, "callbacks.auth_header", limit=MAX_SECRET_CHARS)
            if header is None:
                return
        if url is None:
            if header is not None:
                self.error(url_path, "is required with callbacks.auth_header")
            return
        if not isinstance(url, str):
            self.error(url_path, f"must be a string, got {_type_name(url)}")
            return
        _, problem = ssrf.parse_target(url, self.policy.webhook_allowed_hosts)
        if problem is None and self.policy.check_webhook is not None:
            problem = self.policy.check_webhook(url)
        if problem is not None:
            self.error(url_path, problem)
            return
        if self.policy.seal is None:
            self.error("callbacks", "status callbacks need WEBHOOK_SIGNING_SECRET to be set on the platform (it keeps callbacks.auth_header sealed)")
            return
        self.callback = Callback(url=url, sealed_authorization=self.policy.seal(header) if header is not None else None)


def _elsewhere(key: str, template: str) -> str:
    """Where the studio's spec sets `key` ("" when it has no place), as `template` words it."""
    where = ELSEWHERE.get(key)
    if where is None:
        return ""
    return f": {where.removeprefix('nothing: ')}" if where.startswith("nothing: ") else template.format(where)


def _same(a: Any, b: Any) -> bool:
    return a == b and isinstance(a, bool) == isinstance(b, bool)


def _translate(err: FieldError, paths: dict[str, str]) -> FieldError:
    """An old-shape error's path, as the studio's: the longest old path that is it or contains it."""
    for old in sorted(paths, key=len, reverse=True):
        field = err.field
        if field == old or field.startswith((old + ".", old + "[")):
            return FieldError(paths[old] + field[len(old):], err.message)
    return err  # resources.*, backend: the same path in both shapes


def _related(a: str, b: str) -> bool:
    """One path is the other or inside it (`datasets` and `datasets[0].source`)."""
    return a == b or a.startswith((b + ".", b + "[")) or b.startswith((a + ".", a + "["))


def normalise_studio_request(body: dict[str, Any], policy: RequestPolicy) -> NormalisedRequest:
    """Validate the studio's job spec and normalise it. Raises ValidationFailed naming studio paths."""
    request_hash = request_fingerprint(body)  # the studio body, secrets included (hashed): same job_id, other body -> 409
    tr = _Translation(body, policy)
    tr.run()
    try:
        req = normalise_request(tr.old, policy, platform_env=tr.platform_env)
    except ValidationFailed as exc:
        theirs = [_translate(e, tr.paths) for e in exc.errors]
        # An old-shape error on a field already refused here (a placeholder source) says nothing new.
        errors = tr.errors + [e for e in theirs if not any(_related(e.field, mine.field) for mine in tr.errors)]
        seen: set[tuple[str, str]] = set()
        raise ValidationFailed([e for e in errors if not ((e.field, e.message) in seen or seen.add((e.field, e.message)))]) from None
    if tr.errors:
        raise ValidationFailed(tr.errors)
    assert tr.job_id is not None
    return dataclasses.replace(
        req, request_hash=request_hash, idempotency_key=idempotency_key_for(tr.job_id), callback=tr.callback
    )
