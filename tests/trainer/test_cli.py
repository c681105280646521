"""The trainer's command line: flags and their kebab-case aliases, both ways of starting it, exit codes
for bad input (which must come before any model loads)."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest
from trainer_testlib import REPO_ROOT, trainer_env, write_jsonl

from trainer import flags, train

pytestmark = pytest.mark.trainer


def parse(*argv: str) -> argparse.Namespace:
    return flags.build_parser().parse_args(["--dataset_file", "d.jsonl", *argv])


def test_kebab_case_aliases_and_bool_switches():
    snake = parse(
        "--output_dir",
        "o",
        "--num_train_epochs",
        "3",
        "--lora_target_modules",
        "q_proj",
        "--lora_target_modules",
        "v_proj",
        "--no_gradient_checkpointing",
        "--merge_adapter",
    )
    kebab = parse(
        "--output-dir",
        "o",
        "--num-train-epochs",
        "3",
        "--lora-target-modules",
        "q_proj",
        "--lora-target-modules",
        "v_proj",
        "--no-gradient-checkpointing",
        "--merge-adapter",
    )
    assert vars(snake) == vars(kebab)
    assert snake.lora_target_modules == ["q_proj", "v_proj"]
    assert snake.gradient_checkpointing is False and snake.merge_adapter is True
    assert parse().gradient_checkpointing is True


@pytest.mark.parametrize("entry", [["-m", "trainer.train"], ["trainer/train.py"]])
def test_both_entry_points_start_outside_the_repo_root(entry, tmp_path):
    cmd = [sys.executable, *(entry if entry[0] == "-m" else [str(REPO_ROOT / entry[0])]), "--help"]
    # From another folder: `python trainer/train.py` must still import trainer.flags.
    env = trainer_env()
    if entry[0] == "-m":
        env["PYTHONPATH"] = str(REPO_ROOT)
    out = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "--dataset_file" in out.stdout and "--dataset-file" in out.stdout


def test_bad_row_exits_2_naming_the_line_before_any_model_loads(tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", [{"text": "ok"}, {"text": "ok"}])
    data.write_text(data.read_text() + '{"text": 5}\n')
    out = subprocess.run(
        [sys.executable, str(REPO_ROOT / "trainer/train.py"), "--dataset-file", str(data), "--model_id", "no/such-model", "--output_dir", str(tmp_path / "o")],
        env=trainer_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert "line 3" in out.stderr and "'text' must be a string" in out.stderr
    (line,) = [ln for ln in out.stdout.splitlines() if ln.startswith("PROGRESS ")]
    assert '"event":"error"' in line and '"exit_code":2' in line and "line 3" in line


def test_unknown_flag_exits_2(capsys):
    with pytest.raises(SystemExit) as exc:
        train.main(["--dataset_file", "d.jsonl", "--no_such_flag", "1"])
    assert exc.value.code == 2
    assert "--no_such_flag" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, problem",
    [
        pytest.param(["--method", "full", "--merge_adapter"], "--merge_adapter applies", id="merge full"),
        pytest.param(["--upload_output_to", "/local/dir"], "gs:// or s3://", id="upload local"),
        pytest.param(["--upload_output_to", "http://x/y"], "gs:// or s3://", id="upload http"),
        pytest.param(["--resume_from_checkpoint", "/no/such/ckpt"], "no such folder", id="resume"),
        pytest.param(["--model_id", "/no/such/model"], "needs a config.json", id="model path"),
    ],
)
def test_check_args(argv, problem):
    problems = train.check_args(parse(*argv))
    assert any(problem in p for p in problems), problems


@pytest.mark.parametrize(
    "name, value, problem",
    [
        pytest.param("val_split_size", 1.5, "--val_split_size must be at least 0 and less than 1", id="val split"),
        pytest.param("max_length", 0, "--max_length must be at least 1", id="max length"),
        pytest.param("learning_rate", 0.0, "--learning_rate must be greater than 0", id="lr"),
        pytest.param("max_steps", 0, "--max_steps must be -1, or at least 1", id="max steps"),
    ],
)
def test_check_args_ranges(name, value, problem):
    # A Namespace that did not come through the parser (which refuses these: tests/unit/test_flag_bounds.py).
    args = parse()
    setattr(args, name, value)
    assert any(problem in p for p in train.check_args(args)), train.check_args(args)


def test_check_args_accepts_defaults_and_hub_ids():
    assert train.check_args(parse("--model_id", "meta-llama/Llama-3.2-1B", "--upload_output_to", "s3://b/p")) == []


@pytest.mark.parametrize(
    "argv, machine, problem",
    [
        pytest.param(["--bf16", "--method", "lora"], train.Machine(cuda=False, bf16=False, bitsandbytes=True), "drop --bf16", id="bf16 on a cpu without it"),
        pytest.param(["--bf16", "--method", "lora"], train.Machine(cuda=True, bf16=False, bitsandbytes=True), "this GPU", id="bf16 on an old gpu"),
        pytest.param(["--method", "qlora"], train.Machine(cuda=True, bf16=True, bitsandbytes=False), "needs bitsandbytes", id="qlora without bitsandbytes"),
        pytest.param(["--bf16", "--method", "qlora"], train.Machine(cuda=True, bf16=True, bitsandbytes=True), None, id="fine"),
    ],
)
def test_check_machine(argv, machine, problem):
    problems = train.check_machine(parse(*argv), machine)
    if problem is None:
        assert problems == []
    else:
        assert len(problems) == 1 and problem in problems[0]


def test_impossible_choice_fails_fast_with_exit_2(monkeypatch, tmp_path, chat_file, train_inproc):
    monkeypatch.setattr(train, "probe_machine", lambda method: train.Machine(cuda=False, bf16=False, bitsandbytes=True))
    run = train_inproc("--dataset_file", chat_file, "--model_id", "unused/model", "--method", "lora", "--bf16", "--output_dir", tmp_path / "o")
    assert run.code == 2
    assert "drop --bf16" in run.stderr
    assert run.of("error")[0]["exit_code"] == 2
    assert not (tmp_path / "o").exists()


def _hub_error(cls, message: str):
    err = cls.__new__(cls)  # the real constructor wants an HTTP response
    Exception.__init__(err, message)
    return err


@pytest.mark.parametrize("token, expected", [(None, "set HF_TOKEN"), ("hf_x", "HF_TOKEN has no access")])
def test_hub_refusals_are_bad_input_with_a_hint(monkeypatch, token, expected):
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    if token:
        monkeypatch.setenv("HF_TOKEN", token)
    else:
        monkeypatch.delenv("HF_TOKEN", raising=False)
    for cls, what in ((GatedRepoError, "is gated"), (RepositoryNotFoundError, "no such model")):
        try:  # as transformers does it: an OSError raised from the hub's error
            try:
                raise _hub_error(cls, "401")
            except cls as inner:
                raise OSError("cannot load m/x") from inner
        except OSError as outer:
            problem = train.hub_access_problem(outer, "m/x")
        assert what in problem and expected in problem
    assert train.hub_access_problem(OSError("connection reset"), "m/x") is None
