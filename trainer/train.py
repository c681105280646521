"""The trainer: what the Kubernetes Job, the Vertex CustomJob and the local backend execute.

    python -m trainer.train --model_id M --dataset_file data.jsonl --output_dir out --method lora
    python trainer/train.py ...            (the same; the repo root is put on sys.path)
    python -m trainer.launch ...           (several processes: one per GPU, or CPU processes on gloo)

Under torch's elastic launcher (`trainer/launch.py`) each process is one rank: LoRA and QLoRA train
data-parallel (DDP), `--method full` is sharded with FSDP (full shard, one unit per decoder layer). Rank
0 alone prints PROGRESS, saves the final adapter or model, writes run_summary.json and uploads; every
rank agrees on the step a SIGTERM stops at, so the checkpoint it leaves holds every rank's part.

Order of work, cheapest failure first: parse the flags (from `trainer.flags`, the table the api
validates against) → check their values → read and check the whole dataset → check the machine can do
what was asked → load tokenizer and model → train with TRL's SFTTrainer → save adapter (or model),
tokenizer and run_summary.json → optionally merge → optionally upload. Progress goes to stdout as
`PROGRESS {json}` lines (see `trainer.progress` and trainer/README.md).

Exit codes: 0 success; 2 bad input (flags, dataset, a choice this machine cannot run); 1 runtime
failure; 143 preempted (SIGTERM: a checkpoint was saved, `--resume_from_checkpoint auto` continues).
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `trainer.*` importable from the repo root
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from trainer import credentials, data, flags, preflight, progress, run_log, storage  # noqa: E402  (after the sys.path fix above)

EXIT_OK = 0
EXIT_RUNTIME = 1
EXIT_BAD_INPUT = 2
EXIT_PREEMPTED = 143  # 128 + SIGTERM, what Kubernetes and Vertex report for a terminated container
MERGED_DIR = "merged"
SUMMARY_FILE = "run_summary.json"


class BadInput(Exception):
    """The request cannot run as given; the message says what to change."""


class Preempted(Exception):
    """SIGTERM arrived outside the training loop (nothing to checkpoint yet, or already saved)."""


# ---- checks that need no torch --------------------------------------------------------------------


def check_args(args) -> list[str]:
    """Problems with flag values that argparse's types cannot catch, each saying what to change."""
    # Each flag's range lives in its row of trainer.flags (the api applies the same one).
    problems = flags.range_problems(vars(args))
    if args.max_steps == -1 and args.num_train_epochs <= 0:
        problems.append("--num_train_epochs must be positive")
    if args.merge_adapter and args.method == "full":
        problems.append("--merge_adapter applies to --method lora or qlora only (full fine-tuning saves the model)")
    if args.upload_output_to and not storage.is_remote(args.upload_output_to):
        problems.append("--upload_output_to must be a gs:// or s3:// URI")
    if args.log_uri and "://" in args.log_uri and not storage.is_remote(args.log_uri):
        problems.append(f"--log_uri {args.log_uri}: must be a local folder, gs:// or s3:// URI")
    if args.bf16 and args.fp16:
        problems.append("--bf16 and --fp16 exclude each other: pick one mixed precision")
    for prefix in args.trainable_layers or []:
        if not prefix.strip(".") or prefix != prefix.strip():
            problems.append(f"--trainable_layers {prefix!r}: a module-name prefix such as model.layers.0")
    for uri in args.dataset_file or []:
        if "://" in uri and not storage.is_remote(uri):
            problems.append(f"--dataset_file {uri}: must be a local path, gs:// or s3:// URI")
    resume = args.resume_from_checkpoint
    if resume and resume != "auto" and not storage.is_remote(resume) and not Path(resume).is_dir():
        problems.append(f"--resume_from_checkpoint {resume}: no such folder (or use 'auto')")
    model = args.model_id
    if "://" in model and not storage.is_remote(model):
        problems.append(f"--model_id {model}: a hub id, a local folder, or a gs:// / s3:// folder")
    looks_local = model.startswith(("/", "./", "../", "~")) or os.path.isdir(model)
    if looks_local and not Path(model).expanduser().joinpath("config.json").is_file():
        problems.append(f"--model_id {model}: a local model folder needs a config.json")
    if args.model_revision and (looks_local or storage.is_remote(model)):
        problems.append("--model_revision applies to a hub repository, not to a folder")
    return problems


@dataclass(frozen=True)
class Machine:
    cuda: bool
    bf16: bool  # bfloat16 runs natively (an Ampere+ GPU, or a CPU with AVX512-BF16/AMX)
    bitsandbytes: bool


