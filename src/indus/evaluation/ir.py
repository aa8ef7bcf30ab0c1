"""Retrieval on BEIR folders: BM25 or a dense bi-encoder; nDCG@10, Recall@10/100, MRR@10 and speed.

The protocol of BEIR (Thakur et al. 2021, arXiv 2104.08663):

- **Dense** (any model other than ``bm25``; a spec for :func:`indus.models.load_sentence_transformer` or a
  ``SentenceTransformer`` object): documents are encoded as ``title + " " + text`` (BEIR's convention), queries as
  their text, both L2-normalised, and searched exactly by inner product (cosine) with a faiss ``IndexFlatIP``.
- **BM25** (``bm25``, with bm25s): Lucene's BM25 (k1 = 1.2, b = 0.75, Elasticsearch's defaults; BEIR used
  Elasticsearch) over ``title + " " + text``; lower-cased words of two or more characters, Lucene's 33-word
  English stop list (the one of Elasticsearch's ``english`` analyzer) and the Snowball English stemmer from
  PyStemmer (``stemmer=None`` turns stemming off). Only documents with a positive score enter the run.
- **Fusion** (``A+B``, e.g. ``bm25+minilm``): each system retrieves its own top ``k + 1`` and the rankings are
  fused by reciprocal-rank fusion (Cormack et al. 2009), ``score(d) = sum_s 1 / (fusion_k + rank_s(d))`` with
  ``fusion_k`` = 60 (:func:`reciprocal_rank_fusion`); ``indus retriever search --mode hybrid`` and the studio's
  hybrid search fuse the same way. ``fusion="convex"`` (``--fusion convex``, ``bm25`` plus one dense model) fuses
  scores instead: ``w * norm(bm25) + (1 - w) * norm(dense)``, each min-max normalised per query over the union of
  both systems' top ``k + 1`` (every document of the union scored by both systems, :func:`convex_fusion`);
  ``fusion_weight`` fixes ``w``, else it is chosen on the collection's ``dev`` (or ``train``) qrels, never on the
  split scored: the ``w`` of ``0.0, 0.1, ..., 1.0`` with the best nDCG@10 there (the smallest on a tie).
- The top ``k`` (100) documents per query form the run; a document whose id equals the query id is dropped
  (BEIR's ``ignore_identical_ids``); metrics come from :func:`indus.evaluation.ir_metrics.score_run`, averaged
  over the queries judged in the split.

Speed, measured in the same run: ``docs_per_s`` (corpus encoding, or BM25 tokenising + indexing), ``queries_per_s``
(all evaluation queries encoded in batches and searched), and ``latency_ms``: the median time of one query
encoded alone (batch size 1) and searched, over ``latency_queries`` queries after one warm-up query; this is the
per-query latency a distilled retriever is compared on.

**Asymmetric retrieval** (``doc_model``): the corpus is encoded by another model (a big one, once, offline) and
only the queries by ``model`` (a small one, online), as a distilled query encoder that shares its teacher's
embedding space is deployed: the latency is then the small model's alone, the index the big one's.

Example
-------
>>> result = IREvaluator(split="test").evaluate("bm25", "scifact")  # doctest: +SKIP
>>> sorted(k for k in result if k.startswith("ndcg@"))  # doctest: +SKIP
['ndcg@10']
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from indus.data.beir import BeirData, load_beir, qrels_splits
from indus.data.registry import resolve_dataset
from indus.embedding import encode
from indus.errors import IndusError
from indus.evaluation.ir_metrics import score_run, trec_order, write_trec_run
from indus.evaluation.result import EvalResult
from indus.models import Bm25, Fused, documents_model, load_sentence_transformer, parse_model, resolve_model
from indus.timing import latencies_ms

__all__ = [
    "IREvaluator",
    "Bm25Retriever",
    "DenseRetriever",
    "FusedRetriever",
    "ConvexFusedRetriever",
    "reciprocal_rank_fusion",
    "convex_fusion",
    "split_systems",
    "score_run",
    "write_trec_run",
]

#: The RRF constant of Cormack, Clarke and Buettcher (SIGIR 2009): a document's fused score is
#: ``sum over systems of 1 / (RRF_K + rank)``, ranks from 1.
RRF_K = 60
FUSIONS = ("rrf", "convex")
#: the weights of BM25 tried when ``convex`` fusion chooses its weight on dev/train qrels
FUSION_GRID = tuple(round(0.1 * i, 1) for i in range(11))
BM25_SETTINGS_FILE = "indus-bm25.json"


def reciprocal_rank_fusion(
    rankings: list[list[tuple[str, float]]], k: int = RRF_K, depth: int | None = None
) -> list[tuple[str, float]]:
    """Fuse ranked lists by reciprocal-rank fusion (Cormack et al. 2009).

    Parameters
    ----------
    rankings
        One list of ``(doc_id, score)`` per system; a document's rank in it is its place in trec_eval's order.
    k
        The RRF constant (60 in the paper); larger values flatten the weight of the top ranks.
    depth
        Keep the best ``depth`` fused documents (all when ``None``).

    Returns
    -------
    list of (doc_id, fused score)
        Best first. Both each system's ranks and the fused order follow trec_eval's ranking (score descending,
        ties by document id descending; :func:`indus.evaluation.ir_metrics.trec_order`), the order the metrics
        score a run in: so fusing a system with itself gives back the ranking its own metrics saw.

    Examples
    --------
    >>> reciprocal_rank_fusion([[("a", 9.0), ("b", 5.0)], [("b", 0.9), ("c", 0.8)]], k=60)
    [('b', 0.03252247488101534), ('a', 0.01639344262295082), ('c', 0.016129032258064516)]
    """
    if k < 0:
        raise IndusError(f"fusion k must be >= 0, got {k}")
    fused: dict[str, float] = {}
    for ranking in rankings:
        for rank, (doc_id, _) in enumerate(trec_order(dict(ranking)), start=1):
            fused[doc_id] = fused.get(doc_id, 0.0) + 1.0 / (k + rank)
    ranked = trec_order(fused)
    return ranked if depth is None else ranked[:depth]


def _minmax(values: np.ndarray) -> np.ndarray:
    """``(v - min) / (max - min)``; all zeros when the values are all equal."""
    lo, hi = float(values.min()), float(values.max())
    return (values - lo) / (hi - lo) if hi > lo else np.zeros_like(values)


def convex_fusion(
    lexical: dict[str, float], dense: dict[str, float], weight: float, depth: int | None = None
) -> list[tuple[str, float]]:
    """Fuse two systems' scores of the same documents: ``weight * norm(lexical) + (1 - weight) * norm(dense)``.

    Parameters
    ----------
    lexical, dense
        Each system's score of every candidate (both over the same documents: the union of their top lists).
    weight
        The lexical (BM25) weight, in ``[0, 1]``: 1 ranks as ``lexical`` alone, 0 as ``dense`` alone.
    depth
        Keep the best ``depth`` documents (all when ``None``).

    Returns
    -------
    list of (doc_id, fused score)
        Best first, in trec_eval's order (ties by id, descending). Min-max normalisation is per call (per query).

    Examples
    --------
    >>> convex_fusion({"a": 10.0, "b": 0.0, "c": 5.0}, {"a": 0.2, "b": 0.9, "c": 0.8}, 0.5)
    [('c', 0.6785714285714286), ('b', 0.5), ('a', 0.5)]
    """
    if not 0.0 <= weight <= 1.0:
        raise IndusError(f"fusion weight must be in [0, 1], got {weight}")
    if lexical.keys() != dense.keys():
        raise IndusError("convex fusion needs both systems' scores of the same documents")
    if not lexical:
        return []
    ids = list(lexical)
    lex = _minmax(np.array([lexical[d] for d in ids], dtype=np.float64))
    den = _minmax(np.array([dense[d] for d in ids], dtype=np.float64))
    fused = trec_order(dict(zip(ids, (weight * lex + (1.0 - weight) * den).tolist(), strict=True)))
    return fused if depth is None else fused[:depth]


def union_scores(
    lexical_hits: list[tuple[str, float]], dense_hits: list[tuple[str, float]], lexical_score: Any, dense_score: Any
) -> tuple[dict[str, float], dict[str, float]]:
    """Both systems' scores over the union of their hits: a system's own hits keep the scores it returned, the
    others are scored by ``lexical_score(ids)`` / ``dense_score(ids)`` (lists of floats)."""
    lex, den = dict(lexical_hits), dict(dense_hits)
    union = list(dict.fromkeys([*lex, *den]))
    for scores, score_fn in ((lex, lexical_score), (den, dense_score)):
        missing = [d for d in union if d not in scores]
        if missing:
            scores.update(zip(missing, (float(v) for v in score_fn(missing)), strict=True))
    return {d: lex[d] for d in union}, {d: den[d] for d in union}


def split_systems(model: Any) -> list[Any]:
    """The systems of a fused spec ``A+B[+C]`` (``bm25+minilm``); a single system as a one-item list.

    A string that names an existing path is never split (a model folder may have ``+`` in its name).
    """
    parsed = parse_model(model) if isinstance(model, str) and "+" in model else None
    return [part.spec for part in parsed.parts] if isinstance(parsed, Fused) else [model]


class Bm25Retriever:
    """BM25 over a corpus with bm25s (settings in the module docstring)."""

    def __init__(
        self,
        *,
        k1: float = 1.2,
        b: float = 0.75,
        stemmer: str | None = "english",
        stopwords: str | None = "en",
        progress: bool = False,
    ) -> None:
        self.k1, self.b, self.stemmer_name, self.stopwords, self.progress = k1, b, stemmer, stopwords, progress
        self._stemmer = None
        if stemmer is not None:
            try:
                import Stemmer
            except ImportError:
                raise IndusError(
                    "BM25 stemming needs PyStemmer (pip install PyStemmer), or pass stemmer=None"
                ) from None
            try:
                self._stemmer = Stemmer.Stemmer(stemmer)
            except KeyError:
                raise IndusError(f"unknown stemmer language {stemmer!r}") from None

    def _tokenize(self, texts: list[str], *, ids: bool, progress: bool = False):
        import bm25s

        return bm25s.tokenize(
            texts, stopwords=self.stopwords, stemmer=self._stemmer, return_ids=ids, show_progress=progress
        )

    def index(self, doc_ids: list[str], texts: list[str]) -> None:
        """Tokenise and index the documents."""
        import bm25s

        self.doc_ids = list(doc_ids)
        self.retriever = bm25s.BM25(k1=self.k1, b=self.b, method="lucene")
        self.retriever.index(self._tokenize(texts, ids=True, progress=self.progress), show_progress=self.progress)

    def settings(self) -> dict[str, Any]:
        """What rebuilds the same tokeniser and scorer (saved beside the bm25s index)."""
        return {
            "k1": self.k1,
            "b": self.b,
            "method": "lucene",
            "stemmer": self.stemmer_name,
            "stopwords": self.stopwords,
        }

    def save(self, folder: str | Path) -> Path:
        """Write the bm25s index (its own ``save``) and the tokeniser settings into ``folder``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.retriever.save(str(folder), show_progress=False)
        (folder / BM25_SETTINGS_FILE).write_text(json.dumps(self.settings(), indent=2) + "\n", encoding="utf-8")
        return folder

    @classmethod
    def load(cls, folder: str | Path, doc_ids: list[str]) -> Bm25Retriever:
        """A retriever from a folder written by :meth:`save`; ``doc_ids[i]`` names the index's document ``i``."""
        import bm25s

        folder = Path(folder)
        try:
            settings = json.loads((folder / BM25_SETTINGS_FILE).read_text(encoding="utf-8"))
            self = cls(k1=settings["k1"], b=settings["b"], stemmer=settings["stemmer"], stopwords=settings["stopwords"])
            self.retriever = bm25s.BM25.load(str(folder), show_progress=False, verbosity=0)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise IndusError(
                f"{folder}: unreadable BM25 index ({type(exc).__name__}: {exc}); rebuild the index"
            ) from None
        if self.retriever.scores["num_docs"] != len(doc_ids):
            raise IndusError(
                f"{folder}: the BM25 index holds {self.retriever.scores['num_docs']} documents, "
                f"the index directory {len(doc_ids)}; rebuild the index"
            )
        self.doc_ids = list(doc_ids)
        return self

    def score_docs(self, query: str, doc_ids: list[str]) -> list[float]:
        """The BM25 score of each of ``doc_ids`` for ``query`` (0 for a document sharing no term with it)."""
        if not hasattr(self, "_row"):
            self._row = {d: i for i, d in enumerate(self.doc_ids)}
        tokens = self._tokenize([query], ids=False)[0]
        scores = self.retriever.get_scores(tokens) if tokens else np.zeros(len(self.doc_ids))  # (N,)
        return [float(scores[self._row[d]]) for d in doc_ids]

    def search(self, queries: list[str], k: int, batch_size: int | None = None) -> list[list[tuple[str, float]]]:
        """The top ``k`` ``(doc_id, score)`` of each query, positive scores only (``batch_size`` is unused)."""
        tokens = self._tokenize(queries, ids=False)
        k = min(k, len(self.doc_ids))
        docs, scores = self.retriever.retrieve(tokens, k=k, show_progress=False, n_threads=1)  # (Q, k), (Q, k)
        return [
            [(self.doc_ids[d], float(s)) for d, s in zip(row_d, row_s, strict=True) if s > 0]
            for row_d, row_s in zip(docs, scores, strict=True)
        ]


