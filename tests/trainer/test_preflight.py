"""The preflight: the old trainer's AML rows (decision objects), the dataset report, truncation and drops,
the 10-row floor, `--dry_run` (tokenizer only), models from a bucket, revision and remote code."""

from __future__ import annotations

import json
import uuid

import pytest
from trainer_testlib import CAPITALS, FAST, chat_rows, write_jsonl

from trainer import data, preflight, train

pytestmark = pytest.mark.trainer

LABELS = ("CLEAR", "REVIEW", "SAR", "BLOCK")


def aml_rows() -> list[dict]:
    """Rows as the old trainer wrote them: decision objects next to facts and fired_rules."""
    return [
        {
            "facts": {"country": country, "amount": 1500 * (i + 1), "pep": i % 3 == 0},
            "decision": {"aml_decision": LABELS[i % 4], "reasons": [f"rule R{i % 4} on {country}"], "escalation_level": i % 4},
            "fired_rules": [f"R{i % 4}"] if i % 4 else [],
        }
        for i, (country, _) in enumerate(CAPITALS)
    ]


def test_aml_decision_object_renders_facts_and_decision_as_json():
    row = aml_rows()[1]
    ex = data.render_aml(row)
    assert json.dumps(row["facts"]) in ex["prompt"]
    assert json.loads(ex["completion"]) == row["decision"]  # what the rule engine parses back
    assert ex["completion"].startswith('{"aml_decision": "REVIEW"')


@pytest.mark.parametrize(
    "decision, fragment",
    [
        pytest.param({"reasons": ["x"], "escalation_level": 1}, "no 'aml_decision'", id="no label"),
        pytest.param({"aml_decision": " "}, "no 'aml_decision'", id="blank label"),
        pytest.param({"aml_decision": "SAR", "escalation_level": 4}, "escalation_level' must be an integer 0-3", id="level"),
        pytest.param({"aml_decision": "SAR", "reasons": "x"}, "reasons' must be a list", id="reasons"),
    ],
)
def test_bad_aml_decision_is_a_bad_row_naming_its_line(decision, fragment):
    lines = [json.dumps(r) for r in aml_rows()[:2]] + [json.dumps({**aml_rows()[2], "decision": decision})]
    with pytest.raises(data.DatasetError) as err:
        data.parse_lines(lines, uri="aml.jsonl")
    assert err.value.line == 3 and fragment in err.value.reason


def test_other_labels_and_the_string_form_still_work():
    rows = [{**aml_rows()[0], "decision": {"aml_decision": "ESCALATE_TO_MLRO"}}, {**aml_rows()[1], "decision": "SAR"}]
    ds = data.parse_lines([json.dumps(r) for r in rows])
    assert json.loads(ds.examples[0]["completion"]) == {"aml_decision": "ESCALATE_TO_MLRO"}
    assert ds.examples[1]["completion"].startswith("Decision: SAR")


def test_old_trainer_aml_rows_train_and_the_loss_falls(tiny_model, tmp_path, train_inproc):
    dataset = write_jsonl(tmp_path / "aml.jsonl", aml_rows())
    out = tmp_path / "out"
    run = train_inproc("--model_id", tiny_model, "--dataset_file", dataset, "--output_dir", out, *FAST, "--max_steps", "30")
    assert run.code == 0, run.stderr
    assert run.losses[-1] <= run.losses[0] / 2, run.losses
    (report,) = run.of("dataset")
    assert report["format"] == "aml" and report["train_rows"] == len(CAPITALS)
    rendered = report["first_example"]["rendered"]
    # The prompt (instruction + facts as JSON) is context; the decision JSON is what is trained.
    start = rendered.index(preflight.TRAIN_OPEN)
    assert '"country": "france"' in rendered[:start]
    assert '{"aml_decision": "CLEAR"' in rendered[start:] and '"aml_decision"' not in rendered[:start]
    summary = json.loads((out / "run_summary.json").read_text())
    assert summary["preflight"]["first_example"] == report["first_example"]


def test_dry_run_reports_and_exits_0_without_loading_weights(tiny_model, chat_file, tmp_path, train_inproc, monkeypatch):
    def no_weights(*a, **kw):
        raise AssertionError("a dry run loaded the model")

    monkeypatch.setattr(train, "load_model", no_weights)
    out = tmp_path / "out"
    run = train_inproc("--model_id", tiny_model, "--dataset_file", chat_file, "--output_dir", out, *FAST, "--val_split_size", "0.15", "--dry_run")
    assert run.code == 0, run.stderr
    assert [e["event"] for e in run.events] == ["dataset"]
    (report,) = run.of("dataset")
    assert report["dry_run"] is True and report["rows"] == len(chat_rows())
    assert report["train_rows"] + report["eval_rows"] == report["rows"] and report["eval_rows"] == 1
    assert report["sources"][0]["train_rows"] == report["train_rows"]
    assert 0 < report["tokens"]["p50"] <= report["tokens"]["p95"] <= report["tokens"]["max"]
    assert report["truncated_share"] == 0.0 and report["dropped"] == []
    assert "What is the capital of" in report["first_example"]["rendered"]
    # A person reading the log sees the same at a glance.
    assert "dataset: 12 rows (messages): 11 train, 1 eval" in run.stderr and "first example" in run.stderr
    summary = json.loads((out / "run_summary.json").read_text())
    assert summary["status"] == "dry_run" and summary["preflight"]["rows"] == len(chat_rows())