def check_machine(args, machine: Machine) -> list[str]:
    problems = []
    if args.bf16 and not machine.bf16:
        where = "this GPU" if machine.cuda else "this CPU (no AVX512-BF16/AMX)"
        problems.append(f"--bf16 is not supported on {where}: drop --bf16 (training then runs in float32)")
    if args.fp16 and not machine.cuda:
        problems.append("--fp16 needs a CUDA GPU: drop --fp16 (training then runs in float32)")
    if args.method == "qlora" and not machine.bitsandbytes:
        problems.append("--method qlora needs bitsandbytes: install it, or use --method lora")
    return problems


def probe_machine(method: str) -> Machine:
    import importlib.util

    import torch

    cuda = torch.cuda.is_available()
    if cuda:
        bf16 = torch.cuda.is_bf16_supported()
    else:
        try:
            flags_line = Path("/proc/cpuinfo").read_text()
        except OSError:
            flags_line = ""
        bf16 = "avx512_bf16" in flags_line or "amx_bf16" in flags_line
    bnb = importlib.util.find_spec("bitsandbytes") is not None
    if bnb and method == "qlora":  # importing it costs seconds (it compiles ops): only when it is used
        try:
            import bitsandbytes  # noqa: F401
        except Exception:  # noqa: BLE001 - a broken install (missing native library) counts as absent
            bnb = False
    return Machine(cuda=cuda, bf16=bf16, bitsandbytes=bnb)


