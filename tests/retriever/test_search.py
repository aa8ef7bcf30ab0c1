"""The Searcher: BM25 / dense / hybrid over a stored index, the texts it returns, validation, snippets, the CLI."""

from __future__ import annotations

import json
import sys

import pytest

from indus.cli import main
from indus.errors import IndusError
from indus.evaluation.ir import Bm25Retriever, reciprocal_rank_fusion
from indus.evaluation.ir_metrics import trec_order
from indus.retriever.index import build_index, load_index
from indus.retriever.search import Doc, Hit, Searcher

DOCS = [
    {"_id": "d1", "title": "Stellar winds", "text": "Massive stars lose mass through radiation-driven winds."},
    {"_id": "d2", "title": "Marmot hibernation", "text": "A marmot hibernates through the winter in deep burrows."},
    {"_id": "d3", "title": "Protein folding", "text": "Chaperones help proteins reach their native structure."},
    {"_id": "d4", "title": "Ocean heat", "text": "The upper ocean stores most of the excess heat of warming."},
    {"_id": "d5", "title": "Sea ice", "text": "Arctic sea ice extent declines in every month of the year."},
    {"_id": "d6", "title": "", "text": "Comet dust trails cause meteor showers on Earth. <script>x</script>"},
]


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "corpus.jsonl"
    path.write_text("".join(json.dumps(d) + "\n" for d in DOCS), encoding="utf-8")
    return path


@pytest.fixture
def bm25_index(corpus, tmp_path):
    build_index("bm25", corpus, tmp_path / "bm25-index", progress=False)
    return tmp_path / "bm25-index"


@pytest.fixture
def dense_index(micro_model_dir, corpus, tmp_path):
    build_index(str(micro_model_dir), corpus, tmp_path / "dense-index", progress=False)
    return tmp_path / "dense-index"


def test_bm25_only_index_searches_by_bm25_and_returns_texts(bm25_index):
    assert not (bm25_index / "index.faiss").exists()
    meta = json.loads((bm25_index / "meta.json").read_text())
    assert meta["dense"] is False and meta["model"] is None and meta["bm25"]["stemmer"] == "english"
    searcher = Searcher.open(bm25_index)
    assert searcher.modes == ("bm25",) and searcher.default_mode == "bm25" and searcher.model is None
    hits = searcher.search("how do marmots hibernating survive", k=3)
    # "marmots hibernating" reaches d2 only through the stemmer; no other document shares a term
    assert hits == [Hit("d2", "Marmot hibernation", DOCS[1]["text"], hits[0].score, 1)] and hits[0].score > 0
    assert searcher.doc("d5") == Doc("d5", "Sea ice", DOCS[4]["text"]) and searcher.doc("nope") is None
    assert len(searcher) == 6 and [d.id for d in searcher] == [d["_id"] for d in DOCS]
    assert hits[0].to_json() == {
        "id": "d2",
        "title": "Marmot hibernation",
        "text": DOCS[1]["text"],
        "score": hits[0].score,
        "rank": 1,
    }
    with pytest.raises(IndusError, match="BM25-only"):
        load_index(bm25_index)


def test_stored_bm25_scores_equal_a_fresh_bm25_of_the_evaluator(bm25_index):
    fresh = Bm25Retriever()
    fresh.index([d["_id"] for d in DOCS], [f"{d['title']} {d['text']}".strip() for d in DOCS])
    searcher = Searcher.open(bm25_index)
    for query in ("sea ice in the arctic", "ocean warming heat", "stars and comets"):
        expected = trec_order(dict(fresh.search([query], 10)[0]))
        got = [(h.id, h.score) for h in searcher.search(query, k=10)]
        assert got == expected and expected  # same documents, order and float scores after save/load


def test_dense_index_offers_three_modes_and_hybrid_is_rrf_of_the_other_two(dense_index):
    searcher = Searcher.open(dense_index)
    assert searcher.modes == ("bm25", "dense", "hybrid") and searcher.default_mode == "hybrid"
    model = searcher._dense._model
    assert model is not None  # loaded at open: no search pays for loading it
    planted = "Ocean heat The upper ocean stores most of the excess heat of warming."  # d4's title + text
    dense = searcher.search(planted, k=6, mode="dense")
    assert dense[0].id == "d4" and dense[0].score == pytest.approx(1.0, abs=1e-5)
    for query in (planted, "sea ice heat of the ocean", "winter"):
        bm25 = [(h.id, h.score) for h in searcher.search(query, k=100, mode="bm25")]
        dense = [(h.id, h.score) for h in searcher.search(query, k=100, mode="dense")]
        expected = reciprocal_rank_fusion([bm25, dense], k=60)[:3]
        hybrid = searcher.search(query, k=3)
        assert [(h.id, h.score) for h in hybrid] == expected and [h.rank for h in hybrid] == [1, 2, 3]
    assert searcher._dense._model is model


