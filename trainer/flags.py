"""The trainer's flags: the single table that `train.py` builds its parser from and the api validates against.

This module is owned by the trainer and must stay importable without torch (the api and the launcher
import it to validate and render requests). Every flag has one canonical snake_case name; the kebab-case
spelling is accepted by the parser as an alias, because the old API rendered kebab-case flags.

Booleans: a flag whose default is off is a bare switch (`--packing`); a flag whose default is on
(`gradient_checkpointing`) is switched off with `--no_<name>` (and may be switched on explicitly with
`--<name>`). Lists (`lora_target_modules`) are given by repeating the flag.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

FlagType = Literal["str", "int", "float", "bool", "choice", "list"]

# Every integer flag fits a signed 64-bit integer (what torch, numpy and the JSON readers on the way
# can hold); a flag's own range narrows it.
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
SEED_MAX = 2**32 - 1  # numpy's seed range (transformers' set_seed seeds numpy too)


@dataclass(frozen=True)
class Flag:
    name: str
    type: FlagType
    default: Any
    help: str
    choices: tuple[str, ...] = ()
    required: bool = False
    # Metavar shown in --help and in error messages.
    metavar: str | None = None
    aliases: tuple[str, ...] = field(default=())
    # Range of an int or float flag (ints default to the int64 range; floats must also be finite).
    # `*_exclusive` leaves the bound itself out; `also` lists values allowed outside the range
    # (max_steps' -1 = "run the epochs").
    minimum: float | None = None
    maximum: float | None = None
    minimum_exclusive: bool = False
    maximum_exclusive: bool = False
    also: tuple[Any, ...] = ()

    @property
    def cli(self) -> str:
        return f"--{self.name}"

    @property
    def kebab(self) -> str:
        return f"--{self.name.replace('_', '-')}"

    def bounds(self) -> tuple[float | None, float | None]:
        """(minimum, maximum) of a number flag, the int64 range filled in for ints."""
        low, high = self.minimum, self.maximum
        if self.type == "int":
            low = INT64_MIN if low is None else max(low, INT64_MIN)
            high = INT64_MAX if high is None else min(high, INT64_MAX)
        return low, high

    def range_problem(self, value: int | float) -> str | None:
        """Why a number is outside this flag's range (a phrase for "<flag> ..."), or None. The one
        check both the api (`shared.domain.request`) and the trainer's parser apply."""
        if self.type not in ("int", "float"):
            return None
        if isinstance(value, float) and not math.isfinite(value):
            return "must be a finite number"
        if value in self.also and not isinstance(value, bool):
            return None
        low, high = self.bounds()
        below = low is not None and (value <= low if self.minimum_exclusive else value < low)
        above = high is not None and (value >= high if self.maximum_exclusive else value > high)
        if not (below or above):
            return None
        parts = []
        if low is not None:
            parts.append(f"{'greater than' if self.minimum_exclusive else 'at least'} {_number(low)}")
        if high is not None:
            parts.append(f"{'less than' if self.maximum_exclusive else 'at most'} {_number(high)}")
        allowed = " and ".join(parts)
        if self.also:
            allowed = f"{' or '.join(_number(v) for v in self.also)}, or {allowed}"
        return f"must be {allowed}"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 2**64 else repr(value)


DATASET_FORMATS = ("auto", "messages", "prompt_completion", "text", "aml")
DATASET_FILE_FORMATS = ("auto", "jsonl", "json", "csv", "parquet", "arrow")
METHODS = ("qlora", "lora", "full")
LORA_BIASES = ("none", "all", "lora_only")
BNB_QUANT_TYPES = ("nf4", "fp4")
BNB_COMPUTE_DTYPES = ("auto", "bfloat16", "float16", "float32")

# The secret environment variable that carries per-source credentials to the trainer (never a flag): JSON
# {"datasets": [null | creds, ...] (one per --dataset_file, in order), "artifacts": null | creds}, where
# creds is {"aws_access_key_id", "aws_secret_access_key", "aws_session_token"?, "aws_region"?} or
# {"role_arn", "aws_region"?} (assumed with the trainer's own identity). The artifacts' creds write
# --upload_output_to and --log_uri. Its prefix is reserved: a request's `env` can't set it.
CREDENTIALS_ENV = "TRAINING_PLATFORM_CREDENTIALS"
LR_SCHEDULERS = (
    "linear",
    "cosine",
    "cosine_with_restarts",
    "polynomial",
    "constant",
    "constant_with_warmup",
    "inverse_sqrt",
    "reduce_lr_on_plateau",
    "cosine_with_min_lr",
    "warmup_stable_decay",
)