# ---- distributed ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class World:
    """This process's place in a torchrun job (one process alone: rank 0 of 1)."""

    rank: int = 0
    local_rank: int = 0
    size: int = 1
    local_size: int = 1

    @classmethod
    def from_env(cls, env=None) -> World:
        env = os.environ if env is None else env

        def get(name: str, default: int) -> int:
            try:
                return int(env.get(name, default))
            except ValueError:
                return default

        # WORLD_SIZE / RANK count only under the elastic agent: Vertex sets node-level ones for a plain
        # `python train.py` too, and that process is alone.
        if "LOCAL_RANK" not in env:
            return cls()
        return cls(rank=get("RANK", 0), local_rank=get("LOCAL_RANK", 0), size=get("WORLD_SIZE", 1), local_size=get("LOCAL_WORLD_SIZE", 1))

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def nodes(self) -> int:
        return max(1, self.size // max(1, self.local_size))


def die_with_launcher() -> None:
    """Under `trainer.launch` the workers run in sessions of their own (torchrun starts them so): should
    the launcher be SIGKILLed (a supervisor's grace period over, an OOM kill) they would live on,
    holding the GPU. Ask the kernel to kill this process when its parent dies (Linux)."""
    launcher = os.environ.get("TRAINER_LAUNCHER_PID")
    if not launcher or not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if str(os.getppid()) != launcher:  # the launcher died before the request took effect
        os._exit(EXIT_RUNTIME)


def any_rank(flag: bool) -> bool:
    """True on every rank if it is true on any (one small all-reduce); the flag itself when alone."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return flag
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    value = torch.tensor([1 if flag else 0], dtype=torch.int32, device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


# ---- SIGTERM ---------------------------------------------------------------------------------------


class Preemption:
    """SIGTERM handling: inside the training loop it asks the Trainer to checkpoint and stop at the end
    of the current optimiser step; anywhere else it raises Preempted at once."""

    def __init__(self):
        self.requested = False
        self.in_training = False
        self._previous = None

    def install(self) -> None:
        self._previous = signal.signal(signal.SIGTERM, self._handle)

    def restore(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None

    def _handle(self, signum, frame) -> None:
        self.requested = True
        if not self.in_training:
            raise Preempted()


# ---- the run ---------------------------------------------------------------------------------------


def hf_token() -> str | None:
    """HF_TOKEN when set; None lets the hub client use its cached login or go anonymous."""
    return os.environ.get("HF_TOKEN") or None


def hub_access_problem(exc: BaseException, model_id: str) -> str | None:
    """What to change when loading failed because the hub refused the model (not for network errors)."""
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    fix = "set HF_TOKEN" if hf_token() is None else "the token in HF_TOKEN has no access to it"
    seen: BaseException | None = exc
    while seen is not None:  # transformers re-raises hub errors as OSError, chained
        if isinstance(seen, GatedRepoError):  # (a subclass of RepositoryNotFoundError: test it first)
            return f"--model_id {model_id} is gated: {fix} (and accept its licence on the hub)"
        if isinstance(seen, RepositoryNotFoundError):
            return f"--model_id {model_id}: no such model on the hub, or it is private ({fix})"
        seen = seen.__cause__ or seen.__context__
    return None


def resolve_resume(args, options: dict | None = None) -> str | None:
    """The checkpoint folder to resume from (downloaded first when the newest one is remote); `options`
    are the artifacts' storage options (checkpoints live under --upload_output_to)."""
    value = args.resume_from_checkpoint
    if not value:
        return None
    if value != "auto":
        if storage.is_remote(value):
            local = Path(args.output_dir, Path(value.rstrip("/")).name)
            download_checkpoint(value, local, options)
            return str(local)
        return value
    candidates = storage.complete_checkpoints(args.output_dir)
    if args.upload_output_to:
        candidates += storage.complete_checkpoints(args.upload_output_to, options)
    if not candidates:
        return None  # nothing to resume: a fresh start (the first attempt of a job)
    step, uri = max(candidates, key=lambda c: (c[0], not storage.is_remote(c[1])))
    if storage.is_remote(uri):
        local = Path(args.output_dir, f"checkpoint-{step}")
        download_checkpoint(uri, local, options)
        return str(local)
    return uri


def download_checkpoint(uri: str, local: Path, options: dict | None = None) -> None:
    """A remote checkpoint into `local`, once: every rank of a node resolves the same one at the same
    time, so each downloads into a folder of its own and the first to finish renames it into place."""
    import shutil
    import tempfile

    if (local / storage.COMPLETE_MARKER).is_file():
        return
    local.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{local.name}.partial-", dir=local.parent))
    try:
        storage.download_dir(uri, partial, options=options)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    try:
        partial.rename(local)
        return
    except OSError:  # another rank got there first, or an incomplete folder of an earlier run is there
        pass
    if not (local / storage.COMPLETE_MARKER).is_file():
        # Moved aside (atomically), never deleted in place: should another rank's complete copy have
        # landed meanwhile, what ends up at `local` is still a complete copy (ours).
        aside = Path(tempfile.mkdtemp(prefix=f".{local.name}.stale-", dir=local.parent))
        try:
            local.replace(aside)  # onto the empty folder just made (rename replaces an empty one)
        except OSError:
            pass
        try:
            partial.rename(local)
            partial = aside
        except OSError:
            shutil.rmtree(aside, ignore_errors=True)
    shutil.rmtree(partial, ignore_errors=True)


# Files a dry run leaves behind when it fetches a remote model folder: it needs the tokenizer and config.
WEIGHT_FILES = re.compile(r"\.(safetensors|bin|pt|pth|ckpt|gguf|h5|msgpack|onnx)$")


def model_cache_root() -> Path:
    """Where gs:// / s3:// model folders are cached (TRAINER_MODEL_CACHE; a pod's scratch disk by default)."""
    return Path(os.environ.get("TRAINER_MODEL_CACHE") or Path.home() / ".cache" / "trainer" / "models")


def fetch_model(uri: str, *, weights: bool = True) -> str:
    """A gs:// / s3:// model folder as a local folder: downloaded once (whole, or without weights for a
    dry run), then reused. A download lands in a temporary folder renamed into place at the end, so an
    interrupted one is never mistaken for a model."""
    import hashlib
    import shutil

    key = hashlib.sha256(uri.rstrip("/").encode()).hexdigest()[:16] + "-" + Path(uri.rstrip("/")).name
    root = model_cache_root()
    full = root / key
    if full.is_dir():
        return str(full)
    target = full if weights else root / f"{key}.noweights"
    if target.is_dir():
        return str(target)
    partial = root / f"{target.name}.partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    n = storage.download_dir(uri, partial, skip=None if weights else WEIGHT_FILES)
    if n == 0 or not (partial / "config.json").is_file():
        shutil.rmtree(partial, ignore_errors=True)
        raise BadInput(f"--model_id {uri}: no model folder there (a model folder has a config.json)")
    try:
        partial.rename(target)
    except OSError:  # another process finished the same download first: use theirs
        shutil.rmtree(partial, ignore_errors=True)
    return str(target)


def hub_kwargs(args) -> dict[str, Any]:
    """What the tokenizer and the model are both loaded with."""
    kwargs: dict[str, Any] = {"token": hf_token(), "trust_remote_code": bool(args.trust_remote_code)}
    if args.model_revision:
        kwargs["revision"] = args.model_revision
    return kwargs


def compute_dtype(args, machine: Machine):
    """QLoRA's compute dtype: the flag's, or (auto) bfloat16 on a GPU that has it, else float32."""
    import torch

    if args.bnb_4bit_compute_dtype != "auto":
        return getattr(torch, args.bnb_4bit_compute_dtype)
    return torch.bfloat16 if (machine.cuda and machine.bf16) else torch.float32


def quantization_config(args, machine: Machine):
    """The BitsAndBytesConfig QLoRA loads the base model with (building it needs no bitsandbytes)."""
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=args.bnb_4bit_quant_type,
        bnb_4bit_use_double_quant=args.bnb_4bit_use_double_quant,
        bnb_4bit_compute_dtype=compute_dtype(args, machine),
    )


