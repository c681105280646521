"""Number flags have ranges (trainer/flags.py), and the api and the trainer's parser refuse the same
values: every int within int64 and its meaningful range, every float finite and within its range.

One table; each row is checked both ways: `normalise_request` (a 400 naming the flag by its JSON path)
and `trainer.flags.build_parser` (exit 2 naming the flag)."""

from __future__ import annotations

import pytest

from shared.domain.backends.kubernetes import KUBERNETES
from shared.domain.request import normalise_request
from shared.errors import ValidationFailed
from tests.fakes.policy import make_policy
from trainer import flags as trainer_flags

POLICY = make_policy(default_backend=KUBERNETES, backend_problems={KUBERNETES: None})
BODY = {"dataset_file": "gs://b/d.jsonl", "output_dir": "/tmp/o"}

# (flag, value, accepted)
CASES = [
    ("max_steps", -(2**70), False),
    ("max_steps", 2**63, False),
    ("max_steps", int("9" * 400), False),
    ("max_steps", -2, False),
    ("max_steps", 0, False),
    ("max_steps", -1, True),
    ("max_steps", 1, True),
    ("max_steps", 2**63 - 1, True),
    ("per_device_train_batch_size", 0, False),
    ("per_device_eval_batch_size", -3, False),
    ("gradient_accumulation_steps", 0, False),
    ("gradient_accumulation_steps", 1, True),
    ("lora_rank", 0, False),
    ("lora_alpha", 0, False),
    ("max_length", 0, False),
    ("max_length", 2**64, False),
    ("save_steps", 0, False),
    ("eval_steps", 0, False),
    ("logging_steps", 0, False),
    ("seed", -1, False),
    ("seed", 2**32, False),
    ("seed", 2**32 - 1, True),
    ("seed", 0, True),
    ("learning_rate", 0, False),
    ("learning_rate", -1e-4, False),
    ("learning_rate", 1e-5, True),
    ("learning_rate", 10**400, False),
    ("lora_dropout", 1.0, False),
    ("lora_dropout", 0.0, True),
    ("val_split_size", 1, False),
    ("val_split_size", -0.1, False),
    ("val_split_size", 0, True),
    ("warmup_ratio", 1.0, False),
    ("num_train_epochs", -1.0, False),
    ("num_train_epochs", 0.5, True),
]
IDS = [f"{name}={str(value)[:12]}{'…' if len(str(value)) > 12 else ''}" for name, value, _ in CASES]


@pytest.mark.parametrize("name,value,accepted", CASES, ids=IDS)
@pytest.mark.parametrize("where", ["top", "trainer_args"])
def test_api_applies_the_flag_range(name: str, value: object, accepted: bool, where: str) -> None:
    body = {**BODY, name: value} if where == "top" else {**BODY, "trainer_args": {name: value}}
    path = name if where == "top" else f"trainer_args.{name}"
    if accepted:
        req = normalise_request(body, POLICY)
        assert req.flag_values[name] == value
        return
    with pytest.raises(ValidationFailed) as info:
        normalise_request(body, POLICY)
    (error,) = info.value.errors
    assert error.field == path and error.message.startswith("must be "), error


@pytest.mark.parametrize("name,value,accepted", CASES, ids=IDS)
def test_trainer_parser_applies_the_same_range(name: str, value: object, accepted: bool, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--dataset_file=d.jsonl", f"--{name}={value}"]
    if accepted:
        assert getattr(trainer_flags.parse_args(argv), name) == value
        return
    with pytest.raises(SystemExit) as info:
        trainer_flags.parse_args(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert f"--{name}" in err and "must be " in err


def test_the_message_names_the_range() -> None:
    with pytest.raises(ValidationFailed) as info:
        normalise_request({**BODY, "trainer_args": {"max_steps": 2**63}}, POLICY)
    assert info.value.errors[0].message == "must be -1, or at least 1 and at most 9223372036854775807"
    with pytest.raises(ValidationFailed) as info:
        normalise_request({**BODY, "seed": -1}, POLICY)
    assert info.value.errors[0].message == "must be at least 0 and at most 4294967295"


def test_every_int_flag_is_within_int64_and_every_default_in_range() -> None:
    for flag in trainer_flags.FLAGS:
        if flag.type not in ("int", "float"):
            continue
        low, high = flag.bounds()
        if flag.type == "int":
            assert low is not None and high is not None
            assert -(2**63) <= low and high <= 2**63 - 1, flag.name
        assert flag.range_problem(flag.default) is None, flag.name


def test_a_huge_argument_is_shortened_in_the_parser_message(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        trainer_flags.parse_args(["--dataset_file=d", "--max_steps=" + "9" * 400])
    err = capsys.readouterr().err
    assert "(400 characters)" in err and "9" * 100 not in err