FLAGS: tuple[Flag, ...] = (
    Flag("method", "choice", "qlora", "Fine-tuning method.", choices=METHODS),
    Flag(
        "model_id",
        "str",
        "meta-llama/Llama-3.2-3B-Instruct",
        "Base model: a hub id, a local folder (needs no HF_TOKEN), or a gs:// / s3:// folder (downloaded once into a local cache).",
    ),
    Flag("model_revision", "str", None, "A branch, tag or commit of the hub repository --model_id names."),
    Flag("trust_remote_code", "bool", False, "Run the model repository's own Python code (off unless asked for)."),
    Flag(
        "dataset_file",
        "list",
        None,
        "Training data: a file, or a folder / prefix of shards, local, gs:// or s3://; repeat the flag for several sources (concatenated in order).",
        required=True,
    ),
    Flag(
        "dataset_file_format",
        "choice",
        "auto",
        "File format of every source; auto goes by the extension (a save_to_disk folder is arrow).",
        choices=DATASET_FILE_FORMATS,
    ),
    Flag("dataset_format", "choice", "auto", "Row format; auto detects it from the first row.", choices=DATASET_FORMATS),
    Flag("val_split_size", "float", 0.1, "Fraction of rows held out for evaluation (0 disables evaluation).", minimum=0, maximum=1, maximum_exclusive=True),
    Flag("output_dir", "str", "./outputs", "Where the adapter (or model), tokenizer and run_summary.json go."),
    Flag("upload_output_to", "str", None, "gs:// or s3:// prefix the output folder is uploaded to at the end."),
    Flag("max_length", "int", 512, "Maximum sequence length in tokens.", minimum=1),
    Flag("packing", "bool", False, "Pack several short examples into one sequence."),
    Flag("per_device_train_batch_size", "int", 1, "Training batch size per device.", minimum=1),
    Flag("per_device_eval_batch_size", "int", 1, "Evaluation batch size per device.", minimum=1),
    Flag("gradient_accumulation_steps", "int", 16, "Micro-batches accumulated per optimiser step.", minimum=1),
    Flag("num_train_epochs", "float", 2.0, "Epochs over the training split.", minimum=0),
    Flag("max_steps", "int", -1, "Stop after this many optimiser steps (-1: run the epochs).", minimum=1, also=(-1,)),
    Flag("learning_rate", "float", 2e-4, "Peak learning rate.", minimum=0, minimum_exclusive=True),
    Flag("lr_scheduler_type", "choice", "cosine", "Learning-rate schedule.", choices=LR_SCHEDULERS),
    Flag("warmup_ratio", "float", 0.03, "Fraction of the steps used for warm-up.", minimum=0, maximum=1, maximum_exclusive=True),
    Flag("logging_steps", "int", 20, "Log (and print PROGRESS) every N optimiser steps.", minimum=1),
    Flag("eval_steps", "int", 500, "Evaluate every N optimiser steps.", minimum=1),
    Flag("save_steps", "int", 500, "Checkpoint every N optimiser steps.", minimum=1),
    Flag("gradient_checkpointing", "bool", True, "Trade compute for memory (--no_gradient_checkpointing turns it off)."),
    Flag("bf16", "bool", False, "Train in bfloat16 (needs hardware support)."),
    Flag("lora_rank", "int", 32, "LoRA rank r.", minimum=1),
    Flag("lora_alpha", "int", 16, "LoRA alpha.", minimum=1),
    Flag("lora_dropout", "float", 0.05, "LoRA dropout.", minimum=0, maximum=1, maximum_exclusive=True),
    Flag(
        "lora_target_modules",
        "list",
        None,
        "Module names LoRA adapts (repeat the flag); default: all linear layers.",
    ),
    Flag("lora_bias", "choice", "none", "Which biases LoRA trains (peft's `bias`).", choices=LORA_BIASES),
    Flag("use_rslora", "bool", False, "Rank-stabilised LoRA: scale by alpha/sqrt(r) instead of alpha/r."),
    Flag(
        "trainable_layers",
        "list",
        None,
        "Module-name prefixes (repeat the flag), e.g. model.layers.0: LoRA adapts only modules under them, full "
        "fine-tuning unfreezes only their parameters (the rest stays frozen); default: every layer.",
    ),
    Flag("fp16", "bool", False, "Train in float16 mixed precision (a CUDA GPU)."),
    Flag("bnb_4bit_quant_type", "choice", "nf4", "QLoRA: the 4-bit quantisation type.", choices=BNB_QUANT_TYPES),
    Flag("bnb_4bit_use_double_quant", "bool", True, "QLoRA: quantise the quantisation constants too."),
    Flag(
        "bnb_4bit_compute_dtype",
        "choice",
        "auto",
        "QLoRA: the compute dtype of the 4-bit layers; auto: bfloat16 where supported, else float32.",
        choices=BNB_COMPUTE_DTYPES,
    ),
    Flag(
        "log_uri",
        "str",
        None,
        "gs:// or s3:// folder (or a local one) the trainer writes its full log (train.log) and run_summary.json to: "
        "at the end, and every --log_upload_interval_seconds while it runs.",
    ),
    Flag("log_upload_interval_seconds", "int", 300, "How often the log is written to --log_uri while training runs.", minimum=5),
    Flag("seed", "int", 42, "Random seed.", minimum=0, maximum=SEED_MAX),
    Flag(
        "resume_from_checkpoint",
        "str",
        None,
        "A checkpoint folder, or 'auto' for the newest complete one (local or under upload_output_to).",
    ),
    Flag("merge_adapter", "bool", False, "Also save the base model merged with the adapter (in bf16, never 4-bit)."),
    Flag("drop_long_examples", "bool", False, "Drop rows longer than --max_length instead of truncating them."),
    Flag("dry_run", "bool", False, "Check the data and print the preflight report (tokenizer only, no model weights), then exit 0."),
)

