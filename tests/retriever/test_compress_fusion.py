"""Compressed indexes (int8, binary + float rescoring) find a planted nearest document; convex fusion at weight 1 /
0 ranks as BM25 / dense alone; the weight is chosen on train qrels, never the scored split."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from cli_runner import invoke
from indus.errors import IndusError
from indus.evaluation.ir import IREvaluator, convex_fusion
from indus.evaluation.ir_metrics import trec_order
from indus.retriever import bi_encoder
from indus.retriever import index as index_module
from indus.retriever.index import build_index, load_index
from indus.retriever.search import Searcher

DIM = 64
N_DOCS = 400


def vector(text: str) -> np.ndarray:
    """A fixed random unit vector per document; ``near: X`` is X's vector plus noise (cosine about 0.9)."""
    near = text.startswith("near: ")
    base = text[len("near: ") :] if near else text
    rng = np.random.default_rng(int(hashlib.md5(base.encode()).hexdigest()[:8], 16))
    v = rng.standard_normal(DIM)
    if near:
        v = v / np.linalg.norm(v) + 0.45 * np.random.default_rng(1).standard_normal(DIM) / np.sqrt(DIM)
    return (v / np.linalg.norm(v)).astype(np.float32)


class FakeEncoder:
    max_seq_length = 128

    def get_sentence_embedding_dimension(self) -> int:
        return DIM


@pytest.fixture
def fake_encoder(monkeypatch):
    for module in (bi_encoder, index_module):  # the room's modules bind the two names at import
        monkeypatch.setattr(module, "load_bi_encoder", lambda spec, **kw: FakeEncoder())
        monkeypatch.setattr(module, "encode", lambda model, texts, **kw: np.stack([vector(t) for t in texts]))


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "corpus.jsonl"
    path.write_text("".join(json.dumps({"_id": f"d{i}", "text": f"document number {i}"}) + "\n" for i in range(N_DOCS)))
    return path


@pytest.mark.parametrize("quantize, rescore", [("int8", 0), ("binary", 40), ("int8", 20)])
def test_quantized_index_returns_the_planted_nearest_document(tmp_path, corpus, fake_encoder, quantize, rescore):
    float_meta = build_index("fake", corpus, tmp_path / "float", progress=False)
    meta = build_index("fake", corpus, tmp_path / quantize, quantize=quantize, rescore=rescore, progress=False)
    assert meta["quantize"] == quantize and meta["vectors_bytes"] > 0
    assert meta["index_bytes"] < float_meta["index_bytes"] / (3 if quantize == "int8" else 16)
    index = load_index(tmp_path / quantize)
    planted = [17, 123, 250, 399]
    hits = index.search([f"near: document number {i}" for i in planted], k=5)
    assert [h[0][0] for h in hits] == [f"d{i}" for i in planted]
    exact = load_index(tmp_path / "float").search([f"near: document number {i}" for i in planted], k=5)
    if rescore:  # re-ranked by the float vectors: the float index's scores of the same documents
        assert [h[0][1] for h in hits] == pytest.approx([h[0][1] for h in exact], abs=1e-5)
    # the searcher reads it transparently, and --rescore 0 turns re-ranking off
    searcher = Searcher.open(tmp_path / quantize, rescore=0)
    assert searcher.search("near: document number 17", k=1, mode="dense")[0].id == "d17"


def test_binary_without_rescoring_scores_sign_agreement(tmp_path, corpus, fake_encoder):
    build_index("fake", corpus, tmp_path / "bin", quantize="binary", progress=False)
    (hit,) = load_index(tmp_path / "bin").search(["document number 5"], k=1)[0]
    assert hit == ("d5", 1.0)  # the document itself: every sign bit agrees


def test_quantize_cli_and_bad_input(tmp_path, corpus, fake_encoder, monkeypatch, capsys):
    code, out, err = invoke(
        monkeypatch,
        capsys,
        "retriever",
        "index",
        "--model",
        "fake",
        "--corpus",
        corpus,
        "--out",
        tmp_path / "i",
        "--quantize",
        "binary",
        "--rescore",
        "50",
    )
    assert code == 0, err
    assert json.loads((tmp_path / "i" / "meta.json").read_text())["rescore"] == 50
    code, out, err = invoke(
        monkeypatch,
        capsys,
        "retriever",
        "search",
        "--index",
        tmp_path / "i",
        "--query",
        "near: document number 9",
        "--mode",
        "dense",
        "-k",
        "1",
    )
    assert code == 0 and "[d9]" in out
    for args, expected in (
        (["--quantize", "int4"], "--quantize must be one of"),
        (["--quantize", "int8", "--approximate"], "exhaustive"),
        (["--rescore", "10"], "--rescore"),
    ):
        code, _, err = invoke(
            monkeypatch,
            capsys,
            "retriever",
            "index",
            "--model",
            "fake",
            "--corpus",
            corpus,
            "--out",
            tmp_path / "bad",
            *args,
        )
        assert code == 2 and expected in err and len(err.strip().splitlines()) == 1


# ----------------------------------------------------------------------------------------------- fusion

