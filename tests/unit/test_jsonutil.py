"""shared/jsonutil.py: orjson on the hot paths, the standard library where orjson refuses.

`dumps` must write what `json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()` writes
(compact, UTF-8, non-ASCII kept as is) for the values the stores and the api write, whichever library
writes it; `loads` must read everything either library wrote (NaN / Infinity from `json` included).
"""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared import jsonutil

PROFILE = settings(deadline=None, max_examples=100)

# Text as it reaches us from decoded UTF-8 (no lone surrogates: those cannot be encoded at all).
TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=20)
INT64 = st.integers(min_value=-(2**63), max_value=2**64 - 1)  # what orjson writes itself
BIG_INT = st.one_of(st.integers(min_value=2**64), st.integers(max_value=-(2**63) - 1))
FINITE = st.floats(allow_nan=False, allow_infinity=False)


def json_values(leaves: st.SearchStrategy) -> st.SearchStrategy:
    return st.recursive(leaves, lambda children: st.lists(children, max_size=5) | st.dictionaries(TEXT, children, max_size=5), max_leaves=25)


ORDINARY = json_values(st.none() | st.booleans() | INT64 | TEXT)


def compact(value) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


# ---- dumps -----------------------------------------------------------------------------------------


def test_dumps_is_compact_utf8() -> None:
    value = {"name": "modèle ✓", "args": ["--lr=1e-4", 3, None, True], "labels": {"k": "v"}, "nested": [[{}], []]}
    out = jsonutil.dumps(value)
    assert isinstance(out, bytes)
    assert out == '{"name":"modèle ✓","args":["--lr=1e-4",3,null,true],"labels":{"k":"v"},"nested":[[{}],[]]}'.encode()
    assert b" " not in out.replace("modèle ✓".encode(), b"")  # no separator spaces
    # Control characters are escaped as json escapes them; U+2028 and '/' are kept as is.
    assert jsonutil.dumps('a\x00\x1f\n"\\\u2028</') == compact('a\x00\x1f\n"\\\u2028</') == b'"a\\u0000\\u001f\\n\\"\\\\\xe2\x80\xa8</"'


@PROFILE
@given(ORDINARY)
def test_dumps_equals_compact_json_for_ordinary_values(value) -> None:
    out = jsonutil.dumps(value)
    assert out == compact(value)
    assert jsonutil.loads(out) == value and jsonutil.loads(out.decode()) == value


@PROFILE
@given(json_values(st.none() | st.booleans() | INT64 | TEXT | FINITE))
def test_finite_floats_read_back_exactly(value) -> None:
    # Bytes may differ from json's for some exponents (orjson writes 1e-7 where json writes 1e-07);
    # the value read back, by either library, may not.
    out = jsonutil.dumps(value)
    assert jsonutil.loads(out) == value
    assert json.loads(out) == value


@PROFILE
@given(BIG_INT, ORDINARY)
def test_ints_beyond_64_bits_fall_back_to_json(big: int, rest) -> None:
    value = {"progress": {"step": big}, "rest": [rest, "é"]}
    assert jsonutil.dumps(value) == compact(value)
    # Read back, the big integer is a float (the documented difference); the rest is exact.
    back = jsonutil.loads(jsonutil.dumps(value))
    assert back["progress"]["step"] == float(big) and isinstance(back["progress"]["step"], float)
    assert back["rest"] == [rest, "é"]


def test_64_bit_boundaries() -> None:
    for n in (2**64 - 1, -(2**63), 2**64, -(2**63) - 1, 2**100):
        assert jsonutil.dumps(n) == str(n).encode()
    assert jsonutil.loads(jsonutil.dumps(2**64 - 1)) == 2**64 - 1  # still exact at the edge
    assert jsonutil.loads(jsonutil.dumps(-(2**63))) == -(2**63)


@PROFILE
@given(st.dictionaries(st.integers() | st.booleans() | st.none() | FINITE, ORDINARY, min_size=1, max_size=5), ORDINARY)
def test_non_str_keys_fall_back_to_json(keyed: dict, rest) -> None:
    value = {"logCursors": keyed, "rest": rest}
    assert jsonutil.dumps(value) == compact(value)


def test_non_str_keys_are_written_as_json_writes_them() -> None:
    assert jsonutil.dumps({1: "a", None: [1], False: 2, 2.5: "é"}) == '{"1":"a","null":[1],"false":2,"2.5":"é"}'.encode()


def test_unknown_types_are_refused_by_both() -> None:
    with pytest.raises(TypeError):
        jsonutil.dumps({"x": object()})
    with pytest.raises(TypeError):
        jsonutil.dumps({"x": {1, 2}})


# ---- loads -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("as_text", [False, True], ids=["bytes", "str"])
def test_loads_reads_json_written_nan_and_infinity(as_text: bool) -> None:
    raw = json.dumps({"progress": {"loss": float("nan"), "best": float("inf"), "worst": float("-inf")}, "n": 1})
    assert "NaN" in raw and "Infinity" in raw  # orjson refuses to read this; json wrote it
    value = jsonutil.loads(raw if as_text else raw.encode())
    assert math.isnan(value["progress"]["loss"])
    assert value["progress"]["best"] == math.inf and value["progress"]["worst"] == -math.inf
    assert value["n"] == 1


def test_loads_reads_escaped_lone_surrogates() -> None:
    # orjson refuses "\ud800" (not a character); json reads it, as it did when the document was written.
    assert jsonutil.loads(b'{"m":"a\\ud800b"}') == {"m": "a\ud800b"}
    assert jsonutil.loads('"\\ud83d\\ude00"') == "\U0001f600"  # a proper pair is one character


@pytest.mark.parametrize("raw", [b"", b"{bad", b"[1,]", b'{"a":1', b"\xff", b"NaNx"])
def test_loads_refuses_malformed_json_with_value_error(raw: bytes) -> None:
    with pytest.raises(ValueError):
        jsonutil.loads(raw)


# ---- without orjson (a bare checkout) --------------------------------------------------------------


def test_same_answers_without_orjson(monkeypatch: pytest.MonkeyPatch) -> None:
    value = {"name": "modèle", "n": [1, 2**64 - 1, -(2**63), None, True, 0.5], "labels": {"k": "v"}}
    with_orjson = jsonutil.dumps(value)
    monkeypatch.setattr(jsonutil, "orjson", None)
    assert jsonutil.dumps(value) == with_orjson == compact(value)
    assert jsonutil.loads(with_orjson) == value and jsonutil.loads(with_orjson.decode()) == value
    assert math.isnan(jsonutil.loads(b"NaN"))