class DenseRetriever:
    """Exact inner-product search over L2-normalised sentence embeddings (faiss ``IndexFlatIP``), or over their
    ``int8`` / ``binary`` codes (:func:`indus.ann.build_quantized_index`), optionally re-ranking the
    ``rescore`` best candidates by the float vectors."""

    def __init__(
        self,
        model: Any,
        *,
        batch_size: int = 64,
        progress: bool = False,
        doc_model: Any = None,
        quantize: str | None = None,
        rescore: int = 0,
    ) -> None:
        self.model, self.batch_size, self.progress = model, batch_size, progress
        self.doc_model = doc_model  # encodes the documents when set (asymmetric retrieval); else ``model`` does
        self.quantize, self.rescore = quantize, rescore

    def encode(
        self, texts: list[str], batch_size: int | None = None, progress: bool | None = None, *, model: Any = None
    ) -> np.ndarray:
        """Normalised float32 embeddings, shape ``(len(texts), dim)``, by ``model`` (default: the query model)."""
        return encode(
            model if model is not None else self.model,
            texts,
            batch_size=batch_size or self.batch_size,
            progress=self.progress if progress is None else progress,
        )  # (N, D)

    def index(self, doc_ids: list[str], texts: list[str], *, sharded: bool = False) -> None:
        """Encode the documents (with ``doc_model`` when set) and add them to a flat inner-product index.

        ``sharded``: every process of the group calls this and encodes its shard
        (:func:`indus.distributed.encode_gathered`); the main process alone gets the index.
        """
        import faiss

        self.doc_ids = list(doc_ids)
        if sharded:
            from indus.distributed import encode_gathered  # lazy: pulls torch

            emb = encode_gathered(
                self.doc_model if self.doc_model is not None else self.model, texts, batch_size=self.batch_size
            )  # (N, D) on the main process, None elsewhere
            if emb is None:
                self.faiss_index = None
                return
        else:
            emb = self.encode(texts, model=self.doc_model)  # (N, D)
        if self.quantize is not None:
            from indus.ann import build_quantized_index  # lazy: pulls faiss

            self.faiss_index = build_quantized_index(self.quantize, emb)
            self.vectors = emb  # the float vectors, for rescoring and for scoring given documents
            return
        self.faiss_index = faiss.IndexFlatIP(emb.shape[1])
        self.faiss_index.add(emb)

    def search(self, queries: list[str], k: int, batch_size: int | None = None) -> list[list[tuple[str, float]]]:
        """The top ``k`` ``(doc_id, score)`` of each query."""
        return self.search_embedded(self.embed_queries(queries, batch_size), k)

    def embed_queries(self, queries: list[str], batch_size: int | None = None) -> np.ndarray:
        """``(Q, D)`` query embeddings, checked against the index's width."""
        q = self.encode(queries, batch_size=batch_size, progress=False)  # (Q, D)
        if q.shape[1] != self.faiss_index.d:
            raise IndusError(
                f"query model embeds in {q.shape[1]} dimensions, the document index in "
                f"{self.faiss_index.d}: an asymmetric retriever needs one space"
            )
        return q

    def search_embedded(self, q: np.ndarray, k: int) -> list[list[tuple[str, float]]]:
        """The top ``k`` ``(doc_id, score)`` of each embedded query."""
        from indus.ann import search_index  # lazy: pulls faiss

        hits = search_index(
            self.faiss_index,
            q,
            k,
            quantize=self.quantize,
            rescore=self.rescore,
            vectors=lambda rows: self.vectors[rows],
        )
        return [[(self.doc_ids[i], s) for i, s in row] for row in hits]

    def score_docs(self, q: np.ndarray, doc_ids: list[str]) -> list[float]:
        """Inner product of one query embedding ``q`` (``(D,)``) with each of ``doc_ids``' vectors."""
        if not hasattr(self, "_row"):
            self._row = {d: i for i, d in enumerate(self.doc_ids)}
        rows = np.array([self._row[d] for d in doc_ids], dtype=np.int64)
        vectors = self.vectors[rows] if self.quantize else self.faiss_index.reconstruct_batch(rows)  # (n, D)
        return (vectors @ q).tolist()


