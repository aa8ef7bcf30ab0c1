"""A dense index of a document collection (faiss) and search over it: ``indus retriever index`` / ``search``.

Documents are embedded with a bi-encoder (normalised, so inner product = cosine) and stored in faiss:
``IndexFlatIP`` (exact) by default, or ``IndexHNSWFlat`` with the inner-product metric (approximate, for large
collections; no training pass, tunable ``ef_search``). An index is a directory, written atomically::

    INDEX/index.faiss    the faiss index (it holds the embeddings; faiss.read_index reads it)
    INDEX/ids.json       document ids, row i of the index = ids[i]
    INDEX/meta.json      model, dim, normalized, metric, count, index type, corpus, build time

Collections: a BEIR folder or its ``corpus.jsonl`` (``_id``, ``title``, ``text``; title and text are joined with a
space, as BEIR dense models embed them), JSON lines with ``id`` and ``text`` (optional ``title``), or plain text
(one document per non-blank line, id = its line number). Queries: BEIR ``queries.jsonl``, JSON lines with
``id``/``text``, or text lines. ``.gz`` is read transparently.

Example
-------
>>> meta = build_index("minilm", "corpus.jsonl", "runs/index")  # doctest: +SKIP
>>> load_index("runs/index").search(["how do stars form?"], k=3)  # doctest: +SKIP
[[('doc-17', 0.71), ('doc-3', 0.64), ('doc-9', 0.60)]]
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from indus.atomic import atomic_directory, atomic_path
from indus.data.jsonl import iter_jsonl, open_text
from indus.errors import DataFormatError, IndusError

INDEX_FORMAT = "indus-retriever-index"
INDEX_FILES = ("index.faiss", "ids.json", "meta.json")
JSONL_SUFFIXES = (".jsonl", ".jsonl.gz")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _is_jsonl(path: Path) -> bool:
    return path.name.endswith(JSONL_SUFFIXES)


def read_texts(path: str | Path, *, kind: str = "documents") -> list[tuple[str, str]]:
    """``(id, text)`` pairs from a BEIR/JSON-lines file or a plain text file; ids must be unique.

    Parameters
    ----------
    path
        A file (``.jsonl``/``.jsonl.gz`` = JSON lines, anything else = one text per line).
    kind
        ``documents`` (titles are prepended to texts) or ``queries``; used in messages.
    """
    path = Path(path)
    items: list[tuple[str, str]] = []
    seen: dict[str, int] = {}
    if _is_jsonl(path):
        for lineno, obj in iter_jsonl(path, required=("text",)):
            doc_id = obj.get("_id", obj.get("id"))
            if doc_id is None or isinstance(doc_id, bool) or not isinstance(doc_id, str | int):
                raise DataFormatError(path, lineno, 'expected a string "_id" (BEIR) or "id" field')
            text, title = obj["text"], obj.get("title") or ""
            if not isinstance(text, str) or not isinstance(title, str):
                raise DataFormatError(path, lineno, 'fields "text" and "title" must be strings')
            if kind == "documents" and title.strip():
                text = f"{title.strip()} {text}".strip()
            if not text.strip():
                raise DataFormatError(path, lineno, f"empty text for id {doc_id!r}")
            doc_id = str(doc_id)
            if doc_id in seen:
                raise DataFormatError(path, lineno, f"duplicate id {doc_id!r} (first on line {seen[doc_id]})")
            seen[doc_id] = lineno
            items.append((doc_id, text))
    else:
        with open_text(path) as fh:
            try:
                for lineno, line in enumerate(fh, start=1):
                    if line.strip():
                        items.append((str(lineno), line.rstrip("\n")))
            except UnicodeDecodeError as exc:
                raise DataFormatError(path, None, f"could not read as UTF-8 text ({exc})") from None
    if not items:
        raise DataFormatError(path, None, f"no {kind} found")
    return items


def resolve_collection(path: str | Path, kind: str = "documents") -> Path:
    """A collection file from a path, a BEIR folder (its ``corpus.jsonl`` / ``queries.jsonl``) or a dataset name."""
    from indus.data.registry import resolve_dataset

    path = resolve_dataset(path)
    if path.is_dir():
        stem = "corpus" if kind == "documents" else "queries"
        for name in (f"{stem}.jsonl", f"{stem}.jsonl.gz"):
            if (path / name).is_file():
                return path / name
        raise IndusError(f"{path}: a folder without {stem}.jsonl (expected a BEIR folder or a file)")
    return path


def _model_record(spec: str) -> str:
    """What meta.json keeps to reload the model: an absolute path for local folders, else the spec itself."""
    from indus.retriever.bi_encoder import parse_layer_spec

    if parse_layer_spec(spec) is None and not spec.startswith("random:") and Path(spec).expanduser().exists():
        return str(Path(spec).expanduser().resolve())
    return spec


def build_index(model: str | Path, corpus: str | Path, out: str | Path, *, approximate: bool = False,
                batch_size: int = 64, max_seq_length: int | None = None, hnsw_m: int = 32,
                ef_construction: int = 200, ef_search: int = 128, progress: bool = True,
                index_type: str | None = None) -> dict[str, Any]:
    """Embed a collection and write the index directory ``out`` atomically.

    Parameters
    ----------
    model
        Bi-encoder spec (``minilm``, a folder, ``layers:N@MODEL``...).
    corpus
        Collection (see the module docstring).
    out
        Index directory (replaced if it exists).
    approximate
        HNSW (``hnsw_m`` links per node, ``ef_construction``, default ``ef_search``) instead of exact search.
    index_type
        ``flat``, ``hnsw``, ``ivfpq`` or ``auto`` (by collection size, :mod:`indus.retriever.ann`); overrides
        ``approximate``. Under ``torchrun`` every process encodes its shard and the main process writes the index.
    batch_size, max_seq_length
        Encoding settings.

    Returns
    -------
    dict
        The contents of ``meta.json``.
    """
    import faiss

    from indus.retriever.ann import IndexSpec, build_faiss_index
    from indus.retriever.bi_encoder import load_bi_encoder
    from indus.retriever.distributed import barrier, encode_sharded

    if index_type is not None:
        IndexSpec(kind=index_type)  # a wrong name fails before the encoding, not after
    out = Path(out)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / "meta.json").is_file())):
        raise IndusError(f"{out}: exists and is not an index directory; choose a new --out (it would be replaced)")
    corpus_path = resolve_collection(corpus, "documents")
    docs = read_texts(corpus_path, kind="documents")
    spec = str(model)
    encoder = load_bi_encoder(spec, max_seq_length=max_seq_length)
    start = time.perf_counter()
    vectors = out.parent / f".{out.name}.vectors.npy"  # (N, D) on disk: every process writes its shard's rows
    emb = encode_sharded(encoder, [text for _, text in docs], vectors, batch_size=batch_size)
    encode_s = time.perf_counter() - start
    if emb is None:  # another process of a torchrun launch: the main process writes the index
        barrier()
        return load_index(out).meta
    kind = index_type or ("hnsw" if approximate else "flat")
    index, ann_spec = build_faiss_index(kind, emb, hnsw_m=hnsw_m, ef_construction=ef_construction,
                                        ef_search=ef_search)
    dim = int(emb.shape[1])
    del emb
    vectors.unlink()
    meta = {
        "format": INDEX_FORMAT, "version": 1, "model": _model_record(spec), "dim": dim, "normalized": True,
        "metric": "inner_product", "count": len(docs), "index_type": ann_spec.kind, "index": ann_spec.to_json(),
        "hnsw": ({"m": hnsw_m, "ef_construction": ef_construction, "ef_search": ef_search}
                 if ann_spec.kind == "hnsw" else None),
        "max_seq_length": encoder.max_seq_length, "corpus": str(corpus_path.resolve()),
        "encode_s": round(encode_s, 2), "docs_per_s": round(len(docs) / max(encode_s, 1e-9), 1),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    with atomic_directory(out) as tmp:
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700 folders; an index is as readable as any output
        faiss.write_index(index, str(tmp / "index.faiss"))
        (tmp / "ids.json").write_text(json.dumps([doc_id for doc_id, _ in docs], ensure_ascii=False),
                                      encoding="utf-8")
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    barrier()  # the other processes of a torchrun launch return once the index exists
    return meta


@dataclass
class RetrieverIndex:
    """A loaded index: the faiss index, the document ids of its rows, and its metadata."""

    path: Path
    index: Any
    ids: list[str]
    meta: dict[str, Any]
    _model: Any = field(default=None, repr=False)

    def model(self, spec: str | None = None) -> Any:
        """The bi-encoder that built the index (or ``spec``), loaded once."""
        if self._model is None or spec is not None:
            from indus.retriever.bi_encoder import load_bi_encoder

            self._model = load_bi_encoder(spec or self.meta["model"], max_seq_length=self.meta.get("max_seq_length"))
        return self._model

    def encode(self, queries: list[str], batch_size: int = 64, progress: bool = False) -> Any:
        """``(Q, D)`` normalised query embeddings."""
        from indus.retriever.bi_encoder import encode

        emb = encode(self.model(), queries, batch_size=batch_size, progress=progress)
        if emb.shape[1] != self.index.d:
            raise IndusError(f"{self.path}: the model embeds in {emb.shape[1]} dimensions, the index holds "
                             f"{self.index.d}")
        return emb

    def search_embeddings(self, emb: Any, k: int = 10, ef_search: int | None = None) -> list[list[tuple[str, float]]]:
        """Top-``k`` ``(id, score)`` per query embedding, best first."""
        if k < 1:
            raise IndusError(f"-k must be at least 1, got {k}")
        if ef_search is not None:
            from indus.retriever.ann import set_search_params

            set_search_params(self.index, ef_search=max(ef_search, k))
        scores, rows = self.index.search(emb, min(k, self.index.ntotal))  # (Q, k), (Q, k)
        return [[(self.ids[r], float(s)) for r, s in zip(row, score) if r >= 0] for row, score in zip(rows, scores)]

    def search(self, queries: list[str], k: int = 10, batch_size: int = 64,
               ef_search: int | None = None) -> list[list[tuple[str, float]]]:
        """Embed ``queries`` and return their top-``k`` ``(id, score)`` lists."""
        return self.search_embeddings(self.encode(queries, batch_size), k, ef_search)


def load_index(path: str | Path, model: str | None = None) -> RetrieverIndex:
    """Load an index directory written by :func:`build_index`; checks that its parts agree.

    ``model`` overrides the model recorded in ``meta.json`` (e.g. after moving the model folder).
    """
    from indus.retriever.ann import read_faiss_index

    path = Path(path)
    if not path.is_dir():
        raise IndusError(f"{path}: index directory not found")
    missing = [name for name in INDEX_FILES if not (path / name).is_file()]
    if missing:
        raise IndusError(f"{path}: not an index directory (missing {', '.join(missing)}; "
                         "build one with `indus retriever index`)")
    try:
        meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
        ids = json.loads((path / "ids.json").read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise IndusError(f"{path}: unreadable meta.json or ids.json ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != INDEX_FORMAT:
        raise IndusError(f"{path / 'meta.json'}: not an {INDEX_FORMAT} (format field missing or different)")
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise IndusError(f"{path / 'ids.json'}: expected a JSON list of document id strings")
    index = read_faiss_index(path / "index.faiss", mmap=True)  # vectors stay in the (shared) page cache
    if not (index.ntotal == len(ids) == meta.get("count")):
        raise IndusError(f"{path}: the index holds {index.ntotal} vectors, ids.json {len(ids)} ids and meta.json "
                         f"count {meta.get('count')}; rebuild the index")
    if index.d != meta.get("dim"):
        raise IndusError(f"{path}: the index has dimension {index.d}, meta.json says {meta.get('dim')}")
    if model is not None:
        meta = {**meta, "model": _model_record(model)}
    return RetrieverIndex(path, index, ids, meta)


def write_run(results: list[tuple[str, str, list[tuple[str, float]]]], out: str | Path, fmt: str | None = None,
              tag: str = "indus") -> Path:
    """Write search results ``(query_id, query, hits)`` as a TREC run (``qid Q0 docid rank score tag``) or JSONL.

    ``fmt``: ``trec`` or ``jsonl``; by default JSONL for a ``.jsonl`` file name, else TREC.
    """
    out = Path(out)
    fmt = fmt or ("jsonl" if out.name.endswith(".jsonl") else "trec")
    if fmt not in ("trec", "jsonl"):
        raise IndusError(f"--format must be trec or jsonl, got {fmt!r}")
    lines = []
    for qid, query, hits in results:
        if fmt == "trec":
            lines += [f"{qid} Q0 {doc_id} {rank} {score:.6f} {tag}" for rank, (doc_id, score) in enumerate(hits, 1)]
        else:
            lines.append(json.dumps({"query_id": qid, "query": query,
                                     "hits": [{"id": d, "score": round(s, 6)} for d, s in hits]}, ensure_ascii=False))
    with atomic_path(out) as tmp:
        tmp.write_text("\n".join(lines) + ("\n" if lines else ""), encoding="utf-8")
    return out
