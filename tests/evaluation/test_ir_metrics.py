from __future__ import annotations

import math

import pytest

from indus.evaluation.ir_metrics import score_run, trec_order, truncate_run, write_trec_run

QRELS = {
    "q1": {"d1": 2, "d2": 1, "d3": 0},  # graded; d3 judged non-relevant
    "q2": {"d9": 1},  # its relevant doc is retrieved at rank 11
    "q3": {"d5": 1},  # not in the run at all
}
RUN = {
    "q1": {"d3": 0.9, "d1": 0.8, "d4": 0.7, "d2": 0.6},
    "q2": {**{f"n{i}": 1.0 - i / 20 for i in range(10)}, "d9": 0.05},
    "unjudged": {"d1": 1.0},
}


def test_hand_computed_metrics():
    out = score_run(RUN, QRELS, per_query=True)
    # q1: DCG = 2/log2(3) + 1/log2(5); IDCG = 2/log2(2) + 1/log2(3)
    ndcg_q1 = (2 / math.log2(3) + 1 / math.log2(5)) / (2 + 1 / math.log2(3))
    per = out["per_query"]
    assert per["q1"]["ndcg@10"] == pytest.approx(ndcg_q1)
    assert per["q1"]["recall@10"] == 1.0 and per["q1"]["mrr@10"] == 0.5  # d3 (grade 0) is not relevant
    # q2: relevant doc at rank 11 -> nothing at 10, but found at 100; MRR@10 is 0, not 1/11
    assert per["q2"] == {"ndcg@10": 0.0, "recall@10": 0.0, "recall@100": 1.0, "mrr@10": 0.0}
    # q3: judged but not retrieved -> zeros, and it still counts in the mean
    assert per["q3"] == {"ndcg@10": 0.0, "recall@10": 0.0, "recall@100": 0.0, "mrr@10": 0.0}
    assert out["queries"] == 3 and "unjudged" not in per
    assert out["ndcg@10"] == pytest.approx(ndcg_q1 / 3)
    assert out["recall@10"] == pytest.approx(1 / 3) and out["recall@100"] == pytest.approx(2 / 3)
    assert out["mrr@10"] == pytest.approx(0.5 / 3)


def test_mrr_at_10_cut_agrees_with_trec_tie_order():
    # eleven tied documents: trec_eval ranks ties by doc id descending, so "a00" is 11th
    run = {"q": {f"a{i:02d}": 1.0 for i in range(11)}}
    assert trec_order(run["q"])[0][0] == "a10" and trec_order(run["q"])[-1][0] == "a00"
    out = score_run(run, {"q": {"a00": 1}})
    assert out["mrr@10"] == 0.0 and out["ndcg@10"] == 0.0 and out["recall@100"] == 1.0
    out = score_run(run, {"q": {"a01": 1}})
    assert out["mrr@10"] == pytest.approx(0.1) and out["recall@10"] == 1.0
    assert list(truncate_run(run, 2)["q"]) == ["a10", "a09"]


def test_ignore_identical_ids():
    run = {"q1": {"q1": 5.0, "d1": 1.0}}
    assert score_run(run, {"q1": {"d1": 1}})["mrr@10"] == 0.5
    assert score_run(run, {"q1": {"d1": 1}}, ignore_identical_ids=True)["mrr@10"] == 1.0


def test_trec_run_file(tmp_path):
    path = write_trec_run(tmp_path / "run.trec", {"q1": {"d2": 0.1, "d1": 0.9}}, tag="t")
    assert path.read_text().splitlines() == ["q1 Q0 d1 1 0.900000 t", "q1 Q0 d2 2 0.100000 t"]


def test_empty_qrels_is_an_error():
    with pytest.raises(ValueError):
        score_run({}, {})