class FusedRetriever:
    """Reciprocal-rank fusion of several retrievers: each returns its own top ``k``, fused by RRF.

    Parameters
    ----------
    retrievers
        The systems (:class:`Bm25Retriever`, :class:`DenseRetriever`, ...), each with ``index`` and ``search``.
    fusion_k
        The RRF constant (see :func:`reciprocal_rank_fusion`).
    """

    def __init__(self, retrievers: list[Any], *, fusion_k: int = RRF_K) -> None:
        self.retrievers, self.fusion_k = list(retrievers), fusion_k

    def index(self, doc_ids: list[str], texts: list[str]) -> None:
        """Index the documents in every system."""
        for retriever in self.retrievers:
            retriever.index(doc_ids, texts)

    def search(self, queries: list[str], k: int, batch_size: int | None = None) -> list[list[tuple[str, float]]]:
        """The fused top ``k`` ``(doc_id, rrf score)`` of each query, over each system's own top ``k``."""
        per_system = [r.search(queries, k, batch_size=batch_size) for r in self.retrievers]  # (S, Q, <=k)
        return [
            reciprocal_rank_fusion([system[q] for system in per_system], self.fusion_k, depth=k)
            for q in range(len(queries))
        ]


class ConvexFusedRetriever:
    """Convex fusion of BM25 and one dense retriever (:func:`convex_fusion`) over the union of their top lists.

    Parameters
    ----------
    bm25, dense
        The two systems.
    weight
        BM25's weight; ``None`` until chosen (:meth:`choose_weight`) or given.
    """

    def __init__(self, bm25: Bm25Retriever, dense: DenseRetriever, weight: float | None = None) -> None:
        self.bm25, self.dense, self.weight = bm25, dense, weight

    def index(self, doc_ids: list[str], texts: list[str]) -> None:
        """Index the documents in both systems."""
        self.bm25.index(doc_ids, texts)
        self.dense.index(doc_ids, texts)

    def candidates(
        self, queries: list[str], k: int, batch_size: int | None = None
    ) -> list[tuple[dict[str, float], dict[str, float]]]:
        """Per query, the BM25 and dense scores of the union of both systems' top ``k``."""
        lexical = self.bm25.search(queries, k)
        q = self.dense.embed_queries(queries, batch_size)  # (Q, D)
        dense = self.dense.search_embedded(q, k)
        return [
            union_scores(
                lex,
                den,
                lambda ids, text=text: self.bm25.score_docs(text, ids),
                lambda ids, row=row: self.dense.score_docs(row, ids),
            )
            for text, row, lex, den in zip(queries, q, lexical, dense, strict=True)
        ]

    def search(self, queries: list[str], k: int, batch_size: int | None = None) -> list[list[tuple[str, float]]]:
        """The fused top ``k`` ``(doc_id, fused score)`` of each query."""
        if self.weight is None:
            raise IndusError("convex fusion has no weight: give fusion_weight or choose it on dev/train qrels")
        return [convex_fusion(lex, den, self.weight, depth=k) for lex, den in self.candidates(queries, k, batch_size)]

    def choose_weight(
        self, queries: dict[str, str], qrels: dict[str, dict[str, int]], k: int, ignore_identical_ids: bool = True
    ) -> dict[str, float]:
        """Set :attr:`weight` to the one of :data:`FUSION_GRID` with the best nDCG@10 on ``qrels``; the grid's
        scores (ties go to the smaller weight)."""
        qids = [q for q in queries if q in qrels]
        if not qids:
            raise IndusError("no judged queries to choose the fusion weight on")
        cands = self.candidates([queries[q] for q in qids], k + 1)
        grid: dict[str, float] = {}
        for w in FUSION_GRID:
            run = {}
            for qid, (lex, den) in zip(qids, cands, strict=True):
                fused = [(d, s) for d, s in convex_fusion(lex, den, w) if not (ignore_identical_ids and d == qid)]
                run[qid] = dict(fused[:k])
            grid[f"{w:.1f}"] = score_run(run, {q: qrels[q] for q in qids}, ignore_identical_ids=ignore_identical_ids)[
                "ndcg@10"
            ]
        self.weight = float(max(grid, key=lambda w: (grid[w], -float(w))))
        return grid


