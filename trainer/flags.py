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
from dataclasses import dataclass, field
from typing import Any, Literal

FlagType = Literal["str", "int", "float", "bool", "choice", "list"]


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

    @property
    def cli(self) -> str:
        return f"--{self.name}"

    @property
    def kebab(self) -> str:
        return f"--{self.name.replace('_', '-')}"


DATASET_FORMATS = ("auto", "messages", "prompt_completion", "text", "aml")
METHODS = ("qlora", "lora", "full")
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
        "Base model: a hub id or a local folder (a local folder needs no HF_TOKEN).",
    ),
    Flag(
        "dataset_file",
        "str",
        None,
        "JSONL training data: a local path, gs:// or s3:// URI.",
        required=True,
    ),
    Flag("dataset_format", "choice", "auto", "Row format; auto detects it from the first row.", choices=DATASET_FORMATS),
    Flag("val_split_size", "float", 0.1, "Fraction of rows held out for evaluation (0 disables evaluation)."),
    Flag("output_dir", "str", "./outputs", "Where the adapter (or model), tokenizer and run_summary.json go."),
    Flag("upload_output_to", "str", None, "gs:// or s3:// prefix the output folder is uploaded to at the end."),
    Flag("max_length", "int", 512, "Maximum sequence length in tokens."),
    Flag("packing", "bool", False, "Pack several short examples into one sequence."),
    Flag("per_device_train_batch_size", "int", 1, "Training batch size per device."),
    Flag("per_device_eval_batch_size", "int", 1, "Evaluation batch size per device."),
    Flag("gradient_accumulation_steps", "int", 16, "Micro-batches accumulated per optimiser step."),
    Flag("num_train_epochs", "float", 2.0, "Epochs over the training split."),
    Flag("max_steps", "int", -1, "Stop after this many optimiser steps (-1: run the epochs)."),
    Flag("learning_rate", "float", 2e-4, "Peak learning rate."),
    Flag("lr_scheduler_type", "choice", "cosine", "Learning-rate schedule.", choices=LR_SCHEDULERS),
    Flag("warmup_ratio", "float", 0.03, "Fraction of the steps used for warm-up."),
    Flag("logging_steps", "int", 20, "Log (and print PROGRESS) every N optimiser steps."),
    Flag("eval_steps", "int", 500, "Evaluate every N optimiser steps."),
    Flag("save_steps", "int", 500, "Checkpoint every N optimiser steps."),
    Flag("gradient_checkpointing", "bool", True, "Trade compute for memory (--no_gradient_checkpointing turns it off)."),
    Flag("bf16", "bool", False, "Train in bfloat16 (needs hardware support)."),
    Flag("lora_rank", "int", 32, "LoRA rank r."),
    Flag("lora_alpha", "int", 16, "LoRA alpha."),
    Flag("lora_dropout", "float", 0.05, "LoRA dropout."),
    Flag(
        "lora_target_modules",
        "list",
        None,
        "Module names LoRA adapts (repeat the flag); default: all linear layers.",
    ),
    Flag("seed", "int", 42, "Random seed."),
    Flag(
        "resume_from_checkpoint",
        "str",
        None,
        "A checkpoint folder, or 'auto' for the newest complete one (local or under upload_output_to).",
    ),
    Flag("merge_adapter", "bool", False, "Also save the base model merged with the adapter (in bf16, never 4-bit)."),
)

BY_NAME: dict[str, Flag] = {f.name: f for f in FLAGS}


def get(name: str) -> Flag | None:
    return BY_NAME.get(name)


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
            parser.add_argument(*names, dest=flag.name, action="append", default=flag.default, help=flag.help)
        else:
            kwargs: dict[str, Any] = {"dest": flag.name, "default": flag.default, "help": flag.help}
            if flag.type == "int":
                kwargs["type"] = int
            elif flag.type == "float":
                kwargs["type"] = float
            elif flag.type == "choice":
                kwargs["choices"] = flag.choices
            if flag.required:
                kwargs["required"] = True
            parser.add_argument(*names, **kwargs)
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return build_parser().parse_args(argv)
