#!/usr/bin/env bash
# The GPU check of issue 15 (item 8), prepared to run in under 8 minutes on one H200:
#   tests/bench/gpu_check.sh                 # on the GPU machine (from the repo root, with .venv)
#   tests/bench/gpu_check.sh --dry-run       # the same plumbing on CPU, a small model, a few steps
#   tests/bench/gpu_check.sh --out DIR       # where results.json and the runs' logs go (default: a temp dir)
#
# What it measures, each run a fresh child process (its own CUDA memory statistics, nothing shared):
#   1. LoRA and QLoRA (nf4, double quant, bf16 compute) on a Llama-3.2-1B-shaped model built from config
#      (random weights: throughput does not depend on their values), bf16, batch 8 x 1024 tokens, 40 steps,
#      ours (`trainer.train.main`) against plain TRL (an SFTTrainer script with the same hyperparameters,
#      tests/bench/bench_trainer.py's), alternating ours/plain;
#   2. one LoRA run through the distributed launcher (`python -m trainer.launch`) on the one GPU.
# Reported per run: tokens/s (non-padding tokens / the Trainer's train_runtime), peak GPU memory
# (torch.cuda.max_memory_allocated, and reserved), MFU = 6 N tokens/s / 989.4 TFLOP/s (H200 SXM bf16 dense
# peak; 6N is the usual convention and overstates LoRA's work, so 4N, no weight gradients, is given too).
# The whole check is bounded by `timeout` (470 s); every run's stderr is kept under the output folder.
set -euo pipefail
cd "$(dirname "$0")/../.."

MODE=cuda
OUT=""
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) MODE=cpu ;;
    --out) OUT="$2"; shift ;;
    *) echo "usage: $0 [--dry-run] [--out DIR]" >&2; exit 2 ;;
  esac
  shift
done
OUT="${OUT:-$(mktemp -d -t gpu-check-XXXXXX)}"
mkdir -p "$OUT"
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY=python3

if [ "$MODE" = cuda ]; then
  "$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' \
    || { echo "gpu_check: no CUDA device here (use --dry-run to check the script on CPU)" >&2; exit 3; }
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
fi

SCRIPT="$OUT/gpu_check.py"
cat > "$SCRIPT" <<'PYEOF'
"""gpu_check.sh's driver (written out by the script; see its header)."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path.cwd()
sys.path[:0] = [str(REPO), str(REPO / "tests" / "bench")]

import bench_trainer as bt  # noqa: E402  (the model shape, the dataset and the plain TRL recipe)

H200_BF16_DENSE = 989.4e12
STEPS = {"cuda": 40, "cpu": 3}


def config(mode: str) -> dict:
    if mode == "cuda":
        return dict(bt.CUDA)
    return {**bt.CPU, "rows": 32, "batch": 2, "max_length": 128}


def trainer_argv(cfg: dict, method: str, model: str, data: str, out: str, steps: int) -> list[str]:
    argv = ["--model_id", model, "--dataset_file", data, "--output_dir", out, "--method", method,
            "--per_device_train_batch_size", str(cfg["batch"]), "--gradient_accumulation_steps", str(cfg["grad_accum"]),
            "--max_steps", str(steps), "--max_length", str(cfg["max_length"]), "--learning_rate", str(cfg["lr"]),
            "--lora_rank", str(cfg["lora_rank"]), "--lora_alpha", str(cfg["lora_alpha"]), "--val_split_size", "0",
            "--logging_steps", "10", "--save_steps", "100000", "--no_gradient_checkpointing"]
    return argv + (["--bf16"] if cfg["bf16"] else [])


def run_ours(cfg, method, model, data, out, steps):
    import io
    from contextlib import redirect_stdout

    from trainer import train

    with redirect_stdout(io.StringIO()):
        code = train.main(trainer_argv(cfg, method, model, data, out, steps))
    if code != 0:
        raise SystemExit(f"ours exited {code}")
    s = json.loads(Path(out, "run_summary.json").read_text())
    return {"tokens": s["tokens"], "train_runtime": s["train_runtime_seconds"], "steps": s["steps"],
            "loaded_in_4bit": s["loaded_in_4bit"]}


def run_plain(cfg, method, model_id, data, out, steps):
    """A user's TRL script: the same hyperparameters; QLoRA the usual nf4 recipe."""
    import torch
    from datasets import load_dataset
    from peft import LoraConfig, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig
    from trl import SFTConfig, SFTTrainer

    cuda = torch.cuda.is_available()
    dtype = torch.bfloat16 if cfg["bf16"] else torch.float32
    kwargs = {"dtype": dtype}
    if method == "qlora":
        kwargs["quantization_config"] = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                           bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=dtype)
        kwargs["device_map"] = {"": 0} if cuda else {"": "cpu"}
    tokenizer = AutoTokenizer.from_pretrained(model_id)
    model = AutoModelForCausalLM.from_pretrained(model_id, **kwargs)
    if method == "qlora":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    args = SFTConfig(
        output_dir=out, per_device_train_batch_size=cfg["batch"], gradient_accumulation_steps=cfg["grad_accum"],
        max_steps=steps, max_length=cfg["max_length"], learning_rate=cfg["lr"], lr_scheduler_type="cosine",
        warmup_steps=0.03, logging_steps=10, save_steps=100000, bf16=cfg["bf16"], use_cpu=not cuda,
        activation_checkpointing=False, seed=42, data_seed=42, report_to="none", disable_tqdm=True,
        include_num_input_tokens_seen="non_padding",
    )
    peft_config = LoraConfig(r=cfg["lora_rank"], lora_alpha=cfg["lora_alpha"], lora_dropout=0.05,
                             target_modules="all-linear", task_type="CAUSAL_LM")
    trainer = SFTTrainer(model=model, args=args, train_dataset=load_dataset("json", data_files=data)["train"],
                         processing_class=tokenizer, peft_config=peft_config)
    if method == "qlora" and not cuda:
        for p in trainer.model.parameters():  # as ours does on CPU (TRL casts the adapters to bf16)
            if p.requires_grad:
                p.data = p.data.float()
    result = trainer.train()
    return {"tokens": trainer.state.num_input_tokens_seen, "train_runtime": result.metrics["train_runtime"],
            "steps": trainer.state.global_step, "loaded_in_4bit": bool(getattr(model, "is_loaded_in_4bit", False))}