def test_fusion_k_changes_the_hybrid_scores(dense_index):
    default, flat = Searcher.open(dense_index), Searcher.open(dense_index, fusion_k=0)
    query = "sea ice heat of the ocean"
    # a document ranked r_a and r_b scores 1/(k + r_a) + 1/(k + r_b): at most 2/61 with k = 60, at least 1 with
    # k = 0 for the document ranked first by either system
    assert default.search(query, 1)[0].score <= 2 / 61 + 1e-12 and flat.search(query, 1)[0].score >= 1.0


def test_search_many_equals_one_query_at_a_time(dense_index):
    searcher = Searcher.open(dense_index)
    queries = ["sea ice", "stars lose mass", "proteins fold"]
    for mode in searcher.modes:
        batch = searcher.search_many(queries, k=4, mode=mode)
        single = [searcher.search(q, k=4, mode=mode) for q in queries]
        assert [[h.id for h in hits] for hits in batch] == [[h.id for h in hits] for hits in single]
        for hits_b, hits_s in zip(batch, single):
            assert [h.score for h in hits_b] == pytest.approx([h.score for h in hits_s], abs=1e-5)


@pytest.mark.parametrize(
    ("query", "k", "mode", "message"),
    [
        ("", 10, None, "the query is empty"),
        ("   ", 10, None, "the query is empty"),
        ("x" * 1001, 10, None, "1001 characters; the limit is 1000"),
        ("sea ice", 0, None, "k must be an integer from 1 to 1000, got 0"),
        ("sea ice", 1001, None, "k must be an integer from 1 to 1000"),
        ("sea ice", 10, "sparse", "unknown mode 'sparse'; this index offers bm25, dense, hybrid"),
    ],
)
def test_bad_requests_raise_one_line_errors(dense_index, query, k, mode, message):
    searcher = Searcher.open(dense_index, load_model=False)
    with pytest.raises(IndusError, match=message) as exc:
        searcher.search(query, k, mode)
    assert "\n" not in str(exc.value)


def test_bm25_only_index_refuses_dense_modes(bm25_index):
    searcher = Searcher.open(bm25_index)
    for mode in ("dense", "hybrid"):
        with pytest.raises(IndusError, match="this index offers bm25$"):
            searcher.search("sea ice", 5, mode)
    with pytest.raises(IndusError, match="BM25-only index has no dense part"):
        Searcher.open(bm25_index, model="minilm")


def test_k_beyond_the_collection_returns_every_match(dense_index):
    searcher = Searcher.open(dense_index)
    assert len(searcher.search("sea ice", k=50, mode="dense")) == 6
    assert len(searcher.search("sea ice", k=50, mode="hybrid")) == 6
    assert [h.id for h in searcher.search("sea ice", k=50, mode="bm25")] == ["d5"]


def test_snippet_marks_stemmed_query_terms_and_cuts_long_texts(bm25_index):
    searcher = Searcher.open(bm25_index)
    pieces = searcher.snippet("A marmot hibernates through the winter.", "hibernating marmots in the winter")
    assert [p for p, term in pieces if term] == ["marmot", "hibernates", "winter"]  # "the" is a stop word
    assert "".join(p for p, _ in pieces) == "A marmot hibernates through the winter."
    long_text = "filler words " * 40 + "the sea ice declines " + "more filler " * 40
    pieces = searcher.snippet(long_text, "sea ice", width=60)
    text = "".join(p for p, _ in pieces)
    assert text.startswith("…") and text.endswith("…") and len(text) < 100
    assert [p for p, term in pieces if term] == ["sea", "ice"]
    assert searcher.snippet("no match here", "sea ice") == [("no match here", False)]


