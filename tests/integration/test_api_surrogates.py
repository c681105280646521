r"""Lone surrogates in `POST /train`: `"\ud800"` is a valid JSON escape but no text (it can't be encoded,
stored, logged or handed to the trainer). Wherever one appears the api answers 400 JSON naming the field,
under both servers (the `api` fixture), never 500; a proper surrogate pair (an emoji) is ordinary text.
"""

from __future__ import annotations

import json

import pytest
import requests

from shared import jsonutil
from shared.domain.request import request_fingerprint
from shared.errors import ValidationFailed
from shared.ports import JobQuery

BASE = '"dataset_file":"gs://b/d.jsonl","output_dir":"/o"'


def post_raw(url: str, members: str) -> requests.Response:
    """POST /train with the body `{BASE, members}` exactly as written (escapes kept as JSON escapes)."""
    return post_json(url, ("{" + ",".join(m for m in (BASE, members) if m) + "}").encode("ascii"))


def post_json(url: str, raw: bytes) -> requests.Response:
    return requests.post(f"{url}/train", data=raw, headers={"Content-Type": "application/json"}, timeout=10)


def refused(r: requests.Response) -> list[dict[str, str]]:
    assert r.status_code == 400, (r.status_code, r.text)
    assert r.headers["Content-Type"].startswith("application/json")
    body = json.loads(r.content.decode("utf-8"))  # valid UTF-8 JSON, even when a field name holds the surrogate
    assert body["error"].startswith("Invalid request")
    return body["errors"]


# (body members, the field the 400 must name)
IN_VALUES = [
    ('"labels":{"team":"\\ud800"}', "labels.team"),
    ('"env":{"FOO":"a\\ud800b"}', "env.FOO"),
    ('"job_name":"run \\udc00"', "job_name"),
    ('"hf_token":"\\ud800"', "hf_token"),
    ('"trainer_args":{"hf_token":"x\\udbff"}', "trainer_args.hf_token"),
    ('"trainer_args":{"resume_from_checkpoint":"ck\\ud800"}', "trainer_args.resume_from_checkpoint"),
    ('"trainer_args":{"lora_target_modules":["q_proj","\\ud800"]}', "trainer_args.lora_target_modules[1]"),
    ('"model_id":"m\\ud800"', "model_id"),
]
# (body members, the prefix of the field named: the key itself, surrogate included)
IN_KEYS = [
    ('"trainer_args":{"\\ud800lr":1}', "trainer_args."),
    ('"labels":{"t\\ud800":"v"}', "labels."),
    ('"env":{"A\\udfff":"v"}', "env."),
    ('"\\ud800":1', ""),
]


def has_lone_surrogate(text: str) -> bool:
    return any(0xD800 <= ord(c) <= 0xDFFF for c in text)


def test_a_lone_surrogate_is_a_400_naming_the_field(api) -> None:
    # One server for every case (a served app costs half a second to stop).
    url, bus, container = api()
    for members, field in IN_VALUES:
        fields = [e["field"] for e in refused(post_raw(url, members))]
        assert field in fields, (members, fields)
    for members, prefix in IN_KEYS:
        fields = [e["field"] for e in refused(post_raw(url, members))]
        assert any(f.startswith(prefix) and has_lone_surrogate(f) for f in fields), (members, fields)
    r = post_raw(url, '"env":{"HF_TOKEN":"hf_supersecret\\ud800"}')
    assert [e["field"] for e in refused(r)] == ["env.HF_TOKEN"]
    assert "hf_supersecret" not in r.text  # the secret is not echoed
    # A local path in \udc80-\udcff (what os.fsencode maps back to raw bytes) resolves; the fingerprint refuses it.
    r = post_json(url, b'{"backend":"local","dataset_file":"/tmp/a\\udc80.jsonl","output_dir":"/tmp/o"}')
    assert [e["field"] for e in refused(r)] == ["dataset_file"]
    assert container.store.list(JobQuery()).items == [] and bus.messages == []


def test_a_surrogate_pair_is_text(api) -> None:
    url, bus, container = api()
    r = post_raw(url, '"labels":{"mood":"\\ud83d\\ude00"},"job_name":"\\ud83d\\ude80 launch"')
    assert r.status_code == 202, r.text
    job = r.json()["job"]
    assert job["labels"] == {"mood": "😀"} and job["name"] == "🚀 launch"
    assert container.store.get(job["id"]).labels == {"mood": "😀"}
    got = requests.get(f"{url}/jobs/{job['id']}", timeout=10)
    assert got.status_code == 200 and got.json()["job"]["labels"] == {"mood": "😀"}
    assert len(bus.messages) == 1


def test_local_paths_with_a_lone_surrogate_are_refused(api) -> None:
    url, _, _ = api()
    r = post_json(url, b'{"backend":"local","dataset_file":"/tmp/a\\ud800.jsonl","output_dir":"/tmp/o"}')
    assert "dataset_file" in [e["field"] for e in refused(r)]


# ---- units -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("sort_keys", [False, True])
def test_jsonutil_dumps_a_lone_surrogate_as_valid_json(sort_keys: bool) -> None:
    value = {"field": "labels.\ud800", "k\udfff": ["a\udc00b", 1, None], "ok": "é😀"}
    out = jsonutil.dumps(value, sort_keys=sort_keys)
    assert isinstance(out, bytes)
    text = out.decode("utf-8")  # strict: valid UTF-8
    assert json.loads(text) == value
    assert jsonutil.loads(out) == value
    assert "\\ud800" in text and "\\udfff" in text and "\\udc00" in text  # escaped, not raw


def test_request_fingerprint_names_every_field_with_a_lone_surrogate() -> None:
    body = {"dataset_file": "gs://b/d", "labels": {"a": "\ud800", "ok": "😀"}, "trainer_args": {"l": ["x", "\udc00"]}, "env": {"\udfff": "v"}}
    with pytest.raises(ValidationFailed) as info:
        request_fingerprint(body)
    fields = [e.field for e in info.value.errors]
    assert fields == ["labels.a", "trainer_args.l[1]", "env"]  # a bad key is named by its parent
    assert request_fingerprint({"labels": {"ok": "😀"}}) == request_fingerprint({"labels": {"ok": "\U0001f600"}})
