from __future__ import annotations

import pytest

from indus.evaluation.qa_metrics import (
    best_null_threshold,
    exact_match_score,
    f1_score,
    normalize_answer,
    question_scores,
    squad_scores,
)


def test_normalisation_matches_official_rules():
    assert normalize_answer("The  Eiffel-Tower!") == "eiffeltower"
    assert normalize_answer("an apple, a pear and THE fig") == "apple pear and fig"
    assert normalize_answer("theory") == "theory"  # articles only as whole words


def test_f1_hand_computed():
    # pred tokens: [eiffel, tower]; gold: [eiffel, tower, in, paris] -> P = 1, R = 1/2, F1 = 2/3
    assert f1_score("the Eiffel Tower", "Eiffel Tower in Paris") == pytest.approx(2 / 3)
    # repeated tokens count with multiplicity: pred [a1, a1, b], gold [a1, b, b] -> overlap 2, P = R = 2/3
    assert f1_score("x x y", "x y y") == pytest.approx(2 / 3)
    assert f1_score("cat", "dog") == 0.0
    assert exact_match_score("Paris.", "paris") == 1.0


def test_max_over_gold_answers_and_no_answer():
    em, f1 = question_scores("Tower in Paris", ["Eiffel Tower", "the tower in Paris"])
    assert em == 1.0 and f1 == 1.0
    assert question_scores("", []) == (1.0, 1.0)  # unanswerable, abstained
    assert question_scores("Paris", []) == (0.0, 0.0)  # unanswerable, answered
    assert question_scores("", ["Paris"]) == (0.0, 0.0)  # answerable, abstained
    assert question_scores("", ["the"]) == (1.0, 1.0)  # gold normalises to empty -> treated as no-answer (v2 rule)


def test_squad_scores_v2_split_keys():
    refs = {"a": ["Eiffel Tower in Paris"], "b": [], "c": ["1897"]}
    preds = {"a": "the Eiffel Tower", "b": "", "c": "in 1897"}
    out = squad_scores(preds, refs)
    # a: EM 0, F1 2/3; b: 1, 1; c: EM 0, F1 = 2 * (1/2 * 1) / 1.5 = 2/3
    assert out["exact_match"] == pytest.approx(1 / 3)
    assert out["f1"] == pytest.approx((2 / 3 + 1 + 2 / 3) / 3)
    assert out["HasAns_total"] == 2 and out["NoAns_total"] == 1
    assert out["HasAns_f1"] == pytest.approx(2 / 3) and out["NoAns_exact"] == 1.0
    assert "HasAns_f1" not in squad_scores({"a": "x"}, {"a": ["x"]})


def test_missing_prediction_counts_as_empty():
    assert squad_scores({}, {"a": ["x"], "b": []})["exact_match"] == 0.5


def test_best_null_threshold_oracle():
    refs = {"a": ["x"], "b": [], "c": ["z"]}
    spans = {"a": "x", "b": "wrong", "c": "nope"}
    diffs = {"a": -2.0, "b": 1.0, "c": 3.0}
    out = best_null_threshold(spans, refs, diffs)
    # threshold 1.0 is not enough for b (diff 1.0 is not > 1.0 -> span answered); best is t in [-2, 1): a answered,
    # b and c null -> a: 1, b: 1, c: 0
    assert out["best_exact"] == pytest.approx(2 / 3) and out["best_exact_thresh"] == -2.0
