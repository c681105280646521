"""Benchmark: our trainer against a plain TRL `SFTTrainer` script with the same configuration.

    .venv/bin/python tests/bench/bench_trainer.py                 # CPU, a small Llama built from config
    .venv/bin/python tests/bench/bench_trainer.py --cuda          # GPU: Llama-3.2-1B-shaped, bf16 LoRA, MFU

Each run is a fresh child process (so peak RSS is per run and nothing is shared), and the two variants
alternate (ours, plain, ours, plain, ...) so that drift in the machine's load hits both alike. Both report
the Trainer's own `train_runtime` (the training loop, no imports or model loading), the CPU seconds of
that loop, and the non-padding tokens they trained on; tokens/s = tokens / train_runtime. The ratio ours/plain of the medians is the
figure of merit (target >= 0.95). With --cuda, MFU = 6 * parameters * tokens/s / 790 TFLOP/s (H200 bf16
dense peak); 6N is the usual convention and overstates the work LoRA does (no weight gradients for the
frozen base), so read it as comparable to published MFU figures rather than as hardware utilisation.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))

H200_BF16_PEAK = 790e12

CPU = {
    "model": {"hidden_size": 256, "layers": 4, "heads": 8, "kv_heads": 4, "intermediate_size": 688},
    "rows": 96,
    "words": (40, 120),
    "batch": 8,
    "grad_accum": 1,
    "epochs": 1,
    "max_length": 256,
    "lora_rank": 16,
    "lora_alpha": 32,
    "lr": 2e-4,
    "bf16": False,
    "grad_ckpt": False,
}
CUDA = {
    # Llama-3.2-1B's shape (random weights: throughput does not depend on their values).
    "model": {"hidden_size": 2048, "layers": 16, "heads": 32, "kv_heads": 8, "intermediate_size": 8192, "vocab_size": 128256, "tie": True},
    "rows": 512,
    "words": (700, 900),
    "batch": 8,
    "grad_accum": 1,
    "epochs": 1,
    "max_length": 1024,
    "lora_rank": 16,
    "lora_alpha": 32,
    "lr": 2e-4,
    "bf16": True,
    "grad_ckpt": False,
}


# ---- set-up -------------------------------------------------------------------------------------------


def build_model(cfg: dict, out: Path) -> int:
    """Write a model of cfg's shape with the tiny tokenizer; returns its parameter count."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from trainer import tiny_model

    tok = tiny_model.build_tokenizer()
    m = cfg["model"]
    if "vocab_size" not in m:
        model = tiny_model.build_model(
            tok, hidden_size=m["hidden_size"], layers=m["layers"], heads=m["heads"], kv_heads=m["kv_heads"], intermediate_size=m["intermediate_size"]
        )
    else:
        config = LlamaConfig(
            vocab_size=m["vocab_size"],
            hidden_size=m["hidden_size"],
            intermediate_size=m["intermediate_size"],
            num_hidden_layers=m["layers"],
            num_attention_heads=m["heads"],
            num_key_value_heads=m["kv_heads"],
            max_position_embeddings=4096,
            rope_theta=500000.0,
            tie_word_embeddings=m["tie"],
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
        )
        with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
            model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return sum(p.numel() for p in model.parameters())


def write_dataset(cfg: dict, path: Path) -> None:
    from trainer.tiny_model import _WORDS

    rng = random.Random(0)
    lo, hi = cfg["words"]
    with path.open("w") as fh:
        for _ in range(cfg["rows"]):
            q = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(lo, hi) // 2))
            a = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(lo, hi) // 2))
            fh.write(json.dumps({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}) + "\n")


# ---- the two variants (each runs in its own child process) --------------------------------------------


def loop_timer():
    """A callback timing the training loop in CPU seconds (all threads of the process). Wall time on a
    shared machine swings with its load; CPU time swings much less, so both are reported."""
    from transformers import TrainerCallback

    class LoopTimer(TrainerCallback):
        cpu_seconds = None

        def on_train_begin(self, args, state, control, **kw):
            self._t0 = time.process_time()

        def on_train_end(self, args, state, control, **kw):
            LoopTimer.cpu_seconds = time.process_time() - self._t0

    return LoopTimer


def run_ours(cfg: dict, model: str, data: str, out: str) -> dict:
    import io
    from contextlib import redirect_stdout

    from trainer import train

    argv = [
        "--model_id",
        model,
        "--dataset_file",
        data,
        "--output_dir",
        out,
        "--method",
        "lora",
        "--per_device_train_batch_size",
        str(cfg["batch"]),
        "--gradient_accumulation_steps",
        str(cfg["grad_accum"]),
        "--num_train_epochs",
        str(cfg["epochs"]),
        "--max_length",
        str(cfg["max_length"]),
        "--learning_rate",
        str(cfg["lr"]),
        "--lora_rank",
        str(cfg["lora_rank"]),
        "--lora_alpha",
        str(cfg["lora_alpha"]),
        "--val_split_size",
        "0",
        "--logging_steps",
        "10",
        "--save_steps",
        "500",
    ]
    argv += ["--bf16"] if cfg["bf16"] else []
    argv += [] if cfg["grad_ckpt"] else ["--no_gradient_checkpointing"]
    timer = loop_timer()
    make_callbacks = train.make_callbacks
    # Instrumentation only: the same timing callback the plain variant gets, appended to ours.
    train.make_callbacks = lambda *a: [*make_callbacks(*a), timer()]
    with redirect_stdout(io.StringIO()):
        code = train.main(argv)
    if code != 0:
        raise SystemExit(f"trainer exited {code}")
    s = json.loads(Path(out, "run_summary.json").read_text())
    return {"tokens": s["tokens"], "train_runtime": s["train_runtime_seconds"], "steps": s["steps"], "cpu_seconds": timer.cpu_seconds}


