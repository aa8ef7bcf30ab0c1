"""``indus retriever export``: the OpenSearch / Elasticsearch bulk file and mapping have the documented shape."""

from __future__ import annotations

import json
import sys

import faiss
import numpy as np
import pytest

from indus.cli import main
from indus.errors import IndusError
from indus.retriever.export import export_index
from indus.retriever.index import build_index

DOCS = [
    {"_id": "d1", "title": "Stellar winds", "text": "Massive stars lose mass through radiation-driven winds."},
    {"_id": "d2", "title": "", "text": 'Quotes " and unicode: café, 東京, and a tab\there.'},
    {"_id": 7, "title": "Sea ice", "text": "Arctic sea ice extent declines in every month of the year."},
]


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "corpus.jsonl"
    path.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in DOCS), encoding="utf-8")
    return path


def read_bulk(path):
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) % 2 == 0
    rows = [json.loads(line) for line in lines]  # every line is one JSON object
    return rows[0::2], rows[1::2]


def test_opensearch_bulk_and_knn_vector_mapping(monkeypatch, micro_model_dir, corpus, tmp_path):
    index = tmp_path / "sci-index"
    build_index(str(micro_model_dir), corpus, index, progress=False)
    out = tmp_path / "export" / "sci.ndjson"
    argv = ["indus", "retriever", "export", "--index", str(index), "--format", "opensearch", "--out", str(out)]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code in (0, None)

    actions, sources = read_bulk(out)
    assert actions == [{"index": {"_index": "sci-index", "_id": str(d["_id"])}} for d in DOCS]
    assert [set(s) for s in sources] == [{"id", "title", "text", "embedding"}] * 3
    assert [(s["id"], s["title"], s["text"]) for s in sources] == [(str(d["_id"]), d["title"], d["text"]) for d in DOCS]
    vectors = np.array([s["embedding"] for s in sources])  # (3, 32)
    stored = faiss.read_index(str(index / "index.faiss")).reconstruct_n(0, 3)
    assert vectors.shape == (3, 32) and np.allclose(vectors, stored, atol=1e-7)

    mapping = json.loads((tmp_path / "export" / "sci.mapping.json").read_text())
    assert mapping["settings"] == {"index": {"knn": True}}
    props = mapping["mappings"]["properties"]
    assert props["id"] == {"type": "keyword"} and props["text"]["type"] == "text"
    vector = props["embedding"]
    assert vector["type"] == "knn_vector" and vector["dimension"] == 32
    assert vector["method"]["name"] == "hnsw" and vector["method"]["space_type"] == "cosinesimil"


def test_elasticsearch_mapping_and_bm25_only_index(corpus, tmp_path):
    build_index("bm25", corpus, tmp_path / "lexical", progress=False)
    info = export_index(tmp_path / "lexical", tmp_path / "lex.ndjson", fmt="elasticsearch", name="lex")
    assert info["dim"] is None and info["documents"] == 3
    actions, sources = read_bulk(tmp_path / "lex.ndjson")
    assert actions[2] == {"index": {"_index": "lex", "_id": "7"}} and "embedding" not in sources[0]
    assert "embedding" not in json.loads((tmp_path / "lex.mapping.json").read_text())["mappings"]["properties"]


def test_elasticsearch_dense_vector_and_inner_product(micro_model_dir, corpus, tmp_path):
    build_index(str(micro_model_dir), corpus, tmp_path / "idx", progress=False)
    export_index(tmp_path / "idx", tmp_path / "es.ndjson", fmt="elasticsearch", space="dot_product")
    vector = json.loads((tmp_path / "es.mapping.json").read_text())["mappings"]["properties"]["embedding"]
    assert vector["type"] == "dense_vector" and vector["dims"] == 32 and vector["similarity"] == "dot_product"
    export_index(tmp_path / "idx", tmp_path / "os.ndjson", space="innerproduct")
    vector = json.loads((tmp_path / "os.mapping.json").read_text())["mappings"]["properties"]["embedding"]
    assert vector["method"]["space_type"] == "innerproduct"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"fmt": "solr"}, "--format must be one of opensearch, elasticsearch"),
        ({"space": "l2"}, "--space for opensearch must be one of cosinesimil, innerproduct"),
        ({"name": "Bad Name"}, "lower case"),
    ],
)
def test_bad_options_are_one_line_errors(micro_model_dir, corpus, tmp_path, kwargs, message):
    build_index(str(micro_model_dir), corpus, tmp_path / "idx", progress=False)
    with pytest.raises(IndusError, match=message):
        export_index(tmp_path / "idx", tmp_path / "x.ndjson", **kwargs)
    assert not (tmp_path / "x.ndjson").exists()
