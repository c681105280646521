"""End-to-end runs of the trainer on the tiny model (CPU): LoRA, QLoRA, full, merge, SIGTERM/resume,
and the issue's acceptance command."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from trainer_testlib import FAST, REPO_ROOT, Run, trainer_env, write_jsonl

pytestmark = pytest.mark.trainer


def summary(out: Path) -> dict:
    return json.loads((out / "run_summary.json").read_text())


def assert_lifecycle(run: Run) -> None:
    events = [e["event"] for e in run.events]  # .events parses every PROGRESS line as strict JSON
    assert events[:2] == ["dataset", "started"] and events[-1] == "done", events
    for e in run.events[1:]:  # the first is the preflight's dataset report, before any step
        assert e["event"] in ("started", "step", "eval", "checkpoint", "upload", "done")
        assert "step" in e
    for e in run.of("step"):
        assert {"total_steps", "epoch", "loss", "learning_rate", "tokens_per_second", "eta_seconds"} <= set(e)


def tokenize_chat(tokenizer, rows: list[dict]) -> torch.Tensor:
    text = tokenizer.apply_chat_template(rows[0]["messages"], tokenize=False)
    return tokenizer(text, return_tensors="pt").input_ids


def test_lora_overfits_chat_adapter_reloads_and_merge_matches(tiny_model, chat_file, tmp_path, train_inproc):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "out"
    run = train_inproc("--model_id", tiny_model, "--dataset_file", chat_file, "--output_dir", out, *FAST, "--max_steps", "30", "--merge_adapter")
    assert run.code == 0, run.stderr
    assert_lifecycle(run)
    losses = run.losses
    assert len(losses) == 30
    assert losses[-1] <= losses[0] / 2, losses

    s = summary(out)
    assert s["status"] == "succeeded" and s["steps"] == 30 and s["dataset"]["format"] == "messages"
    assert s["tokens"] > 0 and s["duration_seconds"] > 0
    assert [x["loss"] for x in s["losses"]] == pytest.approx(losses)
    assert (out / "adapter_model.safetensors").is_file() and (out / "tokenizer.json").is_file()

    tokenizer = AutoTokenizer.from_pretrained(out)
    ids = tokenize_chat(tokenizer, [json.loads(chat_file.read_text().splitlines()[0])])
    base = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.bfloat16)
    with torch.no_grad():
        base_logits = base(ids).logits.float()
        adapted = PeftModel.from_pretrained(base, out).eval()
        adapter_logits = adapted(ids).logits.float()
        merged = AutoModelForCausalLM.from_pretrained(out / "merged").eval()
        merged_logits = merged(ids).logits.float()
    assert merged.dtype == torch.bfloat16
    assert not any("lora" in name for name, _ in merged.named_parameters())
    # The adapter changed the model, and the merged weights compute the same function (up to bf16 rounding).
    assert (adapter_logits - base_logits).abs().max() > 1.0
    torch.testing.assert_close(merged_logits, adapter_logits, atol=0.1, rtol=0.02)
    agree = (merged_logits.argmax(-1) == adapter_logits.argmax(-1)).float().mean()
    assert agree >= 0.95


@pytest.mark.parametrize("dataset", ["prompt_completion", "aml"])
def test_prompt_completion_formats_overfit(dataset, tiny_model, tmp_path, train_inproc):
    from trainer_testlib import CAPITALS, prompt_completion_rows

    if dataset == "aml":
        rows = [
            {"facts": {"country": c, "amount": 1000 * i}, "decision": "review" if i % 2 else "approve", "fired_rules": [f"R{i}"] if i % 2 else []}
            for i, (c, _) in enumerate(CAPITALS)
        ]
    else:
        rows = prompt_completion_rows()
    data = write_jsonl(tmp_path / "d.jsonl", rows)
    out = tmp_path / "out"
    run = train_inproc("--model_id", tiny_model, "--dataset_file", data, "--output_dir", out, *FAST, "--max_steps", "30")
    assert run.code == 0, run.stderr
    assert_lifecycle(run)
    assert run.losses[-1] <= run.losses[0] / 2, run.losses
    assert summary(out)["dataset"]["format"] == dataset


def test_qlora_runs_on_cpu_and_merges_into_an_unquantised_base(tiny_model, chat_file, tmp_path, train_inproc):
    out = tmp_path / "out"
    run = train_inproc(
        "--model_id",
        tiny_model,
        "--dataset_file",
        chat_file,
        "--output_dir",
        out,
        *FAST,
        "--method",
        "qlora",
        "--max_steps",
        "6",
        "--merge_adapter",
        "--val_split_size",
        "0.15",
    )
    assert run.code == 0, run.stderr
    assert_lifecycle(run)
    assert all(isinstance(x, float) for x in run.losses) and len(run.losses) == 6
    assert run.of("eval") and run.of("done")[0]["eval_loss"] is not None
    adapter_config = json.loads((out / "adapter_config.json").read_text())
    assert adapter_config["r"] == 32 and any("q_proj" in t for t in adapter_config["target_modules"])
    assert summary(out)["loaded_in_4bit"] is True
    merged_config = json.loads((out / "merged" / "config.json").read_text())
    assert "quantization_config" not in merged_config
    assert merged_config["dtype"] == "bfloat16"


def test_full_fine_tuning_saves_the_model(tiny_model, chat_file, tmp_path, train_inproc):
    from transformers import AutoModelForCausalLM

    out = tmp_path / "out"
    run = train_inproc(
        "--model_id", tiny_model, "--dataset_file", chat_file, "--output_dir", out, *FAST, "--method", "full", "--learning_rate", "1e-3", "--max_steps", "4"
    )
    assert run.code == 0, run.stderr
    assert summary(out)["loaded_in_4bit"] is False
    assert not (out / "adapter_config.json").exists()
    tuned = AutoModelForCausalLM.from_pretrained(out)
    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    changed = [n for (n, p), (_, q) in zip(tuned.named_parameters(), base.named_parameters()) if not torch.equal(p, q)]
    assert len(changed) > 10


def test_sigterm_checkpoints_exits_143_and_resume_reaches_the_same_result(tiny_model, chat_file, tmp_path, train_inproc):
    from safetensors.torch import load_file

    common = ["--model_id", str(tiny_model), "--dataset_file", str(chat_file), *FAST, "--max_steps", "40", "--save_steps", "1000"]
    ref_out, out = tmp_path / "ref", tmp_path / "out"
    ref = train_inproc(*common, "--output_dir", ref_out)
    assert ref.code == 0, ref.stderr

    proc = subprocess.Popen(
        [sys.executable, "-m", "trainer.train", *common, "--output_dir", str(out)],
        cwd=REPO_ROOT,
        env=trainer_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("PROGRESS ") and json.loads(line[9:]).get("event") == "step" and json.loads(line[9:])["step"] >= 3:
                proc.send_signal(signal.SIGTERM)
                break
        rest, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    killed = Run(proc.returncode, "".join(lines) + rest, err)
    assert killed.code == 143, killed.stderr
    (ckpt_event,) = killed.of("checkpoint")
    stopped_at = ckpt_event["step"]
    assert 3 <= stopped_at < 40
    assert (out / f"checkpoint-{stopped_at}" / "trainer_state.json").is_file()
    assert not killed.of("done") and not (out / "run_summary.json").exists()

    resumed = train_inproc(*common, "--output_dir", out, "--resume_from_checkpoint", "auto")
    assert resumed.code == 0, resumed.stderr
    assert resumed.of("started")[0]["step"] == stopped_at
    s = summary(out)
    assert s["resumed_from"] == str(out / f"checkpoint-{stopped_at}") and s["steps"] == 40
    # Same losses from the resume point on, and the same adapter at the end.
    ref_losses = {e["step"]: e["loss"] for e in ref.of("step")}
    for e in resumed.of("step"):
        assert e["loss"] == pytest.approx(ref_losses[e["step"]], rel=1e-4, abs=1e-5), e["step"]
    a = load_file(ref_out / "adapter_model.safetensors")
    b = load_file(out / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-5, rtol=1e-4)


def test_acceptance_command_from_a_fresh_tiny_model(tmp_path):
    """The issue's "done when": tiny model CLI, then a 3-epoch LoRA run with default flags."""
    from peft import AutoPeftModelForCausalLM
    from trainer_testlib import chat_rows

    tiny, out = tmp_path / "TINY", tmp_path / "OUT"
    data = write_jsonl(tmp_path / "chat.jsonl", chat_rows() * 2)
    env = trainer_env(HF_TOKEN="hf_do_not_print_me_123")
    made = subprocess.run([sys.executable, "-m", "trainer.tiny_model", "--out", str(tiny)], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "trainer.train",
            "--model_id",
            str(tiny),
            "--dataset_file",
            str(data),
            "--output_dir",
            str(out),
            "--method",
            "lora",
            "--num_train_epochs",
            "3",
        ],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=170,
    )
    run = Run(proc.returncode, proc.stdout, proc.stderr)
    assert run.code == 0, run.stderr
    assert_lifecycle(run)
    assert run.of("step"), "the last step is always reported"
    assert run.of("eval")  # 16 rows, val_split_size 0.1 -> 1 held-out row, evaluated at the end
    assert "hf_do_not_print_me_123" not in proc.stdout + proc.stderr
    model = AutoPeftModelForCausalLM.from_pretrained(out)
    assert model.peft_config["default"].r == 32