def load_model(args, machine: Machine, *, quantize: bool, dtype=None, model_path: str | None = None):
    import torch
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = hub_kwargs(args)
    if quantize:
        kwargs["quantization_config"] = quantization_config(args, machine)
        kwargs["dtype"] = compute_dtype(args, machine)
        kwargs["device_map"] = {"": int(os.environ.get("LOCAL_RANK", 0))} if machine.cuda else {"": "cpu"}
    else:
        # Half-precision base weights under a LoRA adapter (which peft keeps in float32); full fine-tuning
        # keeps float32 master weights, as mixed precision needs.
        half = torch.bfloat16 if args.bf16 else torch.float16 if args.fp16 else None
        kwargs["dtype"] = dtype or (half if half is not None and args.method != "full" else torch.float32)
    return AutoModelForCausalLM.from_pretrained(model_path or args.model_id, **kwargs)


DECODER_ALIAS = "decoder."


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def resolve_layers(prefixes: list[str], module_names: list[str]) -> tuple[list[str], list[str]]:
    """(the prefixes in the model's own naming, problems) for --trainable_layers.

    A prefix matches a module name equal to it or under it (`model.layers.0` matches
    `model.layers.0.self_attn.q_proj`, not `model.layers.10`). The studio names layers generically
    (`decoder.layers.0`): a `decoder.` prefix that matches nothing as given is looked up by the rest of
    it (`layers.0`) at the end of a module name, and used when exactly one module ends so
    (`model.layers.0` in a Llama, `transformer.h.0` would need `decoder.h.0`)."""
    resolved, problems = [], []
    for prefix in prefixes:
        if any(_under(n, prefix) for n in module_names):
            resolved.append(prefix)
            continue
        if prefix.startswith(DECODER_ALIAS):
            rest = prefix[len(DECODER_ALIAS) :]
            candidates = sorted({n for n in module_names if n == rest or n.endswith("." + rest)})
            if len(candidates) == 1:
                resolved.append(candidates[0])
                continue
            if len(candidates) > 1:
                problems.append(f"--trainable_layers {prefix}: ambiguous, it could be any of {', '.join(candidates[:4])}: give the full module name")
                continue
        examples = _layer_examples(module_names)
        problems.append(f"--trainable_layers {prefix}: no module of this model is named so or lies under it (its modules are named like {', '.join(examples)})")
    return resolved, problems


def _layer_examples(module_names: list[str]) -> list[str]:
    """A few real module names worth suggesting: the first decoder layers, else the first top-level ones."""
    layers = [n for n in module_names if re.search(r"\.\d+$", n)]
    return (layers or [n for n in module_names if n and "." not in n] or module_names)[:4]


def select_trainable(model, prefixes: list[str]) -> int:
    """Full fine-tuning with --trainable_layers: freeze every parameter not under a prefix; the number left."""
    trainable = 0
    for name, param in model.named_parameters():
        param.requires_grad = any(_under(name, p) for p in prefixes)
        trainable += param.numel() if param.requires_grad else 0
    return trainable


def lora_target_modules(args, model, prefixes: list[str] | None):
    """What LoRA adapts: --lora_target_modules (module name suffixes) or every linear layer, narrowed to the
    modules under --trainable_layers (an explicit list of full module names then)."""
    import torch

    targets = args.lora_target_modules
    if not prefixes:
        return targets or "all-linear"
    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    chosen = []
    for name, module in model.named_modules():
        if not any(_under(name, p) for p in prefixes):
            continue
        if targets:
            if any(name == t or name.endswith("." + t) for t in targets):
                chosen.append(name)
        elif isinstance(module, torch.nn.Linear) and module is not output:  # peft's all-linear leaves the head
            chosen.append(name)
    if not chosen:
        what = f"--lora_target_modules {' '.join(targets)}" if targets else "a linear layer"
        raise BadInput(f"--trainable_layers {' '.join(prefixes)}: no {what} lies under them, so LoRA would adapt nothing")
    return chosen


