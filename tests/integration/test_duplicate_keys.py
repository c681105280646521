"""Issue 12 item 8 over real HTTP (Flask and ASGI) and through batch submissions: a key repeated in one
JSON object is a 400 naming it by its path (not "the last one wins"), out-of-range integer flags are a
400 naming the flag, and an `hf_token` that differs from `env.HF_TOKEN` is a 400 naming both. Nothing is
stored or published for any of them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests

from functions.wiring import Container
from shared import jsonutil
from shared.adapters.sqlite_store import SqliteJobStore
from shared.messages import Message
from shared.ports import JobQuery
from tests.integration.conftest import RecordingBus, make_settings

HEAD = '{"dataset_file": "gs://b/d.jsonl", "output_dir": "/tmp/o"'


def post(url: str, raw: str | bytes) -> requests.Response:
    return requests.post(f"{url}/train", data=raw, headers={"Content-Type": "application/json"}, timeout=30)


def refused(response: requests.Response, container: Container, bus: RecordingBus) -> dict[str, str]:
    assert response.status_code == 400, response.text
    errors = {e["field"]: e["message"] for e in response.json()["errors"]}
    assert container.store.list(JobQuery(limit=10)).items == [] and bus.messages == []
    return errors


@pytest.mark.parametrize(
    "raw, field",
    [
        ('{"backend": "local", "backend": "kubernetes", "dataset_file": "gs://b/d.jsonl", "output_dir": "/tmp/o"}', "backend"),
        (HEAD + ', "trainer_args": {"max_steps": 5, "max_steps": 10}}', "trainer_args.max_steps"),
        (HEAD + ', "env": {"HF_TOKEN": "a", "HF_TOKEN": "b"}}', "env.HF_TOKEN"),
        (HEAD + ', "output_dir": "/tmp/other"}', "output_dir"),
        # The same key spelled with an escape: still the same key.
        ('{"b\\u0061ckend": "local", "backend": "kubernetes", "dataset_file": "gs://b/d.jsonl", "output_dir": "/tmp/o"}', "backend"),
        # Spaces before the colon, a colon inside the dropped value.
        (HEAD + ', "job_name" : "a:b", "job_name" : "c"}', "job_name"),
    ],
    ids=["backend", "nested", "env", "required-field", "escaped-key", "spaced"],
)
def test_a_repeated_key_is_400_naming_its_path(api, raw: str, field: str) -> None:
    url, bus, container = api()
    errors = refused(post(url, raw), container, bus)
    assert errors == {field: "is given more than once"}


def test_the_same_key_in_different_objects_is_accepted(api) -> None:
    url, bus, container = api()
    r = post(url, HEAD + ', "seed": 1, "trainer_args": {"seed": 2}, "labels": {"seed": "x"}}')
    assert r.status_code == 202, r.text
    assert len(bus.messages) == 1


@pytest.mark.parametrize(
    "value", ["-1180591620717411303424", "9223372036854775808", "9" * 400, "0", "-2"], ids=["-2^70", "2^63", "400-digits", "zero", "minus-two"]
)
@pytest.mark.parametrize("where", ["top", "trainer_args"])
def test_max_steps_out_of_range_is_400_naming_it(api, value: str, where: str) -> None:
    url, bus, container = api()
    raw = HEAD + (f', "max_steps": {value}}}' if where == "top" else f', "trainer_args": {{"max_steps": {value}}}}}')
    errors = refused(post(url, raw), container, bus)
    field = "max_steps" if where == "top" else "trainer_args.max_steps"
    assert list(errors) == [field] and errors[field].startswith("must be -1, or at least 1"), errors


def test_hf_token_that_differs_from_env_is_400_naming_both(api) -> None:
    url, bus, container = api()
    r = post(url, HEAD + ', "hf_token": "hf_top_secret", "env": {"HF_TOKEN": "hf_env_secret"}}')
    errors = refused(r, container, bus)
    assert "hf_token" in errors and "env.HF_TOKEN" in errors["hf_token"]
    assert "secret" not in r.text  # neither value is echoed
    same = post(url, HEAD + ', "hf_token": "hf_same", "env": {"HF_TOKEN": "hf_same"}}')
    assert same.status_code == 202, same.text


def test_batch_items_with_a_repeated_key_are_rejected_alone(tmp_path: Path) -> None:
    bus = RecordingBus()
    container = Container(settings=make_settings(), store=SqliteJobStore(tmp_path / "jobs.db"), bus=bus)
    good = HEAD + "}"
    array = f'[{good}, {{"backend": "local", "backend": "kubernetes", "dataset_file": "gs://b/x", "output_dir": "/o"}}, {good}]'
    result = container.batch.handle(Message(id="m-array", topic="train-submissions", data=None, attributes={"batch_id": "dup-a"}, raw=array.encode()))
    assert len(result.accepted) == 2 and result.rejected == [1]
    (rejection,) = container.store.list_rejections("dup-a")
    assert rejection.errors == [{"field": "backend", "message": "is given more than once"}]

    lines = f'{good}\n{HEAD}, "trainer_args": {{"seed": 1, "seed": 2}}}}\n'
    result = container.batch.handle(Message(id="m-lines", topic="train-submissions", data=None, attributes={"batch_id": "dup-l"}, raw=lines.encode()))
    assert len(result.accepted) == 1 and result.rejected == [1]
    assert container.store.list_rejections("dup-l")[0].errors == [{"field": "trainer_args.seed", "message": "is given more than once"}]

    one = f'{HEAD}, "backend": "local", "backend": "kubernetes"}}'
    result = container.batch.handle(Message(id="m-one", topic="train-submissions", data=None, attributes={"batch_id": "dup-o"}, raw=one.encode()))
    assert result.accepted == [] and result.rejected == [0]
    launches = [m for m in bus.messages if m[0] == "train-requests"]
    assert len(launches) == 3


# (raw, the repeated keys' paths or None when there is none) for the parser itself.
PARSE_CASES = [
    (b'{"a":1,"a":2}', ["a"]),
    (b'{"a":{"b":1,"b":2},"c":[{"d":1},{"d":2,"d":3}]}', ["a.b", "c[1].d"]),
    (b'[{"x":1},{"y":[{"u":1,"u":2}]}]', ["[1].y[0].u"]),
    (b'{"a":"\\u003a","a":"\\u003a"}', ["a"]),  # escapes: colons the text does not show
    (b'{"":1,"":2}', ['""']),
    (b'{"a":":x","a":1}', ["a"]),
    (b'{"n":12345678901234567890,"n":1}', ["n"]),  # the long-number path (json) checks too
    (b'{"a":1,"b":{"a":2},"c":"x:y"}', None),
    (b'{"url":"gs://b/p","u\\u0072l2":"s3://x"}', None),
]


@pytest.mark.parametrize("raw, paths", PARSE_CASES, ids=[c[0].decode()[:30] for c in PARSE_CASES])
def test_loads_strict_finds_every_repeated_key(raw: bytes, paths: list[str] | None) -> None:
    if paths is None:
        assert jsonutil.loads_strict(raw) == json.loads(raw)
        return
    with pytest.raises(jsonutil.DuplicateKeyError) as info:
        jsonutil.loads_strict(raw)
    assert info.value.paths == paths