def test_broken_index_directories_are_clear_errors(bm25_index, tmp_path):
    with pytest.raises(IndusError, match="not found"):
        Searcher.open(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(IndusError, match="no meta.json"):
        Searcher.open(tmp_path / "empty")
    docs = bm25_index / "docs.jsonl"
    docs.write_text("\n".join(docs.read_text().splitlines()[:-1]) + "\n")
    with pytest.raises(IndusError, match="5 documents do not match ids.json"):
        Searcher.open(bm25_index)


def _main(monkeypatch, capsys, *args):
    monkeypatch.setattr(sys, "argv", ["indus", *args])
    with pytest.raises(SystemExit) as exc:
        main()
    return exc.value.code, capsys.readouterr()


def test_cli_search_prints_titles_and_snippets(monkeypatch, capsys, bm25_index):
    code, out = _main(
        monkeypatch, capsys, "retriever", "search", "--index", str(bm25_index), "--query", "arctic sea ice", "-k", "2"
    )
    assert code in (0, None), out.err
    assert "Sea ice" in out.out and "[d5]" in out.out and "declines in every month" in out.out and "bm25" in out.out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--mode", "dense"], "unknown mode 'dense'; this index offers bm25"),
        (["--model", "bm25", "--mode", "hybrid"], "--model bm25 searches in bm25 mode, but --mode says hybrid"),
        (["--model", "a+b"], "at most"),
        (["-k", "0"], "k must be an integer from 1 to 1000"),
    ],
)
def test_cli_search_bad_options_exit_2_with_one_line(monkeypatch, capsys, bm25_index, args, message):
    code, out = _main(monkeypatch, capsys, "retriever", "search", "--index", str(bm25_index), "--query", "sea", *args)
    assert code == 2 and message in out.err and out.err.strip().count("\n") == 0


def test_cli_batch_search_in_each_mode_writes_runs(monkeypatch, capsys, dense_index, tmp_path):
    queries = tmp_path / "q.jsonl"
    queries.write_text('{"_id": "q1", "text": "arctic sea ice"}\n{"_id": "q2", "text": "stars lose mass"}\n')
    firsts = {}
    for model in ("bm25", "bm25+" + Searcher.open(dense_index, load_model=False).model):
        run = tmp_path / f"{model.split('+')[0]}{'+' in model}.trec"
        code, out = _main(
            monkeypatch,
            capsys,
            "retriever",
            "search",
            "--index",
            str(dense_index),
            "--queries",
            str(queries),
            "--model",
            model,
            "--out",
            str(run),
            "-k",
            "3",
        )
        assert code in (0, None), out.err
        lines = run.read_text().splitlines()
        firsts[model] = lines[0].split()
        assert lines[0].split()[:4] == ["q1", "Q0", "d5", "1"]
    tags = {model: first[5] for model, first in firsts.items()}
    assert tags == {"bm25": "bm25", next(m for m in firsts if "+" in m): "hybrid"}


def test_a_build_that_fails_midway_leaves_no_index(monkeypatch, bm25_index, corpus, tmp_path):
    before = {p.name: p.read_bytes() for p in bm25_index.iterdir() if p.is_file() and p.name != ".indus-run.json"}

    def crash(self, folder):
        raise RuntimeError("disk full")

    monkeypatch.setattr(Bm25Retriever, "save", crash)
    with pytest.raises(RuntimeError, match="disk full"):
        build_index("bm25", corpus, tmp_path / "fresh", progress=False)
    with pytest.raises(RuntimeError, match="disk full"):
        build_index("bm25", corpus, bm25_index, progress=False, overwrite=True)  # rebuilding in place
    assert not (tmp_path / "fresh" / "meta.json").exists()  # at most the run record: a retry reuses it
    assert {
        p.name: p.read_bytes() for p in bm25_index.iterdir() if p.is_file() and p.name != ".indus-run.json"
    } == before  # the old index intact
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folders left behind
    assert Searcher.open(bm25_index).search("sea ice", k=1)[0].id == "d5"
    monkeypatch.undo()
    build_index("bm25", corpus, tmp_path / "fresh", progress=False)  # the failed run does not block its retry
    assert Searcher.open(tmp_path / "fresh").search("sea ice", k=1)[0].id == "d5"


def test_cli_index_bm25_only(monkeypatch, capsys, corpus, tmp_path):
    code, out = _main(
        monkeypatch,
        capsys,
        "retriever",
        "index",
        "--model",
        "bm25",
        "--corpus",
        str(corpus),
        "--out",
        str(tmp_path / "i"),
    )
    assert code in (0, None), out.err
    assert (tmp_path / "i" / "docs.jsonl").is_file() and not (tmp_path / "i" / "index.faiss").exists()
    assert Searcher.open(tmp_path / "i").modes == ("bm25",)