def test_long_rows_are_truncated_and_reported_or_dropped(tiny_model, tmp_path, train_inproc):
    rows = chat_rows()
    long_answer = " ".join(["the capital is far away"] * 40)
    rows += [{"messages": [{"role": "user", "content": "Tell me everything."}, {"role": "assistant", "content": long_answer}]}] * 2
    dataset = write_jsonl(tmp_path / "d.jsonl", rows)
    common = ["--model_id", tiny_model, "--dataset_file", dataset, *FAST, "--max_length", "64", "--dry_run"]

    kept = train_inproc(*common, "--output_dir", tmp_path / "a")
    assert kept.code == 0, kept.stderr
    (report,) = kept.of("dataset")
    assert report["tokens"]["max"] > 64 and report["truncated_rows"] == 2
    assert report["truncated_share"] == pytest.approx(2 / len(rows), abs=1e-4)
    assert report["train_rows"] == len(rows) and report["dropped_rows"] == 0

    dropped = train_inproc(*common, "--output_dir", tmp_path / "b", "--drop_long_examples")
    assert dropped.code == 0, dropped.stderr
    (report,) = dropped.of("dataset")
    assert report["train_rows"] == len(rows) - 2 and report["dropped_rows"] == 2
    assert report["dropped"][0]["where"] == f"line {len(rows) - 1}"
    assert "--max_length 64" in report["dropped"][0]["reason"]


def test_fewer_than_ten_training_rows_is_bad_input(tiny_model, tmp_path, train_inproc):
    dataset = write_jsonl(tmp_path / "d.jsonl", chat_rows()[:9])
    run = train_inproc("--model_id", tiny_model, "--dataset_file", dataset, "--output_dir", tmp_path / "o", *FAST, "--dry_run")
    assert run.code == 2 and "at least 10" in run.stderr


def test_bad_csv_header_and_wrong_parquet_type_exit_2_naming_the_column(tmp_path, train_inproc):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "bad.csv").write_text("prompt,answer\nq,a\n")
    pq.write_table(pa.Table.from_pylist([{"prompt": "q", "completion": 7}]), tmp_path / "bad.parquet")
    for name, fragments in (("bad.csv", ["header", "missing column 'completion'"]), ("bad.parquet", ["row 1", "'completion' must be a string, got int"])):
        run = train_inproc("--model_id", "unused/model", "--dataset_file", tmp_path / name, "--output_dir", tmp_path / "o")
        assert run.code == 2, run.stderr
        (err,) = run.of("error")
        assert str(tmp_path / name) in err["message"] and all(f in err["message"] for f in fragments), err


def test_model_from_a_bucket_is_downloaded_once_and_a_dry_run_fetches_no_weights(tiny_model, chat_file, tmp_path, train_inproc, s3_server, monkeypatch):
    import fsspec

    from trainer import storage

    for k, v in s3_server.items():
        monkeypatch.setenv(k, v)
    cache = tmp_path / "cache"
    monkeypatch.setenv("TRAINER_MODEL_CACHE", str(cache))
    bucket = f"models-{uuid.uuid4().hex[:8]}"
    fsspec.filesystem("s3", skip_instance_cache=True).mkdir(bucket)
    model_uri = f"s3://{bucket}/tiny"
    storage.upload_dir(tiny_model, model_uri)

    dry = train_inproc("--model_id", model_uri, "--dataset_file", chat_file, "--output_dir", tmp_path / "a", *FAST, "--dry_run")
    assert dry.code == 0, dry.stderr
    assert dry.of("dataset") and not dry.of("started")
    fetched = [p.name for p in cache.rglob("*") if p.is_file()]
    assert "tokenizer.json" in fetched and not any(n.endswith(".safetensors") for n in fetched), fetched

    for out in ("b", "c"):
        run = train_inproc("--model_id", model_uri, "--dataset_file", chat_file, "--output_dir", tmp_path / out, *FAST, "--max_steps", "2")
        assert run.code == 0, run.stderr
    full = [p for p in cache.iterdir() if not p.name.endswith(".noweights")]
    assert len(full) == 1 and (full[0] / "model.safetensors").is_file()  # the second run reused it


def test_revision_and_remote_code_reach_the_hub_only_when_asked():
    parse = lambda *a: train.flags.build_parser().parse_args(["--dataset_file", "d.jsonl", *a])  # noqa: E731
    assert train.hub_kwargs(parse())["trust_remote_code"] is False and "revision" not in train.hub_kwargs(parse())
    kw = train.hub_kwargs(parse("--model_revision", "v1.2", "--trust_remote_code"))
    assert kw["revision"] == "v1.2" and kw["trust_remote_code"] is True
    problems = train.check_args(parse("--model_id", "s3://b/m", "--model_revision", "main"))
    assert any("--model_revision applies to a hub repository" in p for p in problems)
    assert parse("--dataset_file", "e.csv").dataset_file == ["d.jsonl", "e.csv"]
