"""Reciprocal-rank fusion: a hand computation, fusing a system with itself, and the Searcher's hybrid mode equal to
``indus eval ir --model bm25+MODEL`` on a BEIR set made here."""

from __future__ import annotations

import json

import pytest

from cli_runner import invoke
from indus.errors import IndusError
from indus.evaluation.ir import IREvaluator, reciprocal_rank_fusion, split_systems
from indus.evaluation.ir_metrics import score_run
from indus.retriever.index import build_index
from indus.retriever.search import Searcher

DOCS = {
    "d1": ("Weather report", "Rain is expected in the north with cold winds and rain in the south."),
    "d2": ("Marmot hibernation", "A marmot hibernates through the winter in deep burrows."),
    "d3": ("Budget", "The committee discussed the budget and other matters of the winter."),
    "d4": ("", "Photosynthesis uses chlorophyll to capture light energy."),
    "d5": ("Birds", "Many birds migrate south before the winter and return with the rain."),
    "d6": ("Sea ice", "Arctic sea ice declines in winter and summer alike."),
    "d7": ("Light", "Light energy from the sun warms the ocean surface."),
    "q1": ("Identical id", "A document whose id equals a query id is dropped from that query's run."),
}
QUERIES = {
    "q1": "how do marmots survive the winter",
    "q2": "chlorophyll light energy",
    "q3": "rain in the south",
    "q4": "winter sea ice and birds",
}
QRELS = ["q1\td2\t1", "q2\td4\t2", "q2\td7\t1", "q3\td1\t1", "q4\td6\t2", "q4\td5\t1"]


@pytest.fixture
def beir(tmp_path):
    root = tmp_path / "beir"
    (root / "qrels").mkdir(parents=True)
    (root / "corpus.jsonl").write_text(
        "".join(json.dumps({"_id": k, "title": t, "text": x}) + "\n" for k, (t, x) in DOCS.items())
    )
    (root / "queries.jsonl").write_text("".join(json.dumps({"_id": k, "text": t}) + "\n" for k, t in QUERIES.items()))
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(r + "\n" for r in QRELS))
    return root


def test_rrf_equals_a_hand_computation():
    a = [("x", 12.0), ("y", 7.0), ("z", 1.0)]
    b = [("z", 0.9), ("x", 0.8), ("w", 0.1)]
    fused = reciprocal_rank_fusion([a, b], k=60)
    by_hand = {"x": 1 / 61 + 1 / 62, "z": 1 / 63 + 1 / 61, "y": 1 / 62, "w": 1 / 63}
    assert [d for d, _ in fused] == ["x", "z", "y", "w"]
    assert dict(fused) == pytest.approx(by_hand, abs=1e-15)
    # k sets how much the top ranks count: p (ranks 1 and 10) loses to q (ranks 3 and 3) at k = 60, wins at k = 0
    first = [("p", 3.0), ("f", 2.0), ("q", 1.0)]
    second = [(f"g{i}", 10.0 - i) for i in range(10)]
    second[2], second[9] = ("q", 8.0), ("p", 1.0)

    def p_before_q(k):
        order = [d for d, _ in reciprocal_rank_fusion([first, second], k=k)]
        return order.index("p") < order.index("q")

    assert not p_before_q(60) and p_before_q(0)  # 2/63 > 1/61 + 1/70, but 1 + 1/10 > 2/3
    assert reciprocal_rank_fusion([a, b], k=60, depth=2) == fused[:2]
    assert reciprocal_rank_fusion([], k=60) == [] and reciprocal_rank_fusion([[], a], k=1)[0][0] == "x"
    # ranks follow trec_eval's order (score descending, ties by id descending), not the list order
    assert reciprocal_rank_fusion([[("a", 1.0), ("b", 1.0), ("c", 2.0)]]) == [
        ("c", 1 / 61),
        ("b", 1 / 62),
        ("a", 1 / 63),
    ]
    with pytest.raises(IndusError, match="fusion k must be >= 0"):
        reciprocal_rank_fusion([a], k=-1)


def test_split_systems():
    assert split_systems("bm25+minilm") == ["bm25", "minilm"] and split_systems("minilm") == ["minilm"]
    assert split_systems(" bm25 + random:micro ") == ["bm25", "random:micro"]
    with pytest.raises(IndusError, match="a system on each side"):
        split_systems("bm25+")