def _is_bm25(model: Any) -> bool:

    return isinstance(model, str) and isinstance(parse_model(model, fused=False), Bm25)


def _model_name(model: Any) -> str:
    if len(split_systems(model)) > 1:
        return "+".join(_model_name(part) for part in split_systems(model))
    if _is_bm25(model):
        return "bm25"
    if isinstance(model, str | Path):
        return resolve_model(model).name
    return type(model).__name__


@dataclass(kw_only=True)
class IREvaluator:
    """BM25 or dense retrieval on a BEIR folder (see the module docstring).

    Parameters
    ----------
    split
        The qrels split to score (``qrels/<split>.tsv``).
    k
        Documents retrieved per query (the run depth; Recall@100 needs ``k >= 100``).
    batch_size
        Texts per encoder batch (dense models).
    max_length
        Encoder max sequence length in tokens; ``None``: the model's own (256 for minilm).
    latency_queries
        Queries timed one by one for ``latency_ms``.
    ignore_identical_ids
        Drop retrieved documents whose id equals the query id (BEIR's default).
    bm25_k1, bm25_b, stemmer, stopwords
        BM25 settings (``stemmer``: a Snowball language or ``None``; ``stopwords``: ``"en"`` or ``None``).
    run_path
        Write the run as a TREC run file here.
    device
        Encoder device; ``None``: CUDA when available.
    doc_model
        Encode the corpus with this model spec and only the queries with the evaluated model (asymmetric
        retrieval, see the module docstring); ``None``: the evaluated model encodes both.
    fusion_k
        The reciprocal-rank-fusion constant for a fused model ``A+B``.
    fusion
        How ``A+B`` fuses: ``rrf`` (reciprocal ranks, any systems) or ``convex`` (normalised scores; ``bm25`` plus
        one dense model).
    fusion_weight
        ``convex``: BM25's weight in ``[0, 1]``; ``None``: chosen on the collection's dev or train qrels.
    quantize, rescore
        Dense search over ``int8`` or ``binary`` codes of the document vectors instead of the floats, re-ranking
        the ``rescore`` best candidates by the float vectors (0: no re-ranking).
    progress
        Show progress bars.
    """

    task = "ir"
    primary_metric = "ndcg@10"

    split: str = "test"
    k: int = 100
    batch_size: int = 64
    max_length: int | None = None
    latency_queries: int = 100
    ignore_identical_ids: bool = True
    bm25_k1: float = 1.2
    bm25_b: float = 0.75
    stemmer: str | None = "english"
    stopwords: str | None = "en"
    run_path: str | Path | None = None
    device: str | None = None
    doc_model: str | None = None
    fusion_k: int = RRF_K
    fusion: str = "rrf"
    fusion_weight: float | None = None
    quantize: str | None = None
    rescore: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        if self.k < 1 or self.batch_size < 1 or self.latency_queries < 0:
            raise IndusError("ir: k and batch_size must be >= 1, latency_queries >= 0")
        if self.fusion_k < 0:
            raise IndusError(f"ir: fusion_k must be >= 0, got {self.fusion_k}")
        if self.fusion not in FUSIONS:
            raise IndusError(f"ir: fusion must be one of {', '.join(FUSIONS)}, got {self.fusion!r}")
        if self.quantize not in (None, "int8", "binary") or self.rescore < 0 or (self.rescore and not self.quantize):
            raise IndusError(
                f"ir: quantize must be int8 or binary (or unset) and rescore >= 0 (only with quantize), "
                f"got {self.quantize!r} and {self.rescore}"
            )
        if self.fusion_weight is not None and not 0.0 <= self.fusion_weight <= 1.0:
            raise IndusError(f"ir: fusion_weight must be in [0, 1], got {self.fusion_weight}")
        if self.max_length is not None and self.max_length < 1:
            raise IndusError(f"ir: max_length must be >= 1, got {self.max_length}")

    def settings(self) -> dict[str, Any]:
        """The settings as a JSON-able dict."""
        out = asdict(self)
        out["run_path"] = str(self.run_path) if self.run_path else None
        out["doc_model"] = str(self.doc_model) if self.doc_model is not None else None
        return out

    def documents_of(self, model: Any) -> str | None:
        """The model that encodes the documents for ``model``'s queries: ``doc_model``, else the documents model a
        query encoder's run folder records (``indus retriever distill --query-only``), else ``None``
        (the model itself)."""
        if self.doc_model is not None:
            return str(self.doc_model)
        return documents_model(model) if isinstance(model, str | Path) else None

    def retriever(self, model: Any) -> Bm25Retriever | DenseRetriever | FusedRetriever | ConvexFusedRetriever:
        """The retriever for ``model`` (``"bm25"``, a model spec, a fused ``A+B``, or a ``SentenceTransformer``)."""
        systems = split_systems(model)
        if len(systems) > 1 and self.fusion == "convex":
            lexical = [s for s in systems if _is_bm25(s)]
            if len(systems) != 2 or len(lexical) != 1:
                raise IndusError(f"ir: convex fusion fuses bm25 with one dense model (bm25+MODEL), got {model!r}")
            dense = next(s for s in systems if not _is_bm25(s))
            return ConvexFusedRetriever(self.retriever(lexical[0]), self.retriever(dense), self.fusion_weight)
        if len(systems) > 1:
            return FusedRetriever([self.retriever(part) for part in systems], fusion_k=self.fusion_k)
        if _is_bm25(model):
            return Bm25Retriever(
                k1=self.bm25_k1, b=self.bm25_b, stemmer=self.stemmer, stopwords=self.stopwords, progress=self.progress
            )
        doc_model = self.documents_of(model)
        if doc_model is not None and _is_bm25(doc_model):
            raise IndusError("ir: doc_model must be a dense model, not bm25")
        return DenseRetriever(
            self._dense(model),
            batch_size=self.batch_size,
            progress=self.progress,
            doc_model=None if doc_model is None else self._dense(doc_model),
            quantize=self.quantize,
            rescore=self.rescore,
        )

    def _dense(self, model: Any) -> Any:
        if isinstance(model, str | Path):
            import torch

            device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
            model = load_sentence_transformer(model, device=device, max_seq_length=self.max_length)
        elif self.max_length is not None:
            model.max_seq_length = self.max_length
        if not hasattr(model, "encode"):
            raise IndusError(f"{type(model).__name__}: expected 'bm25', a model spec or a SentenceTransformer")
        return model

    def evaluate(self, model: Any, data: str | Path | BeirData) -> EvalResult | None:
        """Index the corpus of ``data``, retrieve for the judged queries of the split, and score.

        Parameters
        ----------
        model
            ``"bm25"``, a model spec (``minilm``, ``random:<preset>``, a local folder) or a ``SentenceTransformer``.
        data
            A BEIR folder, an ``ir`` dataset name under the data root, or a loaded :class:`BeirData`.

        Returns
        -------
        dict or None
            The result. Inside :func:`indus.distributed.sharded_encoding` with several processes
            (``torchrun ... -m indus eval ir``), every process encodes its shard of the corpus for the dense
            systems and the main process alone searches, scores and returns the result; the others return
            ``None`` once their shard is delivered.
        """
        from indus.distributed import is_main_process, rank_and_world, sharding_active  # lazy: pulls torch

        started = time.perf_counter()
        if isinstance(data, BeirData):
            beir = data
            if beir.split != self.split:
                raise IndusError(f"{beir.path}: data holds the {beir.split!r} qrels, evaluator asks for {self.split!r}")
        else:
            beir = load_beir(resolve_dataset(data, kind="ir"), self.split)
        tune_split = self._tune_split(beir, model)  # before any model loads: a missing split fails at once
        retriever = self.retriever(model)
        doc_ids = list(beir.corpus)
        texts = [beir.corpus[d].full_text() for d in doc_ids]
        queries = beir.eval_queries
        qids, qtexts = list(queries), list(queries.values())
        depth = self.k + 1 if self.ignore_identical_ids else self.k

        sharded = sharding_active()
        t0 = time.perf_counter()
        if sharded:
            systems = retriever.retrievers if isinstance(retriever, FusedRetriever) else [retriever]
            for system in systems:
                if isinstance(system, DenseRetriever):
                    system.index(doc_ids, texts, sharded=True)
                elif is_main_process():  # BM25 is not sharded: the main process builds it alone
                    system.index(doc_ids, texts)
            if not is_main_process():
                return None  # the main process searches and scores, once
        else:
            retriever.index(doc_ids, texts)
        index_s = time.perf_counter() - t0
        fusion_info = (
            self._choose_weight(retriever, beir, tune_split) if isinstance(retriever, ConvexFusedRetriever) else {}
        )
        t0 = time.perf_counter()
        hits = retriever.search(qtexts, depth)
        search_s = time.perf_counter() - t0
        run: dict[str, dict[str, float]] = {}
        for qid, ranked in zip(qids, hits, strict=True):
            kept = [(d, s) for d, s in ranked if not (self.ignore_identical_ids and d == qid)]
            run[qid] = dict(kept[: self.k])
        latencies = self._latency(retriever, qtexts, depth)

        metrics = score_run(run, beir.qrels, ignore_identical_ids=self.ignore_identical_ids)
        if self.run_path:
            write_trec_run(self.run_path, run, tag=_model_name(model).replace(" ", "_"))
        result: dict[str, Any] = {
            "task": self.task,
            "primary_metric": self.primary_metric,
            "model": _model_name(model),
            "retriever": (
                "bm25"
                if isinstance(retriever, Bm25Retriever)
                else "fusion"
                if isinstance(retriever, FusedRetriever | ConvexFusedRetriever)
                else "dense"
            ),
            "data": str(beir.path),
            "split": self.split,
            **{m: metrics[m] for m in ("ndcg@10", "recall@10", "recall@100", "mrr@10")},
            "queries": metrics["queries"],
            "docs": len(doc_ids),
            "k": self.k,
            "docs_per_s": len(doc_ids) / index_s if index_s > 0 else float("inf"),
            "queries_per_s": len(qids) / search_s if search_s > 0 else float("inf"),
            "latency_ms": statistics.median(latencies) if latencies else None,
            "latency_ms_p90": float(np.percentile(latencies, 90)) if latencies else None,
            "latency_queries": len(latencies),
            "index_s": index_s,
            "search_s": search_s,
            "encode_processes": rank_and_world()[1] if sharded else 1,
        }
        if isinstance(retriever, DenseRetriever):
            doc_model = self.documents_of(model)
            result["doc_model"] = None if doc_model is None else _model_name(doc_model)
            result["max_length"] = retriever.model.max_seq_length
            result["dim"] = int(retriever.faiss_index.d)
            from indus.ann import index_bytes  # lazy: pulls faiss

            result.update(
                {"quantize": self.quantize, "rescore": self.rescore, "index_bytes": index_bytes(retriever.faiss_index)}
            )
        if isinstance(retriever, FusedRetriever):
            result["fusion"], result["fusion_k"] = "rrf", self.fusion_k
        if isinstance(retriever, ConvexFusedRetriever):
            result.update({"fusion": "convex", "fusion_weight": retriever.weight, **fusion_info})
        result["settings"] = self.settings()
        result["wall_s"] = time.perf_counter() - started
        return EvalResult.from_json(result)

    def _tune_split(self, beir: BeirData, model: Any) -> str | None:
        """The qrels split a convex fusion weight is chosen on: ``dev``, else ``train``, never the split scored;
        ``None`` when no weight is to be chosen."""
        if self.fusion != "convex" or self.fusion_weight is not None or len(split_systems(model)) < 2:
            return None

        splits = [s for s in ("dev", "train") if s != self.split and s in qrels_splits(beir.path)]
        if not splits:
            raise IndusError(
                f"{beir.path}: convex fusion chooses its weight on dev or train qrels and this collection "
                f"has none besides {self.split!r}; pass --fusion-weight W"
            )
        return splits[0]

    def _choose_weight(self, retriever: ConvexFusedRetriever, beir: BeirData, split: str | None) -> dict[str, Any]:
        """Set the convex fusion weight: the given one, else the best on ``split``'s qrels; what was done."""
        if self.fusion_weight is not None:
            retriever.weight = self.fusion_weight
            return {"fusion_weight_from": "given"}
        tune = load_beir(beir.path, split)
        grid = retriever.choose_weight(tune.eval_queries, tune.qrels, self.k, self.ignore_identical_ids)
        return {"fusion_weight_from": f"{split} qrels ({len(tune.eval_queries)} queries)", "fusion_grid_ndcg@10": grid}

    def _latency(self, retriever: Any, queries: list[str], depth: int) -> list[float]:
        n = min(self.latency_queries, len(queries))
        if n == 0:
            return []

        def search(q: str) -> None:
            retriever.search([q], depth, batch_size=1)

        return latencies_ms(search, queries[:n], warmup=queries[:1])