def lora_config(args, target_modules):
    from peft import LoraConfig

    return LoraConfig(
        r=args.lora_rank,
        lora_alpha=args.lora_alpha,
        lora_dropout=args.lora_dropout,
        target_modules=target_modules,
        bias=args.lora_bias,
        use_rslora=args.use_rslora,
        task_type="CAUSAL_LM",
    )


def make_callbacks(args, reporter: progress.Reporter, preemption: Preemption, world: World, artifact_options: dict | None = None):
    from transformers import TrainerCallback

    class ProgressCallback(TrainerCallback):
        def on_train_begin(self, targs, state, control, **kw):
            reporter.mark_training_start(state.global_step, state.num_input_tokens_seen or 0)
            reporter.emit("started", step=state.global_step, total_steps=state.max_steps, epoch=state.epoch or 0.0, method=args.method)

        def on_step_end(self, targs, state, control, **kw):
            # Every rank stops at the same step (a SIGTERM reaches them a moment apart): a rank that
            # stopped alone would leave the others waiting in their next all-reduce.
            if world.distributed:
                preemption.requested = any_rank(preemption.requested)
            if preemption.requested:
                control.should_save = True
                control.should_training_stop = True
            if state.global_step >= state.max_steps:
                control.should_log = True  # the last step is always reported, whatever logging_steps is

        def _common(self, state) -> dict:
            return {
                "step": state.global_step,
                "total_steps": state.max_steps,
                "epoch": state.epoch,
                **reporter.rates(state.global_step, state.max_steps, state.num_input_tokens_seen),
            }

        def on_log(self, targs, state, control, logs=None, **kw):
            logs = logs or {}
            if "loss" in logs:
                reporter.emit("step", **self._common(state), loss=logs["loss"], learning_rate=logs.get("learning_rate"), grad_norm=logs.get("grad_norm"))

        def on_evaluate(self, targs, state, control, metrics=None, **kw):
            metrics = metrics or {}
            reporter.emit("eval", **self._common(state), eval_loss=metrics.get("eval_loss"))

        def on_save(self, targs, state, control, **kw):
            ckpt = Path(targs.output_dir, f"checkpoint-{state.global_step}")
            barrier()  # every rank has written its part (its RNG state, its optimizer shard)
            if not world.is_main:
                return
            reporter.emit("checkpoint", **self._common(state), path=str(ckpt))
            if args.upload_output_to:
                dest = storage.join(args.upload_output_to, ckpt.name)
                n = storage.upload_dir(ckpt, dest, options=artifact_options)
                reporter.emit("upload", step=state.global_step, total_steps=state.max_steps, uri=dest, files=n)

    return [ProgressCallback()]


def parallel_options(args, machine: Machine, world: World, layer_classes: list[str]) -> dict[str, Any]:
    """TrainingArguments for several processes: DDP for LoRA/QLoRA (only the adapter's gradients are
    all-reduced), FSDP for full fine-tuning (parameters, gradients and optimizer state sharded, one unit
    per decoder layer, FSDP's own activation checkpointing). Nothing for one process."""
    if not world.distributed:
        return {}
    options: dict[str, Any] = {"ddp_backend": "nccl" if machine.cuda else "gloo", "ddp_find_unused_parameters": False}
    if args.method == "full":
        options["fsdp"] = True
        options["fsdp_config"] = {
            "version": 2,
            "reshard_after_forward": True,  # full shard (ZeRO-3): parameters gathered per layer, freed after
            "auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
            "transformer_layer_cls_to_wrap": layer_classes,
            "activation_checkpointing": bool(args.gradient_checkpointing),
            "state_dict_type": "FULL_STATE_DICT",  # the saved model is one ordinary HF folder
            "cpu_ram_efficient_loading": False,
        }
        options["activation_checkpointing"] = False  # FSDP's own (above); the Trainer's would all-gather twice
        options["activation_checkpointing_kwargs"] = None
    return options


