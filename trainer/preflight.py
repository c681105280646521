"""The preflight report: every row tokenized as the model will see it, measured, before any weights load.

The trainer tokenizes here, once, and hands TRL the result (`input_ids` + `labels`, which TRL takes as
already prepared), so the lengths, the truncation count and the rendered first example describe exactly
what is trained, not an estimate of it. The rendering follows TRL 1.x's own preparation:
- `messages`: the tokenizer's chat template; every token is trained (TRL's default; only a template with
  `{% generation %}` markers could restrict the loss to the assistant's turns).
- `prompt`/`completion` (and `aml`, rendered into them): the completion, with the EOS token appended, is
  trained; the prompt is context. The completion starts where the tokens of the prompt alone and of the
  whole sequence diverge (as TRL's `common_prefix_length`).
- `text`: the text with EOS appended; every token is trained.

A row longer than `--max_length` is truncated (its end cut; reported), or dropped with
`--drop_long_examples`. A row whose trained part is cut away entirely is dropped either way (TRL would
drop it silently): it has nothing to learn from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Marks around the trained part of the rendered example (characters that read clearly in a log line).
TRAIN_OPEN, TRAIN_CLOSE = "\u27e6", "\u27e7"  # ⟦ ⟧
MAX_EXAMPLE_CHARS_IN_EVENT = 4000  # the PROGRESS line stays well under a log line's 16 KiB
MAX_DROPPED_IN_EVENT = 10


@dataclass
class Tokenized:
    input_ids: list[int]
    trained: list[bool]  # per token: does it count in the loss

    @property
    def labels(self) -> list[int]:
        return [t if m else -100 for t, m in zip(self.input_ids, self.trained)]


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def tokenize(example: dict[str, Any], tokenizer) -> Tokenized:
    """One TRL-ready row as token ids and the mask of the tokens trained (untruncated)."""
    eos = tokenizer.eos_token or ""
    if "messages" in example:
        ids = list(tokenizer.apply_chat_template(example["messages"], tokenize=True, return_dict=True)["input_ids"])
        return Tokenized(ids, [True] * len(ids))
    if "prompt" in example:
        completion = example["completion"]
        if eos and not completion.endswith(eos):
            completion += eos
        prompt_ids = list(tokenizer(text=example["prompt"])["input_ids"])
        ids = list(tokenizer(text=example["prompt"] + completion)["input_ids"])
        start = _common_prefix(prompt_ids, ids)
        return Tokenized(ids, [False] * start + [True] * (len(ids) - start))
    text = example["text"]
    if eos and not text.endswith(eos):
        text += eos
    ids = list(tokenizer(text=text)["input_ids"])
    return Tokenized(ids, [True] * len(ids))


def render_marked(tok: Tokenized, tokenizer) -> str:
    """The sequence as text, with the trained spans between TRAIN_OPEN and TRAIN_CLOSE."""
    out: list[str] = []
    i = 0
    while i < len(tok.input_ids):
        j = i
        while j < len(tok.input_ids) and tok.trained[j] == tok.trained[i]:
            j += 1
        text = tokenizer.decode(tok.input_ids[i:j], skip_special_tokens=False)
        out.append(f"{TRAIN_OPEN}{text}{TRAIN_CLOSE}" if tok.trained[i] else text)
        i = j
    return "".join(out)


def _percentile(sorted_values: list[int], q: float) -> int:
    if not sorted_values:
        return 0
    k = max(0, min(len(sorted_values) - 1, round(q * (len(sorted_values) - 1))))
    return sorted_values[k]


@dataclass
class Prepared:
    train: list[dict[str, list[int]]]  # {"input_ids", "labels"} for TRL
    eval: list[dict[str, list[int]]]
    report: dict[str, Any]  # the `dataset` event / run_summary.json's "preflight"
    dropped: list[dict[str, str]] = field(default_factory=list)


def prepare(loaded, train_idx: list[int], eval_idx: list[int], tokenizer, *, max_length: int, drop_long: bool, packing: bool) -> Prepared:
    """Tokenize every row, cut or drop the long ones, and build the report."""
    dataset = loaded.dataset
    lengths: list[int] = []
    truncated = 0
    dropped: list[dict[str, str]] = []
    kept: dict[str, list[dict[str, list[int]]]] = {"train": [], "eval": []}
    kept_count = {"train": [0] * len(loaded.sources), "eval": [0] * len(loaded.sources)}
    first: tuple[Tokenized, bool] | None = None
    for split, indices in (("train", train_idx), ("eval", eval_idx)):
        for i in indices:
            tok = tokenize(dataset.examples[i], tokenizer)
            lengths.append(len(tok.input_ids))
            source, where = dataset.origins[i]
            origin = {"source": loaded.sources[source].uri, "where": where, "split": split}
            long = len(tok.input_ids) > max_length
            if long and drop_long:
                dropped.append({**origin, "reason": f"{len(tok.input_ids)} tokens, longer than --max_length {max_length} (--drop_long_examples)"})
                continue
            cut = tok
            if long:
                truncated += 1
                if not packing:  # packing cuts at max_length itself
                    cut = Tokenized(tok.input_ids[:max_length], tok.trained[:max_length])
                if not any(cut.trained[:max_length]):
                    dropped.append({**origin, "reason": f"the prompt alone fills --max_length {max_length}: nothing left to train on"})
                    continue
            kept[split].append({"input_ids": cut.input_ids, "labels": cut.labels})
            kept_count[split][source] += 1
            if first is None and split == "train":
                first = (cut, long)

    ordered = sorted(lengths)
    total = len(lengths)
    example = None
    if first is not None:
        tok, was_cut = first
        example = {
            "rendered": render_marked(tok, tokenizer),
            "tokens": len(tok.input_ids),
            "trained_tokens": sum(tok.trained),
            "truncated": was_cut,
            "legend": f"the model sees the whole text; the loss is on the parts between {TRAIN_OPEN} and {TRAIN_CLOSE}",
        }
    report = {
        "format": dataset.format,
        "rows": len(dataset.examples),
        "train_rows": len(kept["train"]),
        "eval_rows": len(kept["eval"]),
        "sources": [
            {
                "uri": s.uri,
                "file_format": s.file_format,
                "shards": s.shards,
                "format": s.format,
                "rows": s.rows,
                "train_rows": kept_count["train"][k],
                "eval_rows": kept_count["eval"][k],
            }
            for k, s in enumerate(loaded.sources)
        ],
        "max_length": max_length,
        "tokens": {"p50": _percentile(ordered, 0.5), "p95": _percentile(ordered, 0.95), "max": ordered[-1] if ordered else 0},
        "truncated_rows": truncated,
        "truncated_share": round(truncated / total, 4) if total else 0.0,
        "dropped_rows": len(dropped),
        "dropped": dropped,
        "first_example": example,
    }
    return Prepared(kept["train"], kept["eval"], report, dropped)


def event_fields(report: dict[str, Any]) -> dict[str, Any]:
    """The report cut to fit one PROGRESS line (the whole of it is in run_summary.json)."""
    out = dict(report)
    out["dropped"] = report["dropped"][:MAX_DROPPED_IN_EVENT]
    example = report.get("first_example")
    if example and len(example["rendered"]) > MAX_EXAMPLE_CHARS_IN_EVENT:
        out["first_example"] = {**example, "rendered": example["rendered"][:MAX_EXAMPLE_CHARS_IN_EVENT] + " [...]"}
    return out


def describe(report: dict[str, Any]) -> str:
    """The report for a person reading the log (stderr): a few lines, at a glance."""
    lines = [f"dataset: {report['rows']} rows ({report['format']}): {report['train_rows']} train, {report['eval_rows']} eval"]
    for s in report["sources"]:
        shards = f", {s['shards']} shards" if s["shards"] > 1 else ""
        lines.append(f"  {s['uri']} [{s['file_format']}{shards}, {s['format']}]: {s['rows']} rows ({s['train_rows']} train, {s['eval_rows']} eval)")
    t = report["tokens"]
    lines.append(
        f"  tokens per row: p50 {t['p50']}, p95 {t['p95']}, max {t['max']} (max_length "
        f"{report['max_length']}); truncated {report['truncated_rows']} "
        f"({report['truncated_share']:.1%}); dropped {report['dropped_rows']}"
    )
    for d in report["dropped"][:MAX_DROPPED_IN_EVENT]:
        lines.append(f"  dropped {d['source']}:{d['where']}: {d['reason']}")
    example = report.get("first_example")
    if example:
        lines.append(f"  first example ({example['tokens']} tokens, {example['trained_tokens']} trained; {example['legend']}):")
        lines.extend("    " + ln for ln in example["rendered"].splitlines() or [""])
    return "\n".join(lines)
