"""Search an index by BM25, dense or hybrid retrieval: the one search door for the CLI and the studio app.

A :class:`Searcher` opens an index directory (:mod:`indus.retriever.index`) once: the documents' texts, the bm25s
index and, for a dense index, the faiss index and the query encoder, which loads at :meth:`Searcher.open` so that
every search after it costs milliseconds. Modes:

- ``bm25``: Lucene BM25 with the settings the index was built with (the scorer of ``indus eval ir --model bm25``);
  only documents sharing a term with the query are returned.
- ``dense``: the query embedded by the index's model (or ``model=``), exact or HNSW inner product in faiss.
- ``hybrid``: reciprocal-rank fusion (Cormack et al. 2009; k = 60 by default) of the BM25 and dense rankings, each
  taken to depth ``N = max(fusion_depth, k)`` with ``fusion_depth`` = 100 by default: a document outside both top N
  scores 0. :func:`indus.evaluation.ir.reciprocal_rank_fusion` fuses, exactly as ``indus eval ir --model A+B`` does.

The default mode is ``hybrid`` when the index has both parts, else ``bm25``. Bad input (an empty query, one longer
than ``max_query_chars``, an unknown mode, ``k`` outside ``1..max_k``) raises :class:`~indus.errors.IndusError`
with a one-line message, which a web app can answer as HTTP 400.

Example
-------
>>> searcher = Searcher.open("runs/index")  # doctest: +SKIP
>>> searcher.modes, searcher.default_mode  # doctest: +SKIP
(('bm25', 'dense', 'hybrid'), 'hybrid')
>>> [h.rank for h in searcher.search("sea ice decline", k=2)]  # doctest: +SKIP
[1, 2]
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from indus.errors import IndusError
from indus.evaluation.ir import FUSIONS, RRF_K, Bm25Retriever, convex_fusion, reciprocal_rank_fusion, union_scores
from indus.evaluation.ir_metrics import trec_order
from indus.retriever.index import BM25_DIR, DOCS_FILE, INDEX_FORMAT, RetrieverIndex, load_index

MODES = ("bm25", "dense", "hybrid")
MAX_QUERY_CHARS = 1000
MAX_K = 1000
FUSION_DEPTH = 100
TOKEN_PATTERN = re.compile(r"(?u)\b\w\w+\b")  # bm25s's own token pattern: highlighted terms are BM25's terms


@dataclass(frozen=True)
class Doc:
    """A document of the index: its id, title (may be empty) and text."""

    id: str
    title: str
    text: str

    def to_json(self) -> dict[str, Any]:
        """The fields as a JSON-able dict."""
        return asdict(self)


@dataclass(frozen=True)
class Hit(Doc):
    """A search result: the document, its score in the mode searched (BM25, cosine or RRF) and its rank from 1."""

    score: float
    rank: int


class Searcher:
    """BM25, dense and hybrid search over an index directory; build one with :meth:`open`.

    Attributes
    ----------
    path
        The index directory.
    meta
        Its ``meta.json``.
    fusion_k, fusion_depth
        The RRF constant and the depth of each ranking fused in ``hybrid`` mode (``max(fusion_depth, k)``).
    max_query_chars, max_k
        Limits that :meth:`validate` enforces.
    """

    def __init__(
        self,
        path: Path,
        meta: dict[str, Any],
        docs: list[Doc],
        bm25: Bm25Retriever | None,
        dense: RetrieverIndex | None,
        *,
        fusion_k: int = RRF_K,
        fusion_depth: int = FUSION_DEPTH,
        max_query_chars: int = MAX_QUERY_CHARS,
        max_k: int = MAX_K,
        ef_search: int | None = None,
        fusion: str = "rrf",
        fusion_weight: float | None = None,
    ) -> None:

        if fusion not in FUSIONS:
            raise IndusError(f"fusion must be one of {', '.join(FUSIONS)}, got {fusion!r}")
        if fusion == "convex" and (fusion_weight is None or not 0.0 <= fusion_weight <= 1.0):
            raise IndusError(
                "convex fusion needs a BM25 weight in [0, 1] (--fusion-weight W; choose it with "
                "`indus eval ir --fusion convex` on a collection's dev/train qrels)"
            )
        self.fusion, self.fusion_weight = fusion, fusion_weight
        self.path, self.meta, self._docs, self._bm25, self._dense = path, meta, docs, bm25, dense
        self.fusion_k, self.fusion_depth, self.ef_search = fusion_k, fusion_depth, ef_search
        self.max_query_chars, self.max_k = max_query_chars, max_k
        self._row = {doc.id: i for i, doc in enumerate(docs)}
        # one search at a time: the encoder and an HNSW index's efSearch are not meant for concurrent callers,
        # and on a few cores torch already uses them all for one query
        self._lock = threading.Lock()
        self._stems = _term_stemmer(meta.get("bm25") or {})

    # ------------------------------------------------------------------------------------------- opening

    @classmethod
    def open(
        cls,
        index_dir: str | Path,
        model: str | None = None,
        *,
        fusion_k: int = RRF_K,
        fusion_depth: int = FUSION_DEPTH,
        max_query_chars: int = MAX_QUERY_CHARS,
        max_k: int = MAX_K,
        ef_search: int | None = None,
        load_model: bool = True,
        fusion: str = "rrf",
        fusion_weight: float | None = None,
        rescore: int | None = None,
    ) -> Searcher:
        """Open an index directory written by :func:`indus.retriever.index.build_index`.

        Parameters
        ----------
        index_dir
            The index directory.
        model
            Query encoder overriding the one recorded in the index (it must embed in the index's space).
        fusion_k, fusion_depth
            Hybrid mode: the RRF constant and each fused ranking's depth.
        max_query_chars, max_k
            Limits for :meth:`validate`.
        ef_search
            HNSW search breadth (HNSW indexes only; default: the one stored in the index).
        load_model
            Load the query encoder now (so the first search is as fast as the others) rather than on first use.
        fusion, fusion_weight
            Hybrid mode: ``rrf`` (reciprocal ranks) or ``convex`` (``w * norm(bm25) + (1 - w) * norm(dense)`` over
            the union of both top lists, :func:`indus.evaluation.ir.convex_fusion`, with ``w = fusion_weight``).
        rescore
            Quantized index: candidates re-ranked by their float vectors (``None``: the index's own setting).
        """
        path = Path(index_dir)
        if not path.is_dir():
            raise IndusError(f"{path}: index directory not found")
        try:
            meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise IndusError(
                f"{path}: not an index directory (no meta.json; build one with `indus retriever index`)"
            ) from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise IndusError(f"{path / 'meta.json'}: unreadable ({exc})") from None
        if not isinstance(meta, dict) or meta.get("format") != INDEX_FORMAT:
            raise IndusError(f"{path / 'meta.json'}: not an {INDEX_FORMAT} (format field missing or different)")
        if fusion_k < 0 or fusion_depth < 1 or max_query_chars < 1 or max_k < 1:
            raise IndusError("fusion_k must be >= 0 and fusion_depth, max_query_chars, max_k >= 1")
        dense = None
        if meta.get("dense", True):  # version-1 indexes were all dense
            dense = load_index(path, model=model)
            if rescore is not None:
                if rescore < 0:
                    raise IndusError(f"rescore must be >= 0, got {rescore}")
                dense.rescore = rescore
            if load_model:
                dense.model()
        elif model is not None:
            raise IndusError(f"{path}: a BM25-only index has no dense part to search with --model {model}")
        ids = dense.ids if dense is not None else _read_ids(path)
        docs = _read_docs(path, ids)
        bm25 = Bm25Retriever.load(path / BM25_DIR, ids) if (path / BM25_DIR).is_dir() else None
        return cls(
            path,
            meta,
            docs,
            bm25,
            dense,
            fusion_k=fusion_k,
            fusion_depth=fusion_depth,
            max_query_chars=max_query_chars,
            max_k=max_k,
            ef_search=ef_search,
            fusion=fusion,
            fusion_weight=fusion_weight,
        )

    # ----------------------------------------------------------------------------------------- documents

    @property
    def modes(self) -> tuple[str, ...]:
        """The modes this index supports, from ``bm25``, ``dense``, ``hybrid``."""
        return tuple(
            m
            for m, ok in zip(
                MODES,
                (self._bm25 is not None, self._dense is not None, self._bm25 is not None and self._dense is not None),
            )
            if ok
        )

    @property
    def default_mode(self) -> str:
        """``hybrid`` when the index has both parts, else the one it has."""
        return self.modes[-1] if len(self.modes) < 3 else "hybrid"

    @property
    def model(self) -> str | None:
        """The query encoder's spec (``None`` for a BM25-only index)."""
        return self._dense.query_encoder if self._dense is not None else None

    def __len__(self) -> int:
        return len(self._docs)

    def __iter__(self) -> Iterator[Doc]:
        """The documents in index order."""
        return iter(self._docs)

    def doc(self, doc_id: str) -> Doc | None:
        """The document with this id, or ``None``."""
        row = self._row.get(doc_id)
        return None if row is None else self._docs[row]

    # ------------------------------------------------------------------------------------------- search

    def validate(self, query: str, k: int = 10, mode: str | None = None) -> str:
        """Check a search request and return its mode; raise :class:`IndusError` (one line) when it is bad."""
        if not isinstance(query, str) or not query.strip():
            raise IndusError("the query is empty")
        if len(query) > self.max_query_chars:
            raise IndusError(f"the query has {len(query)} characters; the limit is {self.max_query_chars}")
        mode = self.default_mode if mode is None or mode == "" else mode
        if mode not in self.modes:
            raise IndusError(f"unknown mode {mode!r}; this index offers {', '.join(self.modes)}")
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= self.max_k:
            raise IndusError(f"k must be an integer from 1 to {self.max_k}, got {k!r}")
        return mode

    def search(self, query: str, k: int = 10, mode: str | None = None) -> list[Hit]:
        """The top ``k`` documents for ``query`` in ``mode`` (default :attr:`default_mode`), best first."""
        return self.search_many([query], k, mode)[0]

    def search_many(
        self, queries: list[str], k: int = 10, mode: str | None = None, batch_size: int = 64
    ) -> list[list[Hit]]:
        """:meth:`search` for many queries at once (queries are embedded in batches of ``batch_size``)."""
        mode = self.default_mode if mode is None or mode == "" else mode
        for i, query in enumerate(queries):
            try:
                mode = self.validate(query, k, mode)
            except IndusError as exc:
                raise IndusError(f"query {i + 1}: {exc}" if len(queries) > 1 else str(exc)) from None
        with self._lock:
            ranked = self._ranked(list(queries), k, mode, batch_size)
        return [
            [self._hit(doc_id, score, rank) for rank, (doc_id, score) in enumerate(hits, start=1)] for hits in ranked
        ]

    def _ranked(self, queries: list[str], k: int, mode: str, batch_size: int) -> list[list[tuple[str, float]]]:
        if not queries:
            return []
        if mode == "hybrid" and self.fusion == "convex":
            depth = max(self.fusion_depth, k)
            lexical = self._bm25.search(queries, depth)
            emb = self._dense.encode(queries, batch_size=batch_size)  # (Q, D)
            dense = self._dense.search_embeddings(emb, depth, ef_search=self.ef_search)
            return [
                convex_fusion(
                    *union_scores(
                        lex,
                        den,
                        lambda ids, t=text: self._bm25.score_docs(t, ids),
                        lambda ids, q=q: self._dense.score_docs(q, ids),
                    ),
                    self.fusion_weight,
                    depth=k,
                )
                for text, q, lex, den in zip(queries, emb, lexical, dense, strict=True)
            ]
        if mode == "hybrid":
            depth = max(self.fusion_depth, k)
            lexical, dense = self._bm25.search(queries, depth), self._dense_search(queries, depth, batch_size)
            return [reciprocal_rank_fusion([a, b], self.fusion_k, depth=k) for a, b in zip(lexical, dense, strict=True)]
        hits = self._bm25.search(queries, k) if mode == "bm25" else self._dense_search(queries, k, batch_size)
        # ties in trec_eval's order (by id, descending), as `indus eval ir` scores them and RRF ranks them
        return [trec_order(dict(h)) for h in hits]

    def _dense_search(self, queries: list[str], k: int, batch_size: int) -> list[list[tuple[str, float]]]:
        emb = self._dense.encode(queries, batch_size=batch_size)  # (Q, D)
        return self._dense.search_embeddings(emb, k, ef_search=self.ef_search)

    def _hit(self, doc_id: str, score: float, rank: int) -> Hit:
        doc = self._docs[self._row[doc_id]]
        return Hit(doc.id, doc.title, doc.text, score, rank)

    # ------------------------------------------------------------------------------------------ snippets

    def snippet(self, text: str, query: str, width: int = 240) -> list[tuple[str, bool]]:
        """A window of about ``width`` characters of ``text`` around the query's terms, as ``(piece, is_term)``.

        A word counts as a query term when its stem (the index's BM25 stemmer) equals the stem of a query word
        that is not a stop word, so "hibernating" lights up "hibernates". The window is the one holding the most
        terms; ``…`` marks cut ends. Callers escape or style the pieces (HTML ``<mark>``, rich styles).
        """
        terms = {self._stems(w) for w in TOKEN_PATTERN.findall(query.lower())} - {None}
        spans = [m.span() for m in TOKEN_PATTERN.finditer(text) if self._stems(m.group().lower()) in terms]
        start = 0
        if len(text) > width and spans:
            # the window [s, s + width) starting at a term that covers the most terms
            best = max(range(len(spans)), key=lambda i: sum(1 for a, b in spans[i:] if b <= spans[i][0] + width))
            start = max(0, min(spans[best][0] - width // 6, len(text) - width))
            while start > 0 and not text[start - 1].isspace():  # do not cut a word
                start -= 1
        end = min(len(text), start + width)
        while end < len(text) and not text[end].isspace() and end - start < width + 30:
            end += 1
        pieces: list[tuple[str, bool]] = [("…", False)] if start > 0 else []
        pos = start
        for a, b in spans:
            if a < start or b > end:
                continue
            if a > pos:
                pieces.append((text[pos:a], False))
            pieces.append((text[a:b], True))
            pos = b
        if pos < end:
            pieces.append((text[pos:end], False))
        if end < len(text):
            pieces.append(("…", False))
        return pieces


def _term_stemmer(settings: dict[str, Any]) -> Any:
    """word -> stem, or ``None`` for a stop word: the normalisation of the index's BM25 tokeniser."""
    stop: frozenset[str] = frozenset()
    if settings.get("stopwords") == "en":
        from bm25s.stopwords import STOPWORDS_EN

        stop = frozenset(STOPWORDS_EN)
    stem = None
    if settings.get("stemmer"):
        import Stemmer

        stem = Stemmer.Stemmer(settings["stemmer"]).stemWord

    def normalise(word: str) -> str | None:
        if word in stop:
            return None
        return stem(word) if stem is not None else word

    return normalise


def _read_ids(path: Path) -> list[str]:
    try:
        ids = json.loads((path / "ids.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise IndusError(f"{path / 'ids.json'}: unreadable ({type(exc).__name__}); rebuild the index") from None
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise IndusError(f"{path / 'ids.json'}: expected a JSON list of document id strings")
    return ids


def _read_docs(path: Path, ids: list[str]) -> list[Doc]:
    """The stored documents, checked against the ids; an index built before texts were stored shows empty texts."""
    file = path / DOCS_FILE
    if not file.is_file():
        return [Doc(doc_id, "", "") for doc_id in ids]
    docs = []
    with file.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            try:
                row = json.loads(line)
                docs.append(Doc(str(row["id"]), row["title"], row["text"]))
            except (json.JSONDecodeError, KeyError, TypeError):
                raise IndusError(f'{file}:{lineno}: expected {{"id", "title", "text"}}; rebuild the index') from None
    if [d.id for d in docs] != ids:
        raise IndusError(f"{file}: its {len(docs)} documents do not match ids.json ({len(ids)} ids); rebuild the index")
    return docs