def sft_config(args, machine: Machine, has_eval: bool, parallel: dict[str, Any] | None = None):
    from trl import SFTConfig

    options: dict[str, Any] = dict(
        output_dir=args.output_dir,
        per_device_train_batch_size=args.per_device_train_batch_size,
        per_device_eval_batch_size=args.per_device_eval_batch_size,
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        num_train_epochs=args.num_train_epochs,
        max_steps=args.max_steps,
        learning_rate=args.learning_rate,
        lr_scheduler_type=args.lr_scheduler_type,
        warmup_steps=args.warmup_ratio,  # transformers 5: a float below 1 is a ratio of the total steps
        logging_strategy="steps",
        logging_steps=args.logging_steps,
        eval_strategy="steps" if has_eval else "no",
        eval_steps=args.eval_steps,
        save_strategy="steps",
        save_steps=args.save_steps,
        save_total_limit=2,
        activation_checkpointing=args.gradient_checkpointing,  # transformers 5's name for it
        activation_checkpointing_kwargs={"use_reentrant": False} if args.gradient_checkpointing else None,
        bf16=args.bf16,
        fp16=args.fp16,
        use_cpu=not machine.cuda,
        seed=args.seed,
        data_seed=args.seed,
        max_length=args.max_length,
        packing=args.packing,
        report_to="none",
        disable_tqdm=True,
        include_num_input_tokens_seen="non_padding",
        dataloader_num_workers=0,
    )
    options.update(parallel or {})  # several processes: DDP or FSDP over the single-process choices
    return SFTConfig(**options)


def source_credentials(args) -> credentials.SourceCredentials:
    """TRAINING_PLATFORM_CREDENTIALS, checked against the flags (BadInput naming the entry, never a value)."""
    try:
        creds = credentials.from_env(len(args.dataset_file or []))
    except credentials.CredentialsError as e:
        raise BadInput(str(e)) from None
    artifact_uris = [u for u in (args.upload_output_to, args.log_uri) if u]
    problems = credentials.problems(creds, list(args.dataset_file or []), artifact_uris)
    if problems:
        raise BadInput("; ".join(problems))
    return creds


def storage_options(creds: credentials.SourceCredentials, n_datasets: int) -> credentials.Resolved:
    try:
        return credentials.resolve(creds, n_datasets)
    except credentials.CredentialsError as e:
        raise BadInput(str(e)) from None


