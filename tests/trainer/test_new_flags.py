"""The studio's customisation flags reach the model and its configs: --trainable_layers (LoRA and full),
--fp16, --bnb_4bit_* (the QLoRA config, built without bitsandbytes), --lora_bias and --use_rslora."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from trainer_testlib import FAST

from trainer import flags, train

pytestmark = pytest.mark.trainer

CPU = train.Machine(cuda=False, bf16=False, bitsandbytes=False)
AMPERE = train.Machine(cuda=True, bf16=True, bitsandbytes=True)


def parse(*argv: str):
    return flags.parse_args(["--dataset_file", "d.jsonl", *argv])


def adapter_config(out: Path) -> dict:
    return json.loads((out / "adapter_config.json").read_text())


def adapter_keys(out: Path) -> set[str]:
    from safetensors import safe_open

    with safe_open(str(out / "adapter_model.safetensors"), "pt") as fh:
        return set(fh.keys())


# ---- precision -----------------------------------------------------------------------------------------


def test_fp16_needs_cuda_and_excludes_bf16():
    assert "--bf16 and --fp16 exclude each other" in "; ".join(train.check_args(parse("--bf16", "--fp16")))
    assert any("--fp16 needs a CUDA GPU" in p for p in train.check_machine(parse("--fp16"), CPU))
    assert train.check_machine(parse("--fp16", "--method", "lora"), AMPERE) == []


def test_fp16_reaches_the_trainer_config_and_is_refused_on_this_cpu(tiny_model, chat_file, tmp_path, train_inproc):
    config = train.sft_config(parse("--fp16", "--output_dir", str(tmp_path)), CPU, has_eval=False)
    assert config.fp16 is True and config.bf16 is False
    run = train_inproc("--model_id", tiny_model, "--dataset_file", chat_file, "--output_dir", tmp_path, *FAST, "--max_steps", "1", "--fp16")
    assert run.code == 2 and "--fp16 needs a CUDA GPU" in run.stderr


# ---- QLoRA ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv,machine,expected",
    [
        ((), CPU, ("nf4", True, torch.float32)),  # today's behaviour
        ((), AMPERE, ("nf4", True, torch.bfloat16)),
        (("--bnb_4bit_quant_type", "fp4", "--no_bnb_4bit_use_double_quant", "--bnb_4bit_compute_dtype", "float16"), AMPERE, ("fp4", False, torch.float16)),
        (("--bnb_4bit_compute_dtype", "bfloat16"), CPU, ("nf4", True, torch.bfloat16)),
    ],
)
def test_bnb_options_reach_the_quantization_config(argv, machine, expected):
    config = train.quantization_config(parse(*argv), machine)
    assert config.load_in_4bit
    assert (config.bnb_4bit_quant_type, config.bnb_4bit_use_double_quant, config.bnb_4bit_compute_dtype) == expected


# ---- LoRA options --------------------------------------------------------------------------------------


def test_lora_bias_and_rslora_reach_the_adapter(tiny_model, chat_file, tmp_path, train_inproc):
    run = train_inproc(
        "--model_id", tiny_model, "--dataset_file", chat_file, "--output_dir", tmp_path, *FAST, "--max_steps", "1", "--lora_bias", "all", "--use_rslora"
    )
    assert run.code == 0, run.stderr
    config = adapter_config(tmp_path)
    assert config["bias"] == "all" and config["use_rslora"] is True
    assert train.lora_config(parse(), "all-linear").bias == "none"  # the defaults stay peft's
    assert train.lora_config(parse(), "all-linear").use_rslora is False


# ---- trainable_layers ----------------------------------------------------------------------------------


NAMES = [
    "model",
    "model.embed_tokens",
    "model.layers",
    "model.layers.0",
    "model.layers.0.self_attn",
    "model.layers.0.self_attn.q_proj",
    "model.layers.1",
    "model.layers.1.mlp",
    "model.layers.10",
    "lm_head",
]


@pytest.mark.parametrize(
    "prefixes,resolved,problem",
    [
        (["model.layers.1"], ["model.layers.1"], None),
        (["decoder.layers.0"], ["model.layers.0"], None),  # the studio's generic name, mapped onto Llama's
        (["model.layers.0.self_attn"], ["model.layers.0.self_attn"], None),
        (["model.layers.2"], [], "--trainable_layers model.layers.2: no module of this model is named so"),
        (["model.layer"], [], "its modules are named like model.layers.0, model.layers.1, model.layers.10"),
        (["decoder.self_attn"], [], "ambiguous"),  # no such name here, but see below
    ],
)
def test_resolve_layers(prefixes, resolved, problem):
    names = NAMES + (["model.layers.1.self_attn"] if prefixes == ["decoder.self_attn"] else [])
    got, problems = train.resolve_layers(prefixes, names)
    assert got == resolved
    if problem is None:
        assert problems == []
    else:
        assert len(problems) == 1 and problem in problems[0]


def test_lora_adapts_only_modules_under_trainable_layers(tiny_model, chat_file, tmp_path, train_inproc):
    run = train_inproc(
        "--model_id",
        tiny_model,
        "--dataset_file",
        chat_file,
        "--output_dir",
        tmp_path / "a",
        *FAST,
        "--max_steps",
        "1",
        "--trainable_layers",
        "decoder.layers.0",
    )
    assert run.code == 0, run.stderr
    assert "--trainable_layers decoder.layers.0: this model's model.layers.0" in run.stderr
    targets = adapter_config(tmp_path / "a")["target_modules"]
    assert targets and all(t.startswith("model.layers.0.") for t in targets)
    keys = adapter_keys(tmp_path / "a")
    assert keys and all(".layers.0." in k for k in keys)
    assert any("mlp" in k for k in keys) and any("self_attn" in k for k in keys)  # every linear layer of it

    run = train_inproc(
        "--model_id",
        tiny_model,
        "--dataset_file",
        chat_file,
        "--output_dir",
        tmp_path / "b",
        *FAST,
        "--max_steps",
        "1",
        "--trainable_layers",
        "model.layers.1",
        "--lora_target_modules",
        "q_proj",
        "--lora_target_modules",
        "v_proj",
    )
    assert run.code == 0, run.stderr
    assert sorted(adapter_config(tmp_path / "b")["target_modules"]) == ["model.layers.1.self_attn.q_proj", "model.layers.1.self_attn.v_proj"]


def test_full_fine_tuning_changes_only_the_trainable_layers(tiny_model, chat_file, tmp_path, train_inproc):
    from safetensors.torch import load_file

    out = tmp_path / "full"
    run = train_inproc(
        "--model_id",
        tiny_model,
        "--dataset_file",
        chat_file,
        "--output_dir",
        out,
        *FAST,
        "--method",
        "full",
        "--max_steps",
        "2",
        "--trainable_layers",
        "model.layers.1",
    )
    assert run.code == 0, run.stderr
    before = load_file(str(Path(tiny_model) / "model.safetensors"))
    after = load_file(str(out / "model.safetensors"))
    changed = {k for k in before if not torch.equal(before[k].float(), after[k].float())}
    assert changed, "nothing trained"
    assert all(k.startswith("model.layers.1.") for k in changed), sorted(changed)
    # every weight matrix of the layer moved (norm weights may too); nothing outside it did
    assert {k for k in changed if k.endswith("proj.weight")} == {k for k in before if k.startswith("model.layers.1.") and k.endswith("proj.weight")}


def test_a_prefix_matching_nothing_fails_before_training(tiny_model, chat_file, tmp_path, train_inproc):
    for method in ("lora", "full"):
        run = train_inproc(
            "--model_id",
            tiny_model,
            "--dataset_file",
            chat_file,
            "--output_dir",
            tmp_path / method,
            *FAST,
            "--method",
            method,
            "--max_steps",
            "1",
            "--trainable_layers",
            "encoder.block.0",
        )
        assert run.code == 2
        assert "--trainable_layers encoder.block.0: no module of this model" in run.stderr
        assert "model.layers.0" in run.stderr
        assert not run.of("started")
    run = train_inproc(
        "--model_id",
        tiny_model,
        "--dataset_file",
        chat_file,
        "--output_dir",
        tmp_path / "none",
        *FAST,
        "--max_steps",
        "1",
        "--trainable_layers",
        "model.layers.0",
        "--lora_target_modules",
        "no_such_proj",
    )
    assert run.code == 2 and "no --lora_target_modules no_such_proj lies under them" in run.stderr
