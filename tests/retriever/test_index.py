"""Index and search: the planted nearest document, the stored ids, batch runs, and clear errors."""

from __future__ import annotations

import json

import faiss
import pytest

from indus.errors import DataFormatError, IndusError
from indus.retriever.index import build_index, load_index, read_texts, write_run

DOCS = [
    {"_id": "d1", "title": "Stellar winds", "text": "Massive stars lose mass through radiation-driven winds."},
    {"_id": "d2", "title": "Dark matter", "text": "Rotation curves of galaxies imply unseen mass in halos."},
    {"_id": "d3", "title": "Protein folding", "text": "Chaperones help proteins reach their native structure."},
    {"_id": "d4", "title": "Ocean heat", "text": "The upper ocean stores most of the excess heat of warming."},
    {"_id": "d5", "title": "Sea ice", "text": "Arctic sea ice extent declines in every month of the year."},
    {"_id": "d6", "title": "", "text": "Comet dust trails cause meteor showers on Earth."},
]


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "corpus.jsonl"
    path.write_text("".join(json.dumps(d) + "\n" for d in DOCS), encoding="utf-8")
    return path


@pytest.mark.parametrize("approximate", [False, True])
def test_index_then_search_returns_the_planted_document(micro_model_dir, corpus, tmp_path, approximate):
    out = tmp_path / "index"
    meta = build_index(str(micro_model_dir), corpus, out, approximate=approximate, progress=False)
    assert meta["count"] == 6 and meta["dim"] == 32 and meta["index_type"] == ("hnsw" if approximate else "flat")
    idx = load_index(out)
    planted = "Ocean heat The upper ocean stores most of the excess heat of warming."  # title + text of d4
    hits = idx.search([planted, "Comet dust trails cause meteor showers on Earth."], k=3)
    assert hits[0][0][0] == "d4" and hits[0][0][1] == pytest.approx(1.0, abs=1e-5)
    assert hits[1][0][0] == "d6"
    assert len(hits[0]) == 3 and hits[0][0][1] >= hits[0][1][1] >= hits[0][2][1]


def test_index_directory_loads_and_its_ids_match(micro_model_dir, corpus, tmp_path):
    out = tmp_path / "index"
    build_index(str(micro_model_dir), corpus, out, progress=False)
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "bm25",
        "docs.jsonl",
        "ids.json",
        "index.faiss",
        "meta.json",
    ]
    assert json.loads((out / "ids.json").read_text()) == [d["_id"] for d in DOCS]
    stored = [json.loads(line) for line in (out / "docs.jsonl").read_text().splitlines()]
    assert stored == [{"id": d["_id"], "title": d["title"], "text": d["text"]} for d in DOCS]
    raw = faiss.read_index(str(out / "index.faiss"))  # a plain faiss index with the embeddings in it
    assert raw.ntotal == 6 and raw.d == 32
    meta = json.loads((out / "meta.json").read_text())
    assert meta["normalized"] is True and meta["metric"] == "inner_product"
    assert meta["model"] == str(micro_model_dir.resolve())
    vectors = raw.reconstruct_n(0, 6)
    assert abs(float((vectors**2).sum(axis=1).mean()) - 1.0) < 1e-5  # stored embeddings are normalised
    assert out.stat().st_mode & 0o055 == 0o055  # readable like any other output


def test_plain_text_collection_uses_line_numbers(tmp_path):
    path = tmp_path / "docs.txt"
    path.write_text("first document\n\nthird line is the second document\n", encoding="utf-8")
    assert read_texts(path) == [("1", "first document"), ("3", "third line is the second document")]


def test_batch_search_writes_trec_and_jsonl_runs(micro_model_dir, corpus, tmp_path):
    build_index(str(micro_model_dir), corpus, tmp_path / "index", progress=False)
    idx = load_index(tmp_path / "index")
    queries = [("q1", "Sea ice Arctic sea ice extent declines in every month of the year."), ("q2", "winds")]
    results = [(qid, text, h) for (qid, text), h in zip(queries, idx.search([t for _, t in queries], k=2))]
    trec = write_run(results, tmp_path / "run.trec").read_text().splitlines()
    assert len(trec) == 4 and trec[0].split()[:4] == ["q1", "Q0", "d5", "1"] and trec[0].endswith("indus")
    rows = [json.loads(line) for line in write_run(results, tmp_path / "run.jsonl").read_text().splitlines()]
    assert rows[0]["query_id"] == "q1" and rows[0]["hits"][0]["id"] == "d5" and len(rows[1]["hits"]) == 2


def test_bad_collections_name_the_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"_id": "a", "text": "fine"}\n{"_id": "b"}\n', encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"bad.jsonl:2: missing field\(s\) text"):
        read_texts(bad)
    dup = tmp_path / "dup.jsonl"
    dup.write_text('{"id": "a", "text": "x"}\n{"id": "a", "text": "y"}\n', encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"dup.jsonl:2: duplicate id 'a' \(first on line 1\)"):
        read_texts(dup)
    noid = tmp_path / "noid.jsonl"
    noid.write_text('{"text": "x"}\n', encoding="utf-8")
    with pytest.raises(DataFormatError, match="noid.jsonl:1:.*_id"):
        read_texts(noid)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match="no documents"):
        read_texts(empty)


def test_broken_index_directories_are_clear_errors(micro_model_dir, corpus, tmp_path):
    with pytest.raises(IndusError, match="not found"):
        load_index(tmp_path / "nope")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "meta.json").write_text("{}")
    with pytest.raises(IndusError, match="missing index.faiss, ids.json"):
        load_index(tmp_path / "half")
    out = tmp_path / "index"
    build_index(str(micro_model_dir), corpus, out, progress=False)
    (out / "ids.json").write_text(json.dumps(["d1", "d2"]))
    with pytest.raises(IndusError, match="6 vectors, ids.json 2 ids"):
        load_index(out)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(IndusError, match="not empty .*--overwrite"):
        build_index(str(micro_model_dir), corpus, tmp_path / "mine", progress=False)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    build_index(str(micro_model_dir), corpus, tmp_path / "mine", progress=False, overwrite=True)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me" and load_index(tmp_path / "mine").meta["count"]
    with pytest.raises(IndusError, match="finished .*--overwrite"):  # a built index is not replaced silently
        build_index(str(micro_model_dir), corpus, tmp_path / "mine", progress=False)
