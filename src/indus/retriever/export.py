"""Export an index to a search engine: an OpenSearch / Elasticsearch bulk file and the index mapping.

``indus retriever export --index DIR --format opensearch --out FILE`` writes

- ``FILE``: the ``_bulk`` body (newline-delimited JSON): per document an action line
  ``{"index": {"_index": NAME, "_id": ID}}`` and a document line ``{"id", "title", "text", "embedding"}``, the
  embedding being the normalised vector the faiss index holds (``dim`` floats; no ``embedding`` for a BM25-only
  index);
- ``FILE``'s stem + ``.mapping.json``: the body of ``PUT /NAME`` creating the index: ``id`` as ``keyword``,
  ``title`` and ``text`` as ``text`` with the ``english`` analyzer (BM25 on the engine's side), and ``embedding``
  as an OpenSearch ``knn_vector`` (``dimension``, HNSW on the Lucene engine, ``space_type`` ``cosinesimil`` or
  ``innerproduct``: the same ranking for normalised vectors) or, with ``--format elasticsearch``, a
  ``dense_vector`` (``dims``, ``similarity`` ``cosine`` / ``dot_product``).

Loading it (OpenSearch on localhost)::

    curl -XPUT localhost:9200/scifact -H 'Content-Type: application/json' --data-binary @scifact.mapping.json
    curl -XPOST localhost:9200/_bulk -H 'Content-Type: application/x-ndjson' --data-binary @scifact.ndjson

Both files are written atomically.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from indus.atomic import atomic_path, atomic_write_json
from indus.errors import IndusError
from indus.retriever.search import Searcher

FORMATS = ("opensearch", "elasticsearch")
SPACES = {"opensearch": ("cosinesimil", "innerproduct"), "elasticsearch": ("cosine", "dot_product")}
VECTOR_FIELD = "embedding"
CHUNK = 1024  # vectors read from faiss at a time: bounded memory for any collection size


def mapping(
    fmt: str, dim: int | None, *, space: str | None = None, hnsw_m: int = 16, ef_construction: int = 100
) -> dict[str, Any]:
    """The index-creation body for ``fmt`` with a vector field of ``dim`` dimensions (none when ``dim`` is None)."""
    text_field = {"type": "text", "analyzer": "english"}
    properties: dict[str, Any] = {"id": {"type": "keyword"}, "title": text_field, "text": text_field}
    body: dict[str, Any] = {"mappings": {"properties": properties}}
    if dim is None:
        return body
    space = space or SPACES[fmt][0]
    if space not in SPACES[fmt]:
        raise IndusError(f"--space for {fmt} must be one of {', '.join(SPACES[fmt])}, got {space!r}")
    if fmt == "opensearch":
        body["settings"] = {"index": {"knn": True}}
        properties[VECTOR_FIELD] = {
            "type": "knn_vector",
            "dimension": dim,
            "method": {
                "name": "hnsw",
                "space_type": space,
                "engine": "lucene",  # HNSW with cosinesimil and innerproduct on every OpenSearch 2.x / 3.x
                "parameters": {"m": hnsw_m, "ef_construction": ef_construction},
            },
        }
    else:
        properties[VECTOR_FIELD] = {
            "type": "dense_vector",
            "dims": dim,
            "index": True,
            "similarity": space,
            "index_options": {"type": "hnsw", "m": hnsw_m, "ef_construction": ef_construction},
        }
    return body


def export_index(
    index_dir: str | Path,
    out: str | Path,
    *,
    fmt: str = "opensearch",
    name: str | None = None,
    space: str | None = None,
) -> dict[str, Any]:
    """Write the bulk file ``out`` and the mapping beside it (see the module docstring).

    Parameters
    ----------
    index_dir
        An index directory from ``indus retriever index``.
    out
        The bulk file (``.ndjson`` by convention); the mapping goes to ``<stem>.mapping.json`` beside it.
    fmt
        ``opensearch`` (``knn_vector``) or ``elasticsearch`` (``dense_vector``); the bulk file is the same.
    name
        The engine's index name (default: the index directory's name).
    space
        The vector similarity (default ``cosinesimil`` / ``cosine``).

    Returns
    -------
    dict
        ``bulk`` and ``mapping`` paths, ``name``, ``documents``, ``dim``.
    """
    if fmt not in FORMATS:
        raise IndusError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    searcher = Searcher.open(index_dir, load_model=False)
    out = Path(out)
    name = name or Path(index_dir).resolve().name
    if not name or name != name.lower() or any(c in name for c in ' "*\\<|,>/?#:'):
        raise IndusError(f'--name {name!r}: an index name must be lower case without spaces or " * \\ < | , > / ? # :')
    dense = searcher._dense
    dim = int(dense.index.d) if dense is not None else None
    hnsw = (searcher.meta.get("hnsw") or {}) if dense is not None else {}
    body = mapping(fmt, dim, space=space, hnsw_m=hnsw.get("m", 16), ef_construction=hnsw.get("ef_construction", 100))
    mapping_path = out.with_name(out.name.split(".")[0] + ".mapping.json")
    if mapping_path.resolve() == out.resolve():
        raise IndusError(f"--out {out}: name the bulk file something other than its mapping (e.g. {name}.ndjson)")
    docs = list(searcher)
    with atomic_path(out) as tmp, tmp.open("w", encoding="utf-8") as fh:
        for start in range(0, len(docs), CHUNK):
            chunk = docs[start : start + CHUNK]
            vectors = None
            if dense is not None:
                # 8 decimals: the vectors are unit length, so this keeps each cosine to ~1e-8
                vectors = dense.doc_vectors(np.arange(start, start + len(chunk))).astype(np.float64).round(8).tolist()
            for i, doc in enumerate(chunk):
                source: dict[str, Any] = {"id": doc.id, "title": doc.title, "text": doc.text}
                if vectors is not None:
                    source[VECTOR_FIELD] = vectors[i]
                fh.write(json.dumps({"index": {"_index": name, "_id": doc.id}}, ensure_ascii=False) + "\n")
                fh.write(json.dumps(source, ensure_ascii=False) + "\n")
    atomic_write_json(mapping_path, body)
    return {"bulk": str(out), "mapping": str(mapping_path), "name": name, "documents": len(docs), "dim": dim}
