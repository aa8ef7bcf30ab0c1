from __future__ import annotations

import json

import pytest

from indus.errors import IndusError
from indus.evaluation import evaluate, get_evaluator
from indus.evaluation.cls import ClassificationEvaluator, classification_metrics, encode_texts
from indus.models import load_tokenizer


@pytest.fixture()
def cls_dir(tmp_path):
    d = tmp_path / "toy-cls"
    d.mkdir()
    rows = [
        ("the drug inhibits the enzyme", "inhibitor"),
        ("the drug activates the receptor", "activator"),
        ("an inhibitor of kinase activity", "inhibitor"),
        ("strongly activates gene expression", "activator"),
    ]
    (d / "train.jsonl").write_text(
        "".join(json.dumps({"text": t, "label": y, "metadata": {}}) + "\n" for t, y in rows * 3)
    )
    (d / "test.jsonl").write_text("".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in rows[:3]))
    return d


def test_metrics_by_hand():
    gold = ["a", "a", "b", "c"]
    pred = ["a", "b", "b", "d"]  # "d" never occurs in the gold labels
    m = classification_metrics(gold, pred)
    assert m["accuracy"] == m["micro_f1"] == 0.5
    # per class: a: P 1, R 1/2 -> 2/3; b: P 1/2, R 1 -> 2/3; c: 0. Macro over the gold classes a, b, c.
    assert m["per_label"] == pytest.approx({"a": 2 / 3, "b": 2 / 3, "c": 0.0})
    assert m["macro_f1"] == pytest.approx(4 / 9)
    assert classification_metrics(gold, gold)["macro_f1"] == 1.0


def test_truncation_is_counted():
    tok = load_tokenizer("minilm")
    from indus.data.classification import Example

    examples = [Example("one two three four five six seven eight", "x"), Example("short", "x")]
    features, truncated = encode_texts(tok, examples, {"x": 0}, max_length=6)
    assert truncated == 1
    assert [len(f["input_ids"]) for f in features] == [6, 3]
    assert features[0]["input_ids"][-1] == tok.sep_token_id  # truncation keeps the closing special token


def test_evaluator_end_to_end(micro_model_dir, cls_dir):
    # on_collapse keep: a micro model on 12 toy texts may well predict one class; this test is about the plumbing
    result = evaluate(
        "cls",
        str(micro_model_dir),
        cls_dir,
        seeds=2,
        epochs=1,
        batch_size=4,
        lr=1e-3,
        on_collapse="keep",
        progress=False,
    )
    assert result["task"] == "cls" and result["primary_metric"] == "macro_f1"
    for key in ("macro_f1", "micro_f1", "accuracy", "macro_f1_std", "micro_f1_std"):
        assert 0.0 <= result[key] <= 1.0
    assert result["micro_f1"] == pytest.approx(result["accuracy"])
    assert set(result["per_label"]) == {"activator", "inhibitor"}
    assert result["train_examples"] == 12 and result["eval_examples"] == 3 and len(result["per_seed"]) == 2
    assert result["labels"] == ["activator", "inhibitor"]
    json.dumps(result.to_json())


def test_primary_metric_setting_and_bad_settings(micro_model_dir, cls_dir):
    result = ClassificationEvaluator(
        seeds=1, max_steps=1, primary_metric="micro_f1", progress=False, max_eval_examples=2
    ).evaluate(str(micro_model_dir), cls_dir)
    assert result["primary_metric"] == "micro_f1" and result["eval_examples"] == 2
    with pytest.raises(IndusError, match="primary_metric must be one of"):
        get_evaluator("cls", primary_metric="f2")
    with pytest.raises(IndusError, match="bad evaluation setting"):
        get_evaluator("cls", max_train_sentences=3)
