"""EvalResult: typed sections over the flat result JSON, which keeps the keys evaluators have always written."""

from __future__ import annotations

import json

import pytest

from indus.evaluation import EvalResult, evaluate

# the keys of the flat result before EvalResult existed (read off the evaluators of commit 94f378d), plus NEW_KEYS
NER_KEYS = {
    "device",
    "epochs",
    "eval_entities",
    "eval_sentences",
    "eval_sentences_split",
    "eval_sentences_total",
    "eval_windows",
    "f1",
    "f1_std",
    "labels",
    "max_length",
    "model",
    "per_seed",
    "per_type",
    "precision",
    "precision_std",
    "primary_metric",
    "recall",
    "recall_std",
    "scheme",
    "seeds",
    "settings",
    "split",
    "task",
    "train_sentences",
    "train_sentences_split",
    "train_sentences_total",
    "train_split",
    "train_windows",
    "words_truncated",
    "words_without_subwords",
    "data",
    "wall_s",
}
CLS_KEYS = {
    "accuracy",
    "accuracy_std",
    "device",
    "epochs",
    "eval_examples",
    "eval_examples_total",
    "eval_truncated",
    "labels",
    "macro_f1",
    "macro_f1_std",
    "max_length",
    "micro_f1",
    "micro_f1_std",
    "model",
    "per_label",
    "per_seed",
    "primary_metric",
    "seeds",
    "settings",
    "split",
    "task",
    "train_examples",
    "train_examples_total",
    "train_split",
    "train_truncated",
    "data",
    "wall_s",
}
RUN_KEYS = {"seed", "train_steps", "final_loss", "train_s", "eval_s"}
# issue 18 added, on purpose: how the learning rate was chosen and which seeds collapsed (every fine-tune task), the
# majority-class baseline and the loss weights (classification)
NEW_KEYS = {"lr_choice", "collapsed_seeds", "collapsed"}
NER_KEYS |= NEW_KEYS
CLS_KEYS |= NEW_KEYS | {"majority_baseline", "class_weights"}


@pytest.fixture()
def ner_dir(tmp_path):
    d = tmp_path / "ner"
    d.mkdir()
    (d / "train.tsv").write_text("Aspirin\tB-Chemical\ncures\tO\npain\tB-Disease\n\nThe\tO\ndrug\tO\n\n" * 3)
    (d / "test.tsv").write_text("Aspirin\tB-Chemical\nhelps\tO\n")
    return d


@pytest.fixture()
def cls_dir(tmp_path):
    d = tmp_path / "cls"
    d.mkdir()
    rows = [("inhibits the enzyme", "a"), ("activates the receptor", "b")] * 3
    (d / "train.jsonl").write_text("".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in rows))
    (d / "test.jsonl").write_text("".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in rows[:2]))
    return d


@pytest.mark.parametrize(
    "task, keys, metrics, counts",
    [
        ("ner", NER_KEYS, {"f1", "precision", "recall", "per_type"}, {"train_sentences", "eval_windows"}),
        ("cls", CLS_KEYS, {"macro_f1", "micro_f1", "accuracy", "per_label"}, {"train_examples", "eval_truncated"}),
    ],
)
def test_to_json_keeps_the_keys_and_sections_hold_them(micro_model_dir, ner_dir, cls_dir, task, keys, metrics, counts):
    data = ner_dir if task == "ner" else cls_dir
    result = evaluate(task, str(micro_model_dir), data, seeds=2, epochs=1, batch_size=4, lr=1e-3, progress=False)
    assert isinstance(result, EvalResult)
    flat = result.to_json()
    assert set(flat) == keys
    assert list(flat)[:4] == ["task", "primary_metric", "model", "data"]
    assert all(set(run) >= RUN_KEYS for run in result.per_seed) and len(result.per_seed) == 2
    assert metrics <= set(result.metrics) and counts <= set(result.counts)
    assert result.value == flat[result.primary_metric] and result.std == flat[f"{result.primary_metric}_std"]
    assert result.wall_s == flat["wall_s"] > 0 and result.info["seeds"] == 2 and result.settings["lr"] == 1e-3
    # a stored result reads back into the same sections, key order included
    again = EvalResult.from_json(json.loads(json.dumps(flat)))
    assert again.to_json() == flat and list(again.to_json()) == list(flat)
    assert again.metrics == result.metrics and again.counts == result.counts
    assert dict(result) == flat and result["task"] == task  # the read-only mapping view


def test_from_json_sorts_unknown_keys_by_kind():
    flat = {
        "task": "ir",
        "primary_metric": "ndcg@10",
        "model": "bm25",
        "data": "d",
        "split": "test",
        "ndcg@10": 0.5,
        "queries": 3,
        "docs_per_s": 10.0,
        "latency_ms": None,
        "per_seed": [],
        "settings": {"k": 1},
    }
    r = EvalResult.from_json(flat)
    assert r.metrics == {"ndcg@10": 0.5} and r.counts == {"queries": 3}
    assert r.timings == {"docs_per_s": 10.0, "latency_ms": None} and r.info == {"split": "test"}
    assert r.latency_ms is None and r.std is None and r.to_json() == flat