def run(args, reporter: progress.Reporter, preemption: Preemption, world: World | None = None, creds: credentials.SourceCredentials | None = None) -> int:
    world = world or World()
    started = time.time()
    problems = check_args(args)
    if problems:
        raise BadInput("; ".join(problems))
    creds = creds if creds is not None else source_credentials(args)
    stores = storage_options(creds, len(args.dataset_file))
    # Every source, whole, before any model: a bad row costs seconds, not a GPU start-up.
    loaded = data.load_sources(args.dataset_file, args.dataset_file_format, args.dataset_format, options=stores.datasets)
    dataset = loaded.dataset
    train_idx, val_idx = data.split(list(range(len(dataset.examples))), args.val_split_size, args.seed)
    _check_train_rows(len(train_idx), "")

    machine = probe_machine(args.method)
    # A dry run validates the job, usually somewhere other than the machine it will run on.
    problems = [] if args.dry_run else check_machine(args, machine)
    if problems:
        raise BadInput("; ".join(problems))

    import datasets as hf_datasets
    import transformers
    from peft import prepare_model_for_kbit_training
    from transformers import AutoTokenizer, PrinterCallback, set_seed
    from trl import SFTTrainer

    # Progress bars and printed log dicts would flood the log stream the controller tails: PROGRESS
    # lines are the trainer's report.
    hf_datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    set_seed(args.seed)
    Path(args.output_dir).mkdir(parents=True, exist_ok=True)
    resume = None if args.dry_run else resolve_resume(args, stores.artifacts)

    model_path = args.model_id
    if storage.is_remote(args.model_id):
        model_path = fetch_model(args.model_id, weights=not args.dry_run)
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_path, **hub_kwargs(args))
        if dataset.format == "messages" and not tokenizer.chat_template:
            raise BadInput(f"{args.model_id} has no chat template, so 'messages' rows cannot be rendered: use a chat model or prompt/completion rows")
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        prepared = preflight.prepare(loaded, train_idx, val_idx, tokenizer, max_length=args.max_length, drop_long=args.drop_long_examples, packing=args.packing)
        report_preflight(args, reporter, prepared.report)
        _check_train_rows(len(prepared.train), " after dropping long rows")
        if args.dry_run:
            return EXIT_OK
        model = load_model(args, machine, quantize=args.method == "qlora", model_path=model_path)
    except OSError as e:
        problem = hub_access_problem(e, args.model_id)
        if problem:
            raise BadInput(problem) from e
        raise
    loaded_in_4bit = bool(getattr(model, "is_loaded_in_4bit", False))
    if args.method == "qlora":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=args.gradient_checkpointing)
    prefixes = None
    if args.trainable_layers:
        prefixes, problems = resolve_layers(args.trainable_layers, [n for n, _ in model.named_modules() if n])
        if problems:
            raise BadInput("; ".join(problems))
        if prefixes != args.trainable_layers:
            print(f"--trainable_layers {' '.join(args.trainable_layers)}: this model's {' '.join(prefixes)}", file=sys.stderr, flush=True)
        if args.method == "full":
            select_trainable(model, prefixes)
    peft_config = None
    if args.method in ("lora", "qlora"):
        peft_config = lora_config(args, lora_target_modules(args, model, prefixes))

    layer_classes = list(getattr(model, "_no_split_modules", None) or [])
    trainer = SFTTrainer(
        model=model,
        args=sft_config(args, machine, has_eval=bool(prepared.eval), parallel=parallel_options(args, machine, world, layer_classes)),
        # Already tokenized by the preflight (input_ids + labels): TRL trains exactly what it reported.
        train_dataset=hf_datasets.Dataset.from_list(prepared.train),
        eval_dataset=hf_datasets.Dataset.from_list(prepared.eval) if prepared.eval else None,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=make_callbacks(args, reporter, preemption, world, stores.artifacts),
    )
    trainer.remove_callback(PrinterCallback)
    if args.method == "qlora" and not machine.cuda:
        # TRL casts QLoRA adapters to bf16 (the paper's recipe for GPUs); on CPU the compute dtype is float32
        for param in trainer.model.parameters():
            if param.requires_grad:
                param.data = param.data.float()
    preemption.in_training = True
    try:
        result = trainer.train(resume_from_checkpoint=resume)
    finally:
        preemption.in_training = False
    state = trainer.state
    if preemption.requested:
        print(f"SIGTERM: checkpoint-{state.global_step} saved, exiting {EXIT_PREEMPTED}", file=sys.stderr, flush=True)
        return EXIT_PREEMPTED

    eval_loss = None
    if prepared.eval:
        last_eval = next((e for e in reversed(state.log_history) if "eval_loss" in e), None)
        if last_eval is not None and last_eval["step"] == state.global_step:
            eval_loss = last_eval["eval_loss"]  # the loop just evaluated this very model
        else:
            eval_loss = trainer.evaluate().get("eval_loss")  # reported by on_evaluate

    # Every rank takes part (FSDP gathers the full state dict); the Trainer writes on rank 0 only.
    trainer.save_model(args.output_dir)  # the adapter for LoRA/QLoRA, the whole model for full
    if not world.is_main:
        return EXIT_OK  # rank 0 alone writes the tokenizer and the summary, merges and uploads
    tokenizer.save_pretrained(args.output_dir)

    # What the Trainer actually wrapped the model in (not what was asked for).
    parallelism = ("fsdp" if getattr(trainer, "is_fsdp_enabled", False) else "ddp") if world.distributed else None
    merged_dir = None
    if args.merge_adapter:
        del trainer, model
        merged_dir = merge_adapter(args, machine, tokenizer, model_path)

    losses = [{"step": e["step"], "loss": e["loss"]} for e in state.log_history if "loss" in e]
    summary = {
        "status": "succeeded",
        "args": vars(args),
        "method": args.method,
        "dataset": dataset_summary(args, prepared.report),
        "preflight": prepared.report,
        "resumed_from": resume,
        "steps": state.global_step,
        "total_steps": state.max_steps,
        "epochs": state.epoch,
        "tokens": state.num_input_tokens_seen,
        "losses": losses,
        "first_loss": losses[0]["loss"] if losses else None,
        "final_loss": losses[-1]["loss"] if losses else None,
        "train_loss": result.training_loss,
        "eval_loss": eval_loss,
        "train_runtime_seconds": result.metrics.get("train_runtime"),
        "duration_seconds": round(time.time() - started, 3),
        "device": "cuda" if machine.cuda else "cpu",
        "world_size": world.size,
        "nodes": world.nodes,
        "parallelism": parallelism,
        # What one optimizer step sees: per device x accumulation x ranks.
        "global_batch_size": args.per_device_train_batch_size * args.gradient_accumulation_steps * world.size,
        "loaded_in_4bit": loaded_in_4bit,
        "merged_dir": merged_dir,
        "versions": _versions(),
    }
    Path(args.output_dir, SUMMARY_FILE).write_text(json.dumps(progress.sanitize(summary), indent=2) + "\n")

    if args.upload_output_to:
        # checkpoints went up as they were saved; the summary goes last so its presence means "complete"
        n = storage.upload_dir(args.output_dir, args.upload_output_to, last=(SUMMARY_FILE,), exclude=(storage.CHECKPOINT_RE,), options=stores.artifacts)
        reporter.emit("upload", step=state.global_step, total_steps=state.max_steps, uri=args.upload_output_to, files=n)
    reporter.emit(
        "done",
        step=state.global_step,
        total_steps=state.max_steps,
        epoch=state.epoch,
        loss=summary["final_loss"],
        eval_loss=eval_loss,
        tokens=state.num_input_tokens_seen,
        duration_seconds=summary["duration_seconds"],
        output_dir=args.output_dir,
    )
    return EXIT_OK


