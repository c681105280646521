"""Property tests of request normalisation (hypothesis): whatever JSON arrives, the answer is a result or
a ValidationFailed naming fields that exist in the body — never another exception; whatever is accepted
renders flags that the trainer's own parser reads back to the same values."""

from __future__ import annotations

import json
import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.domain.backends.kubernetes import KUBERNETES
from shared.domain.backends.local import LOCAL
from shared.domain.backends.vertex import VERTEX
from shared.domain.request import RESERVED_KEYS, normalise_request
from shared.errors import ValidationFailed
from tests.fakes.policy import make_policy
from trainer import flags as trainer_flags

POLICY = make_policy(
    default_backend=KUBERNETES,
    backend_problems={KUBERNETES: None, VERTEX: None, LOCAL: None},
    local_roots=("/repo", "/tmp"),
    local_base="/repo",
)

json_scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**63) | st.floats(allow_nan=False) | st.text(max_size=30)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=12)
keys = st.sampled_from(sorted(trainer_flags.BY_NAME) + sorted(RESERVED_KEYS) + ["", "bad key", "-x", "a=b", "ünïcode", "lr"]) | st.text(max_size=12)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(keys, json_values, max_size=8) | json_values)
def test_any_json_is_accepted_or_rejected_cleanly(body) -> None:
    try:
        req = normalise_request(body, POLICY)
    except ValidationFailed as exc:
        assert exc.errors, "a rejection names at least one field"
        for err in exc.errors:
            assert err.field and err.message
            if not isinstance(body, dict):
                assert err.field == "body"
                continue
            names = [*body, *(json.dumps(k) for k in body), "body", "model_id", "dataset_file", "output_dir", "backend", "hf_token"]
            assert any(err.field == n or err.field.startswith((f"{n}.", f"{n}[")) for n in names), (err, body)
        return
    assert isinstance(body, dict)
    trainer_flags.parse_args(list(req.args))  # whatever is accepted parses


def flag_values():
    def strategy(flag: trainer_flags.Flag):
        text = st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=20)
        low, high = flag.bounds()  # values inside the flag's own range (the rest are refused)
        if flag.type == "int":
            inside = st.integers(max(low, -(10**9)), min(high, 10**9))
            return st.sampled_from(flag.also) | inside if flag.also else inside
        if flag.type == "float":
            floats = st.floats(
                low, high, exclude_min=flag.minimum_exclusive, exclude_max=flag.maximum_exclusive, allow_nan=False, allow_infinity=False, width=64
            )
            ints = [v for v in range(-1000, 1001) if flag.range_problem(v) is None]
            return floats | st.sampled_from(ints)
        if flag.type == "bool":
            return st.booleans()
        if flag.type == "choice":
            return st.sampled_from(flag.choices)
        if flag.type == "list":
            return st.lists(text, min_size=1, max_size=3)
        return text

    names = [f for f in trainer_flags.FLAGS if f.name not in ("dataset_file", "output_dir", "upload_output_to")]
    return st.fixed_dictionaries({}, optional={f.name: strategy(f) for f in names})


@settings(max_examples=300)
@given(flag_values())
def test_accepted_flags_round_trip_through_the_trainer_parser(values) -> None:
    body = {"dataset_file": "gs://b/d.jsonl", "output_dir": "/tmp/o", "trainer_args": values}
    req = normalise_request(body, POLICY)
    parsed = trainer_flags.parse_args(list(req.args))
    for name, value in values.items():
        got = getattr(parsed, name)
        flag = trainer_flags.BY_NAME[name]
        if flag.type == "float":
            assert got == float(value) or (math.isclose(got, float(value)))
        else:
            assert got == value, (name, value, got)
