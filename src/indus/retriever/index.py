"""A searchable index of a document collection: ``indus retriever index`` / ``search`` / ``export``.

An index holds each document's id, title and text, a BM25 index (bm25s) and, unless it is BM25-only, the documents'
embeddings by a bi-encoder (normalised, so inner product = cosine) in faiss: ``IndexFlatIP`` (exact) by default, or
``IndexHNSWFlat`` with the inner-product metric (approximate, for large collections; no training pass, tunable
``ef_search``). :class:`indus.retriever.search.Searcher` searches it by BM25, dense or hybrid (reciprocal-rank
fusion). An index is a directory, written atomically (a killed build leaves no directory a later run trusts)::

    INDEX/meta.json      model (null when BM25-only), dim, normalized, metric, count, index type, bm25 settings...
    INDEX/ids.json       document ids, row i of every part = ids[i]
    INDEX/docs.jsonl     {"id", "title", "text"} per row, in row order (what search results show)
    INDEX/bm25/          the bm25s index (``bm25s.BM25.save``) and its tokeniser settings (indus-bm25.json)
    INDEX/index.faiss    the faiss index holding the embeddings (dense indexes only; faiss.read_index reads it)
    INDEX/vectors.npy    quantized indexes only: the float32 embeddings, memory-mapped to rescore candidates

``--quantize int8`` stores the embeddings as one byte per dimension (faiss ``IndexScalarQuantizer``, 4x smaller),
``--quantize binary`` as their sign bits (``IndexBinaryFlat``, Hamming distance, 32x smaller); both search
exhaustively. ``--rescore N`` re-ranks the ``N`` best compressed candidates by the exact inner product with the
float vectors, which stay on disk (``vectors.npy``, memory-mapped: only the candidates' rows are read). A binary
index without rescoring scores a document ``1 - 2 h / D`` (``h`` differing sign bits): the cosine of the sign
vectors. ``meta.json`` records ``index_bytes`` (the searched structure) and ``vectors_bytes``.

``--model bm25`` builds a BM25-only index (no encoder needed, searched by ``bm25`` only).

Collections: a BEIR folder or its ``corpus.jsonl`` (``_id``, ``title``, ``text``; title and text are joined with a
space, as BEIR dense models embed them and as ``indus eval ir`` indexes them), JSON lines with ``id`` and ``text``
(optional ``title``), or plain text (one document per non-blank line, id = its line number). Queries: BEIR
``queries.jsonl``, JSON lines with ``id``/``text``, or text lines. ``.gz`` is read transparently.

Example
-------
>>> meta = build_index("minilm", "corpus.jsonl", "runs/index")  # doctest: +SKIP
>>> [len(hits) for hits in load_index("runs/index").search(["how do stars form?"], k=3)]  # doctest: +SKIP
[3]
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from indus.atomic import atomic_directory, atomic_path
from indus.data.beir import Document
from indus.data.jsonl import iter_jsonl, open_text
from indus.data.registry import resolve_dataset
from indus.errors import DataFormatError, IndusError
from indus.evaluation.ir import Bm25Retriever
from indus.models import Bm25, documents_model, model_record, parse_model
from indus.outdir import prepare_output_dir, staging_dir
from indus.retriever.bi_encoder import encode, load_bi_encoder

INDEX_FORMAT = "indus-retriever-index"
INDEX_VERSION = 2  # 2: docs.jsonl and bm25/ beside the faiss index; BM25-only indexes
INDEX_FILES = ("index.faiss", "ids.json", "meta.json")
DOCS_FILE, BM25_DIR, VECTORS_FILE = "docs.jsonl", "bm25", "vectors.npy"
BM25_ONLY = "bm25"  # the --model value that builds an index without a dense part
JSONL_SUFFIXES = (".jsonl", ".jsonl.gz")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _is_jsonl(path: Path) -> bool:
    return path.name.endswith(JSONL_SUFFIXES)


def iter_documents(path: str | Path, *, kind: str = "documents") -> Iterator[tuple[str, str, str]]:
    """``(id, title, text)`` triples from a BEIR/JSON-lines file or a plain text file, streamed; ids must be unique.

    Parameters
    ----------
    path
        A file (``.jsonl``/``.jsonl.gz`` = JSON lines, anything else = one text per line, with no title).
    kind
        ``documents`` or ``queries``; used in messages.
    """
    path = Path(path)
    seen: dict[str, int] = {}
    if _is_jsonl(path):
        for lineno, obj in iter_jsonl(path, required=("text",)):
            doc_id = obj.get("_id", obj.get("id"))
            if doc_id is None or isinstance(doc_id, bool) or not isinstance(doc_id, str | int):
                raise DataFormatError(path, lineno, 'expected a string "_id" (BEIR) or "id" field')
            text, title = obj["text"], obj.get("title") or ""
            if not isinstance(text, str) or not isinstance(title, str):
                raise DataFormatError(path, lineno, 'fields "text" and "title" must be strings')
            if not (Document(title, text).full_text() if kind == "documents" else text.strip()):
                raise DataFormatError(path, lineno, f"empty text for id {doc_id!r}")
            doc_id = str(doc_id)
            if doc_id in seen:
                raise DataFormatError(path, lineno, f"duplicate id {doc_id!r} (first on line {seen[doc_id]})")
            seen[doc_id] = lineno
            yield doc_id, title, text
        return
    with open_text(path) as fh:
        try:
            for lineno, line in enumerate(fh, start=1):
                if line.strip():
                    yield str(lineno), "", line.rstrip("\n")
        except UnicodeDecodeError as exc:
            raise DataFormatError(path, None, f"could not read as UTF-8 text ({exc})") from None


def read_documents(path: str | Path, *, kind: str = "documents") -> list[tuple[str, str, str]]:
    """All of :func:`iter_documents` as a list; an empty file is an error."""
    items = list(iter_documents(path, kind=kind))
    if not items:
        raise DataFormatError(Path(path), None, f"no {kind} found")
    return items


def read_texts(path: str | Path, *, kind: str = "documents") -> list[tuple[str, str]]:
    """``(id, text)`` pairs (see :func:`read_documents`); a document's title is prepended to its text.

    Parameters
    ----------
    path
        A file (``.jsonl``/``.jsonl.gz`` = JSON lines, anything else = one text per line).
    kind
        ``documents`` (titles are prepended to texts) or ``queries``; used in messages.
    """
    docs = read_documents(path, kind=kind)
    if kind == "documents":
        # the BEIR convention, the same join `indus eval ir` indexes (one door: Document.full_text)
        return [(doc_id, Document(title, text).full_text()) for doc_id, title, text in docs]
    return [(doc_id, text) for doc_id, _, text in docs]


def resolve_collection(path: str | Path, kind: str = "documents") -> Path:
    """A collection file from a path, a BEIR folder (its ``corpus.jsonl`` / ``queries.jsonl``) or a dataset name."""
    path = resolve_dataset(path)
    if path.is_dir():
        stem = "corpus" if kind == "documents" else "queries"
        for name in (f"{stem}.jsonl", f"{stem}.jsonl.gz"):
            if (path / name).is_file():
                return path / name
        raise IndusError(f"{path}: a folder without {stem}.jsonl (expected a BEIR folder or a file)")
    return path


def check_query_encoder(model: str | Path | None, query_model: str | Path | None) -> None:
    """Refuse an index whose documents a query encoder cannot search: a query-only student given as the document
    model (its documents model is recorded in its run folder), or a query model on a BM25-only index."""
    if query_model is not None and is_bm25_only(model):
        raise IndusError("--query-model needs a dense --model (a BM25-only index has no vectors to search)")
    docs = None if is_bm25_only(model) else documents_model(str(model))
    if docs is not None:
        raise IndusError(
            f"{model} is a query encoder distilled for the document vectors of {docs}: index with "
            f"--model {docs} --query-model {model}"
        )


def is_bm25_only(model: str | Path | None) -> bool:
    """Whether ``model`` asks for an index without a dense part (``--model bm25``)."""
    return model is None or isinstance(parse_model(model, fused=False), Bm25)


def _call(fn: Any) -> Any:
    return fn()


def build_index(
    model: str | Path | None,
    corpus: str | Path,
    out: str | Path,
    *,
    approximate: bool = False,
    batch_size: int = 64,
    max_seq_length: int | None = None,
    hnsw_m: int = 32,
    ef_construction: int = 200,
    ef_search: int = 128,
    progress: bool = True,
    index_type: str | None = None,
    quantize: str | None = None,
    rescore: int = 0,
    overwrite: bool = False,
    query_model: str | Path | None = None,
) -> dict[str, Any]:
    """Index a collection (texts, BM25 and, unless BM25-only, embeddings) and write ``out`` atomically.

    Parameters
    ----------
    model
        Bi-encoder spec (``minilm``, a folder, ``layers:N@MODEL``...), or ``bm25`` / ``None`` for a BM25-only
        index.
    corpus
        Collection (see the module docstring).
    out
        Index directory: new or empty, unless ``overwrite`` (index files replaced, other files kept).
    approximate
        HNSW (``hnsw_m`` links per node, ``ef_construction``, default ``ef_search``) instead of exact search.
    batch_size, max_seq_length
        Encoding settings.
    quantize, rescore
        ``int8`` or ``binary`` (a flat index over compressed vectors; the float vectors kept in ``vectors.npy``),
        and how many compressed candidates searches re-rank exactly (0: none).
    query_model
        Encode the queries of searches with this model instead of ``model`` (asymmetric retrieval: a small query
        encoder distilled into ``model``'s space, ``indus retriever distill --query-only``); recorded in
        ``meta.json``. Must embed in the index's dimension.

    Returns
    -------
    dict
        The contents of ``meta.json`` (on every process, under sharded encoding).

    Notes
    -----
    Called by every process inside :func:`indus.distributed.sharded_encoding` (``torchrun ... -m
    indus retriever index``), each process encodes its contiguous shard of the collection into one ``.npy`` in a
    hidden staging folder of ``out`` (so ``out`` must be on a file system every process sees); the main process
    alone prepares ``out``, builds BM25 and the faiss index from that memory map and writes the index, once,
    while the others wait. The vectors equal those of one process.
    """
    from indus.distributed import rank_and_world, run_on_main, sharding_active  # lazy: pulls torch

    if index_type is not None:
        from indus.ann import IndexSpec  # lazy: pulls faiss

        IndexSpec(kind=index_type)  # a wrong name fails before the encoding, not after
    if quantize is not None:
        from indus.ann import QUANTIZE  # lazy: pulls faiss

        if quantize not in QUANTIZE:
            raise IndusError(f"--quantize must be one of {', '.join(QUANTIZE)}, got {quantize!r}")
        if approximate or index_type not in (None, "flat"):
            raise IndusError(
                "--quantize builds an exhaustive (flat) index over compressed vectors; drop "
                "--approximate / --index-type"
            )
        if is_bm25_only(model):
            raise IndusError("--quantize needs a dense --model (a BM25-only index has no vectors)")
    if rescore < 0 or (rescore and quantize is None):
        raise IndusError("--rescore N (N >= 1) re-ranks the candidates of a --quantize index")
    check_query_encoder(model, query_model)

    # inside distributed.sharded_encoding (torchrun ... indus retriever index): every process encodes its shard,
    # the main process alone touches OUT; one process: the same steps, with no one to wait for
    world = rank_and_world()[1] if sharding_active() else 1
    on_main = run_on_main if world > 1 else _call  # the pipeline may call this from its main process alone
    dense = not is_bm25_only(model)

    def prepare() -> tuple[Path, Path | None]:

        folder = prepare_output_dir(
            out, command="retriever index", overwrite=overwrite, completion_file="meta.json"
        ).path
        # the shards' vectors meet in one file that every process sees; a crash leaves it to the retry's cleanup
        return folder, staging_dir(folder) if world > 1 and dense else None

    out, staging = on_main(prepare)
    corpus_path = resolve_collection(corpus, "documents")
    docs = read_documents(corpus_path, kind="documents")
    texts = [Document(title, text).full_text() for _, title, text in docs]  # what BM25 and the encoder see
    emb, encoder, encode_s = None, None, None
    if dense:
        encoder = load_bi_encoder(str(model), max_seq_length=max_seq_length)
        start = time.perf_counter()
        if staging is None:
            emb = encode(encoder, texts, batch_size=batch_size, progress=progress)  # (N, D)
        else:
            from indus.distributed import encode_sharded  # lazy: pulls torch

            emb = encode_sharded(encoder, texts, staging / "vectors.npy", batch_size=batch_size)  # (N, D) on main
        encode_s = time.perf_counter() - start
        if query_model is not None:
            probe = encode(load_bi_encoder(str(query_model), max_seq_length=max_seq_length), ["a probe query"])
            if probe.shape[1] != (emb.shape[1] if emb is not None else encoder.get_embedding_dimension()):
                raise IndusError(
                    f"--query-model {query_model} embeds in {probe.shape[1]} dimensions, --model {model} in "
                    f"{encoder.get_embedding_dimension()}: a query encoder must share its document model's space"
                )

    def write() -> dict[str, Any]:
        try:
            return _write_index(
                out,
                model,
                corpus_path,
                docs,
                texts,
                emb,
                encoder,
                encode_s,
                world,
                approximate=approximate,
                index_type=index_type,
                hnsw_m=hnsw_m,
                ef_construction=ef_construction,
                ef_search=ef_search,
                quantize=quantize,
                rescore=rescore,
                progress=progress,
                query_model=query_model,
            )
        finally:
            if staging is not None:
                shutil.rmtree(staging, ignore_errors=True)

    return on_main(write)  # the others wait for the index, then return its meta too


def _write_index(
    out: Path,
    model: str | Path | None,
    corpus_path: Path,
    docs: list[tuple[str, str, str]],
    texts: list[str],
    emb: Any,
    encoder: Any,
    encode_s: float | None,
    processes: int,
    *,
    approximate: bool,
    index_type: str | None,
    hnsw_m: int,
    ef_construction: int,
    ef_search: int,
    quantize: str | None,
    rescore: int,
    progress: bool,
    query_model: str | Path | None = None,
) -> dict[str, Any]:
    """BM25 and the faiss index of :func:`build_index`, written atomically into ``out`` (main process)."""
    import faiss

    from indus.ann import build_faiss_index  # lazy: pulls faiss

    ids = [doc_id for doc_id, _, _ in docs]
    start = time.perf_counter()
    bm25 = Bm25Retriever(progress=progress)
    bm25.index(ids, texts)
    bm25_s = time.perf_counter() - start
    index, dense_meta, dim, seq_len = None, {"index_type": None, "hnsw": None}, None, None
    if emb is not None:
        if quantize is not None:
            from indus.ann import build_quantized_index  # lazy: pulls faiss

            index = build_quantized_index(quantize, emb)
            dense_meta = {
                "index_type": "flat",
                "index": {"kind": "flat", "quantize": quantize, "rescore": rescore},
                "hnsw": None,
                "quantize": quantize,
                "rescore": rescore,
            }
        else:
            # flat | hnsw | ivfpq | auto (by collection size), built in batches: indus.ann
            index, spec = build_faiss_index(
                index_type or ("hnsw" if approximate else "flat"),
                emb,
                hnsw_m=hnsw_m,
                ef_construction=ef_construction,
                ef_search=ef_search,
            )
            dense_meta = {
                "index_type": spec.kind,
                "index": spec.to_json(),
                "hnsw": (
                    {"m": hnsw_m, "ef_construction": ef_construction, "ef_search": ef_search}
                    if spec.kind == "hnsw"
                    else None
                ),
            }
        dim, seq_len = int(emb.shape[1]), encoder.max_seq_length
    meta = {
        "format": INDEX_FORMAT,
        "version": INDEX_VERSION,
        "model": None if index is None else model_record(str(model)),
        "query_model": None if index is None or query_model is None else model_record(str(query_model)),
        "dense": index is not None,
        "dim": dim,
        "normalized": True,
        "metric": "inner_product",
        "count": len(docs),
        **dense_meta,
        "max_seq_length": seq_len,
        "bm25": bm25.settings(),
        "corpus": str(corpus_path.resolve()),
        "encode_s": None if encode_s is None else round(encode_s, 2),
        "docs_per_s": None if encode_s is None else round(len(docs) / max(encode_s, 1e-9), 1),
        "encode_processes": processes if index is not None else None,
        "bm25_s": round(bm25_s, 2),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    with atomic_directory(out) as tmp:
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700 folders; an index is as readable as any output
        if index is not None:
            if quantize == "binary":
                faiss.write_index_binary(index, str(tmp / "index.faiss"))
            else:
                faiss.write_index(index, str(tmp / "index.faiss"))
            meta["index_bytes"] = (tmp / "index.faiss").stat().st_size
            if quantize is not None:
                import numpy as np

                np.save(tmp / VECTORS_FILE, np.ascontiguousarray(emb, dtype=np.float32))
                meta["vectors_bytes"] = (tmp / VECTORS_FILE).stat().st_size
        (tmp / "ids.json").write_text(json.dumps(ids, ensure_ascii=False), encoding="utf-8")
        with (tmp / DOCS_FILE).open("w", encoding="utf-8") as fh:
            for doc_id, title, text in docs:
                fh.write(json.dumps({"id": doc_id, "title": title, "text": text}, ensure_ascii=False) + "\n")
        bm25.save(tmp / BM25_DIR)
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return meta


@dataclass
class RetrieverIndex:
    """A loaded index: the faiss index, the document ids of its rows, and its metadata."""

    path: Path
    index: Any
    ids: list[str]
    meta: dict[str, Any]
    _model: Any = field(default=None, repr=False)
    vectors: Any = field(default=None, repr=False)  # (N, D) float32 memmap of a quantized index, for rescoring
    rescore: int | None = None  # candidates re-ranked exactly (None: the index's own setting)

    @property
    def quantize(self) -> str | None:
        """``int8``, ``binary`` or ``None`` (float vectors)."""
        return self.meta.get("quantize")

    def doc_vectors(self, rows: Any) -> Any:
        """``(n, D)`` float32 vectors of the documents in ``rows``: from ``vectors.npy`` when the index has it, else
        reconstructed by faiss (exact for flat and HNSW indexes)."""
        import numpy as np

        rows = np.asarray(rows, dtype=np.int64)
        if self.vectors is not None:
            order = np.argsort(rows)  # read the memory map in file order
            out = np.empty((len(rows), self.vectors.shape[1]), dtype=np.float32)
            out[order] = self.vectors[rows[order]]
            return out
        if self.quantize == "binary":
            raise IndusError(f"{self.path}: a binary index without {VECTORS_FILE} cannot give document vectors")
        return self.index.reconstruct_batch(rows)

    def score_docs(self, q: Any, doc_ids: list[str]) -> list[float]:
        """Inner product of one query embedding ``q`` (``(D,)``) with each of ``doc_ids``' vectors."""
        if not hasattr(self, "_row"):
            self._row = {d: i for i, d in enumerate(self.ids)}
        return (self.doc_vectors([self._row[d] for d in doc_ids]) @ q).tolist()

    @property
    def query_encoder(self) -> str:
        """The spec of the model that encodes queries: the index's ``query_model``, else the bi-encoder that built
        it."""
        return self.meta.get("query_model") or self.meta["model"]

    def model(self, spec: str | None = None) -> Any:
        """The query encoder (``spec``, else :attr:`query_encoder`), loaded once."""
        if self._model is None or spec is not None:
            self._model = load_bi_encoder(spec or self.query_encoder, max_seq_length=self.meta.get("max_seq_length"))
        return self._model

    def encode(self, queries: list[str], batch_size: int = 64, progress: bool = False) -> Any:
        """``(Q, D)`` normalised query embeddings."""
        emb = encode(self.model(), queries, batch_size=batch_size, progress=progress)
        if emb.shape[1] != self.index.d:
            raise IndusError(
                f"{self.path}: the model embeds in {emb.shape[1]} dimensions, the index holds {self.index.d}"
            )
        return emb

    def search_embeddings(self, emb: Any, k: int = 10, ef_search: int | None = None) -> list[list[tuple[str, float]]]:
        """Top-``k`` ``(id, score)`` per query embedding, best first."""
        if k < 1:
            raise IndusError(f"-k must be at least 1, got {k}")
        if ef_search is not None and hasattr(self.index, "hnsw"):
            self.index.hnsw.efSearch = max(ef_search, k)
        from indus.ann import search_index  # lazy: pulls faiss

        rescore = (self.meta.get("rescore") or 0) if self.rescore is None else self.rescore
        if rescore and self.vectors is None:
            raise IndusError(f"{self.path}: rescoring needs the float vectors ({VECTORS_FILE}), which this index lacks")
        hits = search_index(self.index, emb, k, quantize=self.quantize, rescore=rescore, vectors=self.doc_vectors)
        return [[(self.ids[r], s) for r, s in row] for row in hits]

    def search(
        self, queries: list[str], k: int = 10, batch_size: int = 64, ef_search: int | None = None
    ) -> list[list[tuple[str, float]]]:
        """Embed ``queries`` and return their top-``k`` ``(id, score)`` lists."""
        return self.search_embeddings(self.encode(queries, batch_size), k, ef_search)


def load_index(path: str | Path, model: str | None = None) -> RetrieverIndex:
    """Load an index directory written by :func:`build_index`; checks that its parts agree.

    ``model`` overrides the query encoder recorded in ``meta.json`` (e.g. after moving the model folder).
    """

    path = Path(path)
    if not path.is_dir():
        raise IndusError(f"{path}: index directory not found")
    if not (path / "index.faiss").exists() and (path / BM25_DIR).is_dir():
        raise IndusError(
            f"{path}: a BM25-only index (built with --model bm25) has no dense part; "
            "search it by bm25, or rebuild it with a dense --model"
        )
    missing = [name for name in INDEX_FILES if not (path / name).is_file()]
    if missing:
        raise IndusError(
            f"{path}: not an index directory (missing {', '.join(missing)}; build one with `indus retriever index`)"
        )
    try:
        meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
        ids = json.loads((path / "ids.json").read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise IndusError(f"{path}: unreadable meta.json or ids.json ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != INDEX_FORMAT:
        raise IndusError(f"{path / 'meta.json'}: not an {INDEX_FORMAT} (format field missing or different)")
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise IndusError(f"{path / 'ids.json'}: expected a JSON list of document id strings")
    from indus.ann import read_binary_index, read_faiss_index  # lazy: pulls faiss

    vectors = None
    if meta.get("quantize") == "binary":
        index = read_binary_index(path / "index.faiss")
    else:
        index = read_faiss_index(path / "index.faiss", mmap=True)  # vectors stay in the (shared) page cache
    if meta.get("quantize"):
        from indus.ann import open_vectors  # lazy: pulls faiss

        if (path / VECTORS_FILE).is_file():
            vectors = open_vectors(path / VECTORS_FILE)  # memory-mapped: rescoring reads only candidates' rows
            if vectors.shape != (len(ids), meta.get("dim")):
                raise IndusError(
                    f"{path / VECTORS_FILE}: shape {vectors.shape}, expected ({len(ids)}, "
                    f"{meta.get('dim')}); rebuild the index"
                )
    if not (index.ntotal == len(ids) == meta.get("count")):
        raise IndusError(
            f"{path}: the index holds {index.ntotal} vectors, ids.json {len(ids)} ids and meta.json "
            f"count {meta.get('count')}; rebuild the index"
        )
    if index.d != meta.get("dim"):
        raise IndusError(f"{path}: the index has dimension {index.d}, meta.json says {meta.get('dim')}")
    if model is not None:  # the override encodes the queries, also of an index built with a --query-model
        meta = {**meta, "model": model_record(model), "query_model": None}
    return RetrieverIndex(path, index, ids, meta, vectors=vectors)


def write_run(
    results: list[tuple[str, str, list[tuple[str, float]]]], out: str | Path, fmt: str | None = None, tag: str = "indus"
) -> Path:
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
            lines.append(
                json.dumps(
                    {"query_id": qid, "query": query, "hits": [{"id": d, "score": round(s, 6)} for d, s in hits]},
                    ensure_ascii=False,
                )
            )
    with atomic_path(out) as tmp:
        tmp.write_text("\n".join(lines) + ("\n" if lines else ""), encoding="utf-8")
    return out