def child(variant, method, cfg_path, model, data, out, result_path, steps):
    import torch

    cfg = json.loads(Path(cfg_path).read_text())
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    r = (run_ours if variant == "ours" else run_plain)(cfg, method, model, data, out, int(steps))
    if torch.cuda.is_available():
        r["peak_allocated_gib"] = torch.cuda.max_memory_allocated() / 2**30
        r["peak_reserved_gib"] = torch.cuda.max_memory_reserved() / 2**30
    Path(result_path).write_text(json.dumps(r))


def spawn(argv, log: Path, timeout: float) -> int:
    with open(log, "w") as err:
        return subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=err, timeout=timeout, cwd=REPO).returncode


def with_rates(r: dict, params: int) -> dict:
    r["tokens_per_second"] = r["tokens"] / r["train_runtime"]
    r["mfu_6n"] = 6 * params * r["tokens_per_second"] / H200_BF16_DENSE
    r["mfu_4n"] = 4 * params * r["tokens_per_second"] / H200_BF16_DENSE
    return r


def main(mode: str, out: Path) -> int:
    started = time.time()
    cfg = config(mode)
    steps = STEPS[mode]
    cfg_path = out / "cfg.json"
    cfg_path.write_text(json.dumps(cfg))
    params = bt.build_model(cfg, out / "model")
    bt.write_dataset(cfg, out / "data.jsonl")
    print(f"model: {params / 1e9:.3f} B parameters; {steps} steps of {cfg['batch']} x {cfg['max_length']} tokens", flush=True)
    results: dict = {"mode": mode, "machine": bt.machine(), "parameters": params, "steps": steps, "config": cfg,
                     "peak_flops": H200_BF16_DENSE, "runs": {}}
    failures = []
    for method in ("lora", "qlora"):
        for variant in ("ours", "plain") if method == "lora" else ("plain", "ours"):
            name = f"{method}-{variant}"
            res = out / f"{name}.json"
            code = spawn([sys.executable, __file__, "--child", variant, method, str(cfg_path), str(out / "model"),
                          str(out / "data.jsonl"), str(out / name), str(res), str(steps)], out / f"{name}.stderr", 150)
            if code != 0:
                failures.append(f"{name} exited {code} (see {out / name}.stderr)")
                print(f"{name:12s} FAILED ({code})", flush=True)
                continue
            r = with_rates(json.loads(res.read_text()), params)
            results["runs"][name] = r
            print(f"{name:12s} {r['tokens_per_second']:10.0f} tok/s  peak {r.get('peak_allocated_gib', 0):6.2f} GiB "
                  f"(reserved {r.get('peak_reserved_gib', 0):6.2f})  MFU 6N {100 * r['mfu_6n']:5.1f} %  "
                  f"4N {100 * r['mfu_4n']:5.1f} %  ({r['tokens']} tokens, {r['steps']} steps, {r['train_runtime']:.1f} s)",
                  flush=True)
        pair = results["runs"]
        if f"{method}-ours" in pair and f"{method}-plain" in pair:
            results[f"{method}_ratio_ours_over_plain"] = (pair[f"{method}-ours"]["tokens_per_second"]
                                                         / pair[f"{method}-plain"]["tokens_per_second"])
    # One run through the distributed launcher on the one device (torchrun, one rank).
    launch_out = out / "lora-launch"
    argv = [sys.executable, "-m", "trainer.launch", "--nproc_per_node", "1", "--",
            *trainer_argv(cfg, "lora", str(out / "model"), str(out / "data.jsonl"), str(launch_out), steps)]
    code = spawn(argv, out / "lora-launch.stderr", 150)
    if code == 0:
        s = json.loads((launch_out / "run_summary.json").read_text())
        r = with_rates({"tokens": s["tokens"], "train_runtime": s["train_runtime_seconds"], "steps": s["steps"],
                        "world_size": s["world_size"], "device": s["device"]}, params)
        results["runs"]["lora-launch"] = r
        print(f"{'lora-launch':12s} {r['tokens_per_second']:10.0f} tok/s  world size {r['world_size']} on {r['device']}  "
              f"MFU 6N {100 * r['mfu_6n']:5.1f} %", flush=True)
    else:
        failures.append(f"lora-launch exited {code} (see {out}/lora-launch.stderr)")
        print(f"lora-launch  FAILED ({code})", flush=True)
    results["failures"] = failures
    results["wall_seconds"] = round(time.time() - started, 1)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(json.dumps({k: v for k, v in results.items() if k not in ("runs", "config")}, indent=2))
    return 1 if failures else 0


if __name__ == "__main__":
    if sys.argv[1] == "--child":
        child(*sys.argv[2:10])
        sys.exit(0)
    sys.exit(main(sys.argv[1], Path(sys.argv[2])))
PYEOF

echo "gpu_check: mode $MODE, output in $OUT"
timeout 470 "$PY" "$SCRIPT" "$MODE" "$OUT"
