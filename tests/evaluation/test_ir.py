from __future__ import annotations

import importlib.util
import json

import pytest

from indus.errors import IndusError
from indus.evaluation import get_evaluator
from indus.evaluation.ir import IREvaluator

DOCS = {
    "d1": ("Weather report", "Rain is expected in the north with cold winds."),
    "d2": ("Marmot hibernation", "A marmot hibernates through the winter in deep burrows."),
    "d3": ("Budget", "The committee discussed the budget and other matters."),
    "d4": ("", "Photosynthesis uses chlorophyll to capture light energy."),
    "d5": ("Birds", "Many birds migrate south before the winter."),
}
QUERIES = {"q1": "how do marmots hibernating survive", "q2": "chlorophyll photosynthesis light", "q3": "unjudged query"}
QRELS = ["q1\td2\t1", "q2\td4\t2", "q2\td1\t0"]


def make_beir(root, docs, queries, qrels):
    (root / "qrels").mkdir(parents=True)
    (root / "corpus.jsonl").write_text(
        "".join(json.dumps({"_id": k, "title": t, "text": x}) + "\n" for k, (t, x) in docs.items())
    )
    (root / "queries.jsonl").write_text("".join(json.dumps({"_id": k, "text": t}) + "\n" for k, t in queries.items()))
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(r + "\n" for r in qrels))
    return root


@pytest.fixture()
def toy(tmp_path):
    return make_beir(tmp_path / "toy", DOCS, QUERIES, QRELS)


def test_bm25_ranks_planted_document_first(toy, tmp_path):
    run_file = tmp_path / "bm25.trec"
    result = IREvaluator(progress=False, latency_queries=5, run_path=run_file).evaluate("bm25", toy)
    assert result["task"] == "ir" and result["primary_metric"] == "ndcg@10" and result["retriever"] == "bm25"
    assert result["ndcg@10"] == 1.0 and result["mrr@10"] == 1.0 and result["recall@10"] == 1.0
    assert result["queries"] == 2 and result["docs"] == 5 and result["latency_queries"] == 2
    for key in ("docs_per_s", "queries_per_s", "latency_ms", "wall_s"):
        assert result[key] > 0, key
    lines = run_file.read_text().splitlines()
    assert lines[0].split()[:4] == ["q1", "Q0", "d2", "1"]
    assert all(float(line.split()[4]) > 0 for line in lines)  # zero-score documents are not in the run


def test_bm25_stemming_matters(toy):
    # "marmots hibernating" matches "marmot hibernates" only through the stemmer: without it q1 finds nothing
    plain = IREvaluator(progress=False, stemmer=None, latency_queries=0).evaluate("bm25", toy)
    stemmed = IREvaluator(progress=False, latency_queries=0).evaluate("bm25", toy)
    assert stemmed["ndcg@10"] == 1.0 and plain["ndcg@10"] == 0.5
    assert plain["latency_ms"] is None


def test_dense_micro_model_end_to_end(tmp_path, micro_model_dir):
    # q2's text is exactly d4's text: even random weights give cosine 1 for identical inputs
    docs = {**DOCS, "d4": ("", QUERIES["q2"])}
    root = make_beir(tmp_path / "dense", docs, QUERIES, QRELS)
    result = get_evaluator("ir", progress=False, batch_size=2, latency_queries=3).evaluate(str(micro_model_dir), root)
    assert result["retriever"] == "dense" and result["dim"] == 32
    assert 0.0 <= result["ndcg@10"] <= 1.0 and result["recall@100"] == 1.0  # 5 docs, all retrieved
    assert result["latency_queries"] == 2 and result["latency_ms"] > 0
    from indus.evaluation.ir import DenseRetriever

    retriever = IREvaluator(progress=False).retriever(str(micro_model_dir))
    assert isinstance(retriever, DenseRetriever)
    retriever.index(list(docs), [f"{t} {x}".strip() for t, x in docs.values()])
    assert retriever.search([QUERIES["q2"]], 1)[0][0][0] == "d4"
    # an already-built SentenceTransformer is accepted as the model
    again = IREvaluator(progress=False, latency_queries=0).evaluate(retriever.model, root)
    assert again["ndcg@10"] == pytest.approx(result["ndcg@10"])
    assert again["model"] == "SentenceTransformer"


def test_loaded_data_and_bad_settings(toy):
    from indus.data.beir import load_beir

    data = load_beir(toy, "test")
    assert IREvaluator(progress=False, latency_queries=0).evaluate("bm25", data)["queries"] == 2
    with pytest.raises(IndusError, match="asks for 'dev'"):
        IREvaluator(split="dev", progress=False).evaluate("bm25", data)
    with pytest.raises(IndusError):
        IREvaluator(k=0)


@pytest.mark.skipif(importlib.util.find_spec("Stemmer") is None, reason="PyStemmer not installed")
def test_unknown_stemmer_language(toy):
    with pytest.raises(IndusError, match="unknown stemmer"):
        IREvaluator(stemmer="klingon", progress=False).evaluate("bm25", toy)


def test_asymmetric_doc_model(tmp_path, micro_model_dir):
    import numpy as np

    from indus.evaluation.ir import DenseRetriever
    from indus.models import load_sentence_transformer, materialize
    from indus.retriever.bi_encoder import encode

    root = make_beir(tmp_path / "asym", DOCS, QUERIES, QRELS)
    model = str(micro_model_dir)
    plain = IREvaluator(progress=False, latency_queries=0).evaluate(model, root)
    same = IREvaluator(progress=False, latency_queries=0, doc_model=model).evaluate(model, root)
    assert same["ndcg@10"] == pytest.approx(plain["ndcg@10"]) and same["doc_model"] == plain["model"]
    assert plain["doc_model"] is None and same["settings"]["doc_model"] == model

    other = str(materialize("random:micro", tmp_path / "other", seed=1))
    retriever = IREvaluator(progress=False, doc_model=model).retriever(other)
    assert isinstance(retriever, DenseRetriever)
    texts = [f"{t} {x}".strip() for t, x in DOCS.values()]
    retriever.index(list(DOCS), texts)
    doc_model = load_sentence_transformer(model, device="cpu")
    stored = retriever.faiss_index.reconstruct_n(0, len(texts))
    assert np.allclose(stored, encode(doc_model, texts), atol=1e-5)  # the index holds the doc model's vectors
    scores = dict(retriever.search([QUERIES["q1"]], 5)[0])  # ... and the query goes through the query model
    query_model = load_sentence_transformer(other, device="cpu")
    expected = stored @ encode(query_model, [QUERIES["q1"]])[0]
    assert [scores[d] for d in DOCS] == pytest.approx(expected.tolist(), abs=1e-5)

    wide = str(materialize("random:nano", tmp_path / "wide", seed=0))
    with pytest.raises(IndusError, match="one space"):
        IREvaluator(progress=False, latency_queries=0, doc_model=model).evaluate(wide, root)
    with pytest.raises(IndusError, match="not bm25"):
        IREvaluator(progress=False, doc_model="bm25").evaluate(model, root)