def test_fusing_bm25_with_itself_keeps_its_ranking(beir, tmp_path):
    plain = IREvaluator(progress=False, latency_queries=0, run_path=tmp_path / "a.trec").evaluate("bm25", beir)
    twice = IREvaluator(progress=False, latency_queries=2, run_path=tmp_path / "b.trec").evaluate("bm25+bm25", beir)
    assert twice["model"] == "bm25+bm25" and twice["retriever"] == "fusion" and twice["fusion_k"] == 60
    assert twice["latency_ms"] > 0

    def order(path):
        return [line.split()[:3] for line in path.read_text().splitlines()]

    assert order(tmp_path / "b.trec") == order(tmp_path / "a.trec") and order(tmp_path / "a.trec")
    for key in ("ndcg@10", "recall@10", "recall@100", "mrr@10"):
        assert twice[key] == plain[key]


def test_searcher_hybrid_equals_eval_ir_fusion(monkeypatch, capsys, beir, tmp_path):
    dense = "random:micro"  # random weights: a dense ranking quite unlike BM25's, so the fusion is not trivial
    code, _, err = invoke(
        monkeypatch,
        capsys,
        "eval",
        "ir",
        "--model",
        f"bm25+{dense}",
        "--data",
        beir,
        "--json",
        tmp_path / "fused.json",
        "--run",
        tmp_path / "fused.trec",
        "--k",
        5,
    )
    assert code in (0, None), err
    evaluated = json.loads((tmp_path / "fused.json").read_text())
    assert evaluated["model"] == "bm25+random:micro" and evaluated["retriever"] == "fusion"

    build_index(dense, beir, tmp_path / "index", progress=False)
    searcher = Searcher.open(tmp_path / "index", fusion_depth=1)  # depth max(1, k) = k + 1, as eval ir retrieves
    qids = [q for q in QUERIES if q in {r.split("\t")[0] for r in QRELS}]
    hits = searcher.search_many([QUERIES[q] for q in qids], k=6, mode="hybrid")  # k + 1: one may be the query id
    run = {q: dict([(h.id, h.score) for h in hs if h.id != q][:5]) for q, hs in zip(qids, hits)}
    stored = {}
    for line in (tmp_path / "fused.trec").read_text().splitlines():
        qid, _, doc_id, _, score, _ = line.split()
        stored.setdefault(qid, []).append((doc_id, float(score)))
    assert {q: [d for d, _ in v] for q, v in stored.items()} == {q: list(r) for q, r in run.items()}
    for q in qids:
        assert [s for _, s in stored[q]] == pytest.approx(list(run[q].values()), abs=1e-6)
    assert "q1" not in run["q1"]  # BEIR's ignore_identical_ids, applied the same way to both
    from indus.data.beir import load_beir

    metrics = score_run(run, load_beir(beir, "test").qrels)
    assert metrics["ndcg@10"] == pytest.approx(evaluated["ndcg@10"], abs=1e-12)
    # the fused run differs from BM25's alone: the test exercises fusion, not one system
    IREvaluator(progress=False, latency_queries=0, k=5, run_path=tmp_path / "bm25.trec").evaluate("bm25", beir)
    bm25_order = [line.split()[:3] for line in (tmp_path / "bm25.trec").read_text().splitlines()]
    assert bm25_order != [line.split()[:3] for line in (tmp_path / "fused.trec").read_text().splitlines()]


def test_eval_ir_fusion_k_option_and_bad_specs(monkeypatch, capsys, beir, tmp_path):
    code, _, err = invoke(
        monkeypatch,
        capsys,
        "eval",
        "ir",
        "--model",
        "bm25+bm25",
        "--data",
        beir,
        "--fusion-k",
        0,
        "--json",
        tmp_path / "r.json",
    )
    assert code in (0, None), err
    assert json.loads((tmp_path / "r.json").read_text())["settings"]["fusion_k"] == 0
    code, _, err = invoke(monkeypatch, capsys, "eval", "ir", "--model", "bm25+", "--data", beir)
    assert code == 2 and "a system on each side" in err and err.strip().count("\n") == 0
    code, _, err = invoke(monkeypatch, capsys, "eval", "ir", "--model", "bm25+bm25", "--data", beir, "--fusion-k", -1)
    assert code == 2 and "fusion_k must be >= 0" in err