DOCS = {
    "d1": "Rain is expected in the north with cold winds and rain in the south.",
    "d2": "A marmot hibernates through the winter in deep burrows.",
    "d3": "The committee discussed the budget and other matters of the winter.",
    "d4": "Photosynthesis uses chlorophyll to capture light energy.",
    "d5": "Many birds migrate south before the winter and return with the rain.",
    "d6": "Arctic sea ice declines in winter and summer alike.",
    "d7": "Light energy from the sun warms the ocean surface.",
}
QUERIES = {
    "q1": "how do marmots survive the winter",
    "q2": "chlorophyll light energy",
    "q3": "rain in the south",
    "q4": "winter sea ice and birds",
    "t1": "light from the sun",
    "t2": "birds in winter",
    "t3": "marmot burrows",
}


@pytest.fixture
def beir(tmp_path):
    root = tmp_path / "beir"
    (root / "qrels").mkdir(parents=True)
    (root / "corpus.jsonl").write_text("".join(json.dumps({"_id": k, "text": t}) + "\n" for k, t in DOCS.items()))
    (root / "queries.jsonl").write_text("".join(json.dumps({"_id": k, "text": t}) + "\n" for k, t in QUERIES.items()))
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td2\t1\nq2\td4\t1\nq3\td1\t1\nq4\td6\t1\n")
    (root / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\nt1\td7\t1\nt2\td5\t1\nt3\td2\t1\n")
    return root


def test_convex_fusion_by_hand_and_bad_weight():
    fused = convex_fusion({"a": 4.0, "b": 2.0, "c": 0.0}, {"a": 0.1, "b": 0.5, "c": 0.9}, 0.25)
    # a: 0.25 * 1 + 0.75 * 0 = 0.25; b: 0.25 * 0.5 + 0.75 * 0.5 = 0.5; c: 0.75
    assert fused == [("c", 0.75), ("b", 0.5), ("a", 0.25)]
    with pytest.raises(IndusError):
        convex_fusion({"a": 1.0}, {"a": 1.0}, 1.5)


@pytest.mark.parametrize("weight, alone", [(1.0, "bm25"), (0.0, "dense")])
def test_convex_weight_one_and_zero_rank_as_bm25_and_dense(beir, weight, alone):
    ev = IREvaluator(split="test", k=5, progress=False, latency_queries=0, fusion="convex", fusion_weight=weight)
    fused = ev.retriever("bm25+random:micro")
    single = fused.bm25 if alone == "bm25" else fused.dense
    fused.index(list(DOCS), list(DOCS.values()))
    queries = list(QUERIES.values())
    mine, ref = fused.search(queries, 5), single.search(queries, 5)
    for a, b in zip(mine, ref, strict=True):  # (the ranking the metrics see: ties by id, as trec_eval)
        assert [d for d, _ in a[: len(b)]] == [d for d, _ in trec_order(dict(b))]


def test_convex_weight_is_chosen_on_train_and_searcher_matches_eval(beir, tmp_path):
    result = IREvaluator(split="test", k=5, progress=False, latency_queries=0, fusion="convex").evaluate(
        "bm25+random:micro", beir
    )
    assert result["fusion"] == "convex" and result["fusion_weight_from"] == "train qrels (3 queries)"
    grid = result["fusion_grid_ndcg@10"]
    assert len(grid) == 11 and result["fusion_weight"] == float(max(grid, key=lambda w: (grid[w], -float(w))))
    # the index's hybrid mode with the same weight gives the evaluator's run
    build_index("random:micro", beir, tmp_path / "index", progress=False)
    searcher = Searcher.open(
        tmp_path / "index", fusion="convex", fusion_weight=result["fusion_weight"], fusion_depth=5
    )  # the union of the same top lists as the evaluator's
    ev = IREvaluator(
        split="test", k=5, progress=False, latency_queries=0, fusion="convex", fusion_weight=result["fusion_weight"]
    )
    fused = ev.retriever("bm25+random:micro")
    fused.index(list(DOCS), list(DOCS.values()))
    for query in ("rain in the south", "winter sea ice and birds"):
        expected = [d for d, _ in fused.search([query], 5)[0]]
        assert [h.id for h in searcher.search(query, k=5, mode="hybrid")] == expected


def test_convex_without_dev_or_train_qrels_asks_for_a_weight(beir, monkeypatch, capsys):
    (beir / "qrels" / "train.tsv").unlink()
    code, _, err = invoke(
        monkeypatch, capsys, "eval", "ir", "--model", "bm25+random:micro", "--data", beir, "--fusion", "convex"
    )
    assert code == 2 and "--fusion-weight" in err and len(err.strip().splitlines()) == 1
    code, _, err = invoke(
        monkeypatch,
        capsys,
        "eval",
        "ir",
        "--model",
        "bm25+random:micro",
        "--data",
        beir,
        "--fusion",
        "convex",
        "--fusion-weight",
        "0.3",
        "--json",
        beir / "r.json",
    )
    assert code == 0, err
    assert json.loads((beir / "r.json").read_text())["fusion_weight"] == 0.3


def test_convex_needs_bm25_and_one_dense_model(beir):
    with pytest.raises(IndusError, match="bm25\\+MODEL"):
        IREvaluator(fusion="convex", progress=False).retriever("random:micro+random:micro")
    with pytest.raises(IndusError, match="--fusion-weight"):
        Searcher(None, {}, [], None, None, fusion="convex")