def run_plain(cfg: dict, model_id: str, data: str, out: str) -> dict:
    """What a user would write with TRL directly: the same hyperparameters, nothing else."""
    import torch
    from datasets import load_dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    cuda = torch.cuda.is_available()
    tokenizer = AutoTokenizer.from_pretrained(model_id)
    model = AutoModelForCausalLM.from_pretrained(model_id, dtype=torch.bfloat16 if cfg["bf16"] else torch.float32)
    args = SFTConfig(
        output_dir=out,
        per_device_train_batch_size=cfg["batch"],
        gradient_accumulation_steps=cfg["grad_accum"],
        num_train_epochs=cfg["epochs"],
        max_length=cfg["max_length"],
        learning_rate=cfg["lr"],
        lr_scheduler_type="cosine",
        warmup_steps=0.03,
        logging_steps=10,
        save_steps=500,
        save_total_limit=2,
        bf16=cfg["bf16"],
        use_cpu=not cuda,
        activation_checkpointing=cfg["grad_ckpt"],
        seed=42,
        data_seed=42,
        report_to="none",
    )
    peft_config = LoraConfig(r=cfg["lora_rank"], lora_alpha=cfg["lora_alpha"], lora_dropout=0.05, target_modules="all-linear", task_type="CAUSAL_LM")
    timer = loop_timer()
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=load_dataset("json", data_files=data)["train"],
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=[timer()],
    )
    result = trainer.train()
    # Every row is seen `epochs` times and none is truncated, so this is the non-padding token count.
    tokens = sum(len(ids) for ids in trainer.train_dataset["input_ids"]) * cfg["epochs"]
    return {"tokens": tokens, "train_runtime": result.metrics["train_runtime"], "steps": trainer.state.global_step, "cpu_seconds": timer.cpu_seconds}


def child(variant: str, cfg_path: str, model: str, data: str, out: str, result_path: str) -> None:
    cfg = json.loads(Path(cfg_path).read_text())
    result = (run_ours if variant == "ours" else run_plain)(cfg, model, data, out)
    Path(result_path).write_text(json.dumps(result))


# ---- the driver ---------------------------------------------------------------------------------------


def run_child(variant: str, cfg_path: Path, model: Path, data: Path, work: Path, i: int, threads: int) -> dict:
    out, result = work / f"{variant}-{i}", work / f"{variant}-{i}.json"
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    proc = subprocess.Popen(
        [sys.executable, __file__, "--child", variant, str(cfg_path), str(model), str(data), str(out), str(result)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    err = proc.stderr.read()
    _, status, rusage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{variant} run failed ({proc.returncode}):\n{err[-3000:]}")
    r = json.loads(result.read_text())
    r["tokens_per_second"] = r["tokens"] / r["train_runtime"]
    r["tokens_per_cpu_second"] = r["tokens"] / r["cpu_seconds"]
    r["peak_rss_mib"] = rusage.ru_maxrss / 1024  # Linux reports KiB
    return r


def machine() -> str:
    import torch

    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}"
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("model name")), platform.processor())
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} (CPU)"


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(*sys.argv[2:8])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cuda", action="store_true", help="Llama-3.2-1B-shaped model, bf16 LoRA, MFU vs H200 peak")
    parser.add_argument("--rounds", type=int, default=3, help="pairs of runs (ours, plain) to alternate")
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS for each run (0: torch's default); 1 is steadiest on a shared CPU")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    cfg = CUDA if args.cuda else CPU

    with tempfile.TemporaryDirectory(prefix="bench-trainer-") as tmp:
        work = Path(tmp)
        cfg_path = work / "cfg.json"
        cfg_path.write_text(json.dumps(cfg))
        params = build_model(cfg, work / "model")
        write_dataset(cfg, work / "data.jsonl")
        runs: dict[str, list[dict]] = {"ours": [], "plain": []}
        started = time.time()
        for i in range(args.rounds):
            for variant in ("ours", "plain") if i % 2 == 0 else ("plain", "ours"):
                r = run_child(variant, cfg_path, work / "model", work / "data.jsonl", work, i, args.threads)
                runs[variant].append(r)
                print(
                    f"round {i} {variant:5s} {r['tokens_per_second']:10.1f} tok/s  "
                    f"{r['tokens_per_cpu_second']:10.1f} tok/cpu-s  {r['peak_rss_mib']:8.1f} MiB  "
                    f"({r['tokens']} tokens, {r['steps']} steps, {r['train_runtime']:.2f} s)",
                    flush=True,
                )

    med = {v: statistics.median(r["tokens_per_second"] for r in rs) for v, rs in runs.items()}
    med_cpu = {v: statistics.median(r["tokens_per_cpu_second"] for r in rs) for v, rs in runs.items()}
    rss = {v: max(r["peak_rss_mib"] for r in rs) for v, rs in runs.items()}
    summary = {
        "machine": machine(),
        "config": cfg,
        "parameters": params,
        "rounds": args.rounds,
        "tokens_per_second_median": med,
        "peak_rss_mib_max": rss,
        "ratio_ours_over_plain": med["ours"] / med["plain"],
        "tokens_per_cpu_second_median": med_cpu,
        "cpu_ratio_ours_over_plain": med_cpu["ours"] / med_cpu["plain"],
        "threads": args.threads,
        "rss_ratio_ours_over_plain": rss["ours"] / rss["plain"],
        "wall_seconds": round(time.time() - started, 1),
        "runs": runs,
    }
    if args.cuda:
        summary["mfu"] = {v: 6 * params * t / H200_BF16_PEAK for v, t in med.items()}
    print(json.dumps({k: v for k, v in summary.items() if k != "runs"}, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