def _check_train_rows(n: int, when: str) -> None:
    if n < data.MIN_TRAIN_ROWS:
        raise BadInput(f"{n} training rows{when}: at least {data.MIN_TRAIN_ROWS} are needed (add rows, or lower --val_split_size)")


def dataset_summary(args, report: dict) -> dict:
    """run_summary.json's `dataset`: the old keys (uri is the first source) plus every source."""
    return {
        "uri": args.dataset_file[0],
        "uris": list(args.dataset_file),
        "format": report["format"],
        "rows": report["rows"],
        "train_rows": report["train_rows"],
        "eval_rows": report["eval_rows"],
    }


def report_preflight(args, reporter: progress.Reporter, report: dict) -> None:
    """The preflight report: one `dataset` PROGRESS line (the job's progress and timeline) and a readable
    account on stderr. A dry run writes it to run_summary.json now; a training run writes it there with
    the rest of the summary at the end (the file's presence keeps meaning "the run finished")."""
    reporter.emit("dataset", dry_run=bool(args.dry_run), **preflight.event_fields(report))
    if not reporter.enabled:
        return  # another rank: rank 0 tells it once
    print(preflight.describe(report), file=sys.stderr, flush=True)
    if args.dry_run:
        summary = {"status": "dry_run", "args": vars(args), "method": args.method, "dataset": dataset_summary(args, report), "preflight": report}
        Path(args.output_dir, SUMMARY_FILE).write_text(json.dumps(progress.sanitize(summary), indent=2) + "\n")


def merge_adapter(args, machine: Machine, tokenizer, model_path: str | None = None) -> str:
    """Merge the saved adapter into the base model reloaded unquantised in bf16 (never into 4-bit)."""
    import gc

    import torch
    from peft import PeftModel

    gc.collect()
    base = load_model(args, machine, quantize=False, dtype=torch.bfloat16, model_path=model_path)
    merged = PeftModel.from_pretrained(base, args.output_dir).merge_and_unload()
    out = Path(args.output_dir, MERGED_DIR)
    merged.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return str(out)


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("torch", "transformers", "peft", "trl", "accelerate", "bitsandbytes"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


def main(argv: list[str] | None = None) -> int:
    die_with_launcher()
    args = flags.build_parser(prog="python -m trainer.train").parse_args(argv)  # bad flags: exit 2
    world = World.from_env()
    reporter = progress.Reporter(enabled=world.is_main)
    preemption = Preemption()
    preemption.install()
    log: run_log.RunLog | None = None
    code = EXIT_RUNTIME  # what the log's summary says should something escape every handler below
    try:
        # The credentials first: --log_uri is written with the artifacts' (a bad variable is the one
        # failure the log folder cannot hear of).
        creds = source_credentials(args)
        if args.log_uri and world.is_main:
            artifacts = storage_options(creds, 0).artifacts
            log = run_log.RunLog(args.log_uri, artifacts, args.log_upload_interval_seconds, summary_file=Path(args.output_dir, SUMMARY_FILE)).start()
        code = run(args, reporter, preemption, world, creds)
    except (BadInput, data.DatasetError) as e:
        code = _fail(reporter, EXIT_BAD_INPUT, f"bad input: {e}")
    except Preempted:
        print(f"SIGTERM before training started: exiting {EXIT_PREEMPTED}", file=sys.stderr, flush=True)
        code = EXIT_PREEMPTED
    except Exception as e:  # noqa: BLE001 - the trainer's last line of defence: report, then exit 1
        print(progress.redact(traceback.format_exc()), file=sys.stderr, flush=True)
        code = _fail(reporter, EXIT_RUNTIME, f"{type(e).__name__}: {e}")
    finally:
        preemption.restore()
        if log is not None:
            log.finish(code)  # best effort: a failed upload is a warning, never another exit code
    return code


def _fail(reporter: progress.Reporter, code: int, message: str) -> int:
    message = progress.redact(message)
    print(f"error: {message}", file=sys.stderr, flush=True)
    reporter.emit("error", message=message, exit_code=code)
    return code


if __name__ == "__main__":
    sys.exit(main())