BY_NAME: dict[str, Flag] = {f.name: f for f in FLAGS}


def get(name: str) -> Flag | None:
    return BY_NAME.get(name)


def range_problems(values: dict[str, Any]) -> list[str]:
    """`--<flag> must be ...` for each number flag whose value is out of its range: the parser refuses
    these already; this is for values that did not come through it (a Namespace built in code)."""
    problems = []
    for flag in FLAGS:
        value = values.get(flag.name)
        if flag.type in ("int", "float") and isinstance(value, (int, float)) and not isinstance(value, bool):
            problem = flag.range_problem(value)
            if problem:
                problems.append(f"{flag.cli} {problem}")
    return problems


def _bounded(flag: Flag) -> Callable[[str], int | float]:
    """argparse type of a number flag: parses, then applies `Flag.range_problem` (exit 2 naming it)."""
    convert = int if flag.type == "int" else float

    def parse(text: str) -> int | float:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid {flag.type} value: {text!r}") from None
        problem = flag.range_problem(value)
        if problem:
            shown = text if len(text) <= 40 else f"{text[:20]}...({len(text)} characters)"
            raise argparse.ArgumentTypeError(f"{problem}, got {shown}")
        return value

    parse.__name__ = flag.type  # argparse names the type in its own messages
    return parse


def build_parser(prog: str = "train.py") -> argparse.ArgumentParser:
    """The trainer's argparse parser, built from FLAGS (snake_case names with kebab-case aliases)."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Fine-tune a causal language model with LoRA, QLoRA or full fine-tuning.",
        allow_abbrev=False,
    )
    for flag in FLAGS:
        names = [flag.cli]
        if flag.kebab != flag.cli:
            names.append(flag.kebab)
        if flag.type == "bool":
            parser.add_argument(*names, dest=flag.name, action="store_true", default=flag.default, help=flag.help)
            no_names = [f"--no_{flag.name}"]
            if "_" in flag.name:
                no_names.append(f"--no-{flag.name.replace('_', '-')}")
            parser.add_argument(*no_names, dest=flag.name, action="store_false", help=argparse.SUPPRESS)
        elif flag.type == "list":
            parser.add_argument(*names, dest=flag.name, action="append", default=flag.default, help=flag.help, required=flag.required)
        else:
            kwargs: dict[str, Any] = {"dest": flag.name, "default": flag.default, "help": flag.help}
            if flag.type in ("int", "float"):
                kwargs["type"] = _bounded(flag)
            elif flag.type == "choice":
                kwargs["choices"] = flag.choices
            if flag.required:
                kwargs["required"] = True
            parser.add_argument(*names, **kwargs)
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return build_parser().parse_args(argv)
