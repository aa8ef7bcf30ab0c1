"""Hard-negative mining: ``indus retriever mine``, rows that ``indus retriever train`` reads with a ``negative``.

For each anchor of the pair files the corpus is searched (``dense``: exact inner product of the model's normalised
embeddings; ``bm25``: Lucene BM25 as ``indus eval ir`` scores it; ``hybrid``: reciprocal-rank fusion of the two),
and the ranking is cleaned and filtered before negatives are drawn from it:

1. **Positives are skipped**: a document whose id is the pair's ``positive_id`` (an optional field of the pair
   row), or whose text (title + text, or the text alone) equals one of the anchor's positives or the anchor
   itself after lower-casing and collapsing white space. An anchor with several positives (several rows) skips
   them all. The first ``top_k`` remaining documents are the candidates, ranked from 1.
2. **Relative-margin filter** (NV-Retriever's "TopK-PercPos", Moreira et al. 2024, arXiv 2407.15831): a candidate
   whose dense score (cosine to the anchor under ``model``, whatever ranked it) exceeds ``margin`` times the
   positive's score is dropped as a likely false negative (an unlabelled positive). ``margin=None`` turns it off.
3. **Sampling**: ``negatives`` candidates per pair are drawn at random (seeded) from the ranks ``rank_range``
   (``10-50`` by default: hard, but past the top ranks where unlabelled positives crowd). A pair with no candidate
   left is dropped and counted.

Each output row is ``{"anchor", "positive", "negative", "source"}``; with ``negatives > 1`` a pair gives one row
per negative. ``indus retriever train`` uses a source's ``negative`` column when every row of it has one, which
mined files always satisfy. A ``*.summary.json`` beside the output records the counts, among them how many
candidates the filter removed.

**Memory.** The corpus is read three times as a stream (hash and ids; encoding; the texts of the chosen negatives)
and never held as texts in dense mode. Its embeddings go to an ``(N, D)`` float32 ``.npy`` file in the cache folder
(``cache_dir``, ``$INDUS_CACHE/embeddings`` or ``~/.cache/indus/embeddings``) named by the model's identity (spec,
sequence length, and the size and modification time of every file of a local model folder) and a SHA-256 of the
texts in order: a second run over the same corpus and model encodes nothing and, when the anchors and positives
are cached too, does not even load the model. The search streams over the memory-mapped array in slices of
``chunk_size`` rows (faiss ``IndexFlatIP`` per slice, merged by ``faiss.ResultHeap``), so memory holds one slice,
the anchors' embeddings and their running top lists. ``bm25`` and ``hybrid`` build an in-memory BM25 index of the
corpus (bm25s), which needs the texts once.

Example
-------
>>> summary = mine_negatives("minilm", ["pairs/scifact-train"], "ir/scifact", "runs/mined.jsonl.gz")  # doctest: +SKIP
>>> summary["removed_by_margin"]  # doctest: +SKIP
812
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import random
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from indus.atomic import atomic_path, atomic_write_json, indus_cache
from indus.data.beir import Document, qrels_pairs, split_beir_name
from indus.data.jsonl import iter_jsonl
from indus.data.pairs import pair_files
from indus.data.registry import resolve_dataset
from indus.errors import DataFormatError, IndusError
from indus.evaluation.ir import Bm25Retriever, reciprocal_rank_fusion
from indus.models import resolve_model
from indus.retriever import bi_encoder
from indus.retriever.bi_encoder import load_bi_encoder, parse_student_spec
from indus.retriever.index import is_bm25_only, iter_documents, resolve_collection

MODES = ("dense", "bm25", "hybrid")
PAIR_SUFFIXES = (".jsonl.gz", ".jsonl")
_SPACE = re.compile(r"\s+")


def text_key(text: str) -> int:
    """A 64-bit hash of ``text`` lower-cased with white space collapsed: "identical text" for the positive check."""
    norm = _SPACE.sub(" ", text).strip().lower()
    return int.from_bytes(hashlib.blake2b(norm.encode("utf-8"), digest_size=8).digest(), "little")


def parse_range(value: str | Sequence[int]) -> tuple[int, int]:
    """``"10-50"`` -> ``(10, 50)``: ranks from 1, both ends included."""
    if isinstance(value, str):
        lo, sep, hi = value.partition("-")
        if not sep or not lo.strip().isdigit() or not hi.strip().isdigit():
            raise IndusError(f"--range {value!r}: expected FIRST-LAST ranks, e.g. 10-50")
        value = (int(lo), int(hi))
    lo, hi = (int(v) for v in value)
    if not 1 <= lo <= hi:
        raise IndusError(f"--range {lo}-{hi}: expected 1 <= FIRST <= LAST")
    return lo, hi


@dataclass(frozen=True)
class MineSettings:
    """How negatives are mined (see the module docstring).

    Parameters
    ----------
    top_k
        Candidates kept per anchor after skipping its positives.
    rank_range
        ``(first, last)`` candidate ranks negatives are drawn from; ``last <= top_k``.
    margin
        Drop candidates whose dense score exceeds ``margin`` x the positive's; ``None``: no filter.
    negatives
        Negatives per pair (one output row each).
    mode
        ``dense``, ``bm25`` or ``hybrid`` (RRF of both): what ranks the candidates.
    batch_size, chunk_size
        Encoder batch; corpus rows encoded and searched per slice.
    max_seq_length
        Truncation of every text (``None``: the model's own).
    seed
        Seed of the sampling.
    """

    top_k: int = 50
    rank_range: tuple[int, int] = (10, 50)
    margin: float | None = 0.95
    negatives: int = 1
    mode: str = "dense"
    batch_size: int = 64
    chunk_size: int = 16_384
    max_seq_length: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise IndusError(f"--mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        lo, hi = parse_range(self.rank_range)
        if self.top_k < 1 or hi > self.top_k:
            raise IndusError(f"--range {lo}-{hi} must end at or before --top-k {self.top_k} (and top-k >= 1)")
        if self.margin is not None and not self.margin > 0:
            raise IndusError(f"--margin must be positive (or off), got {self.margin}")
        if self.negatives < 1 or self.batch_size < 1 or self.chunk_size < 1:
            raise IndusError("--negatives, batch size and chunk size must be at least 1")


# ------------------------------------------------------------------------------------------------ reading


@dataclass
class MinePair:
    """A pair to mine for: its anchor's index in the distinct anchors, the texts, and an optional positive id."""

    anchor: int
    anchor_text: str
    positive: str
    source: str
    positive_id: str | None


def read_mine_pairs(paths: Sequence[str | Path]) -> tuple[list[MinePair], list[str], list[str]]:
    """The pairs of ``paths`` (files, folders or data-root names), the distinct anchors and the files read.

    A name ``BEIR_FOLDER:SPLIT`` (e.g. ``ir/scifact:train``) reads a collection's own judgements as pairs:
    query -> judged document (title + text), with the document's id as ``positive_id``, source ``NAME-SPLIT``.
    """
    if not paths:
        raise IndusError("no pairs given: pass --pairs FILE|DIR (JSON lines with anchor, positive[, source])")
    pairs: list[MinePair] = []
    anchors: dict[str, int] = {}
    files = []
    for name in paths:
        beir = split_beir_name(name)
        if beir is not None:
            folder, split = beir
            files.append(f"{folder}:{split}")
            for query, doc, doc_id in qrels_pairs(folder, split):
                index = anchors.setdefault(query, len(anchors))
                pairs.append(MinePair(index, query, doc, f"{folder.name}-{split}", doc_id))
            continue
        for file in pair_files(resolve_dataset(name)):
            files.append(str(file))
            default_source = file.name.removesuffix(".gz").removesuffix(".jsonl")
            for lineno, obj in iter_jsonl(file, required=("anchor", "positive")):
                for key in ("anchor", "positive"):
                    if not isinstance(obj[key], str) or not obj[key].strip():
                        raise DataFormatError(file, lineno, f"field {key!r} must be a non-empty string")
                pid = obj.get("positive_id")
                if pid is not None and (isinstance(pid, bool) or not isinstance(pid, str | int)):
                    raise DataFormatError(file, lineno, "field 'positive_id' must be a string or integer id")
                index = anchors.setdefault(obj["anchor"], len(anchors))
                pairs.append(
                    MinePair(
                        index,
                        obj["anchor"],
                        obj["positive"],
                        str(obj.get("source") or default_source),
                        None if pid is None else str(pid),
                    )
                )
    if not pairs:
        raise IndusError(f"{', '.join(files)}: no pairs found")
    return pairs, list(anchors), files


def iter_corpus(path: str | Path) -> Iterator[tuple[str, str, str]]:
    """``(id, title, text)`` of each document, streamed (:func:`indus.retriever.index.iter_documents`)."""
    return iter_documents(path)


def _full(title: str, text: str) -> str:

    return Document(title, text).full_text()  # what the encoder and BM25 see, as `indus retriever index`


@dataclass
class CorpusScan:
    """One pass over the corpus: ids, the two text keys of each document (full text, body) and a digest."""

    path: Path
    ids: list[str]
    keys: np.ndarray  # (N, 2) uint64
    digest: str


def scan_corpus(path: Path) -> CorpusScan:
    """Ids (unique), text keys and the SHA-256 of the texts in order, reading the corpus once as a stream."""
    ids: list[str] = []
    seen: set[str] = set()
    keys: list[tuple[int, int]] = []
    sha = hashlib.sha256()
    for doc_id, title, text in iter_corpus(path):
        if doc_id in seen:
            raise DataFormatError(path, None, f"duplicate document id {doc_id!r}")
        seen.add(doc_id)
        ids.append(doc_id)
        full = _full(title, text)
        keys.append((text_key(full), text_key(text)))
        data = full.encode("utf-8")
        sha.update(len(data).to_bytes(8, "little") + data)  # length-prefixed: ["ab", "c"] != ["a", "bc"]
    if not ids:
        raise DataFormatError(path, None, "no documents found")
    return CorpusScan(path, ids, np.asarray(keys, dtype=np.uint64).reshape(-1, 2), sha.hexdigest())


def corpus_texts(path: Path, rows: set[int] | None = None) -> Iterator[tuple[int, str]]:
    """``(row, full text)`` of every document (or of ``rows`` only), streamed."""
    for row, (_, title, text) in enumerate(iter_corpus(path)):
        if rows is None or row in rows:
            yield row, _full(title, text)


# ------------------------------------------------------------------------------------- embedding cache


def default_cache_dir() -> Path:
    """``$INDUS_CACHE/embeddings``, else ``~/.cache/indus/embeddings``."""
    return indus_cache() / "embeddings"


def model_identity(spec: str, max_seq_length: int | None) -> str:
    """What names a model's embeddings in the cache: its spec, its truncation and, for a local folder (also the base
    of a ``layers:...@FOLDER`` cut), the path, size and modification time of each of its files, so that a model
    trained again into the same folder is a new model."""
    parts = [spec, f"max_seq_length={max_seq_length}"]
    cut = parse_student_spec(spec) if not spec.startswith("random:") else None
    for candidate in {spec, cut[0] if cut else spec}:
        folder = Path(candidate).expanduser()
        if folder.is_dir():
            parts.append(str(folder.resolve()))
            for file in sorted(p for p in folder.rglob("*") if p.is_file()):
                st = file.stat()
                parts.append(f"{file.relative_to(folder)}:{st.st_size}:{st.st_mtime_ns}")
    return "\n".join(parts)


class LazyModel:
    """The bi-encoder, loaded on first use (a run whose embeddings are all cached never loads it)."""

    def __init__(self, spec: str, max_seq_length: int | None) -> None:
        self.spec, self.max_seq_length, self._model = spec, max_seq_length, None

    def get(self) -> Any:
        if self._model is None:
            self._model = load_bi_encoder(self.spec, max_seq_length=self.max_seq_length)
        return self._model

    @property
    def loaded(self) -> bool:
        return self._model is not None


def cached_embeddings(
    model: LazyModel,
    identity: str,
    digest: str,
    n: int,
    chunks: Callable[[], Iterator[list[str]]],
    cache_dir: Path,
    *,
    batch_size: int = 64,
    progress: bool = False,
    desc: str = "encode",
    sharded: bool = False,
) -> tuple[np.ndarray | None, bool]:
    """``(N, D)`` normalised float32 embeddings of ``n`` texts, memory-mapped from the cache; encoded on a miss.

    Parameters
    ----------
    model
        The encoder, loaded only on a miss.
    identity, digest
        :func:`model_identity` and the SHA-256 of the texts: together they name the cache file.
    n
        Number of texts.
    chunks
        Yields the texts in order, a list at a time (a stream: the texts are never all in memory).
    cache_dir
        The cache folder.
    sharded
        Inside :func:`indus.distributed.sharded_encoding` with several processes: on a miss every process encodes
        its shard of the texts (:func:`indus.distributed.encode_sharded`) into a staging file of the cache
        folder, which the main process moves into place once all are written; the others get ``None``.

    Returns
    -------
    array, hit
        The read-only memory map and whether it came from the cache. A miss writes ``<key>.npy`` atomically (a
        killed run leaves no file a later run trusts) and ``<key>.json`` naming the model and the count.
    """
    from tqdm.auto import tqdm

    key = hashlib.sha256(f"{identity}\n{digest}".encode()).hexdigest()[:40]
    path = cache_dir / f"{key}.npy"
    if path.is_file():
        try:
            array = np.load(path, mmap_mode="r")
            if array.ndim == 2 and array.shape[0] == n and array.dtype == np.float32:
                return array, True
        except (OSError, ValueError):
            pass  # unreadable: encode again and replace it
    cache_dir.mkdir(parents=True, exist_ok=True)
    encoder = model.get()
    dim = int((getattr(encoder, "get_embedding_dimension", None) or encoder.get_sentence_embedding_dimension)())
    if sharded:
        return _sharded_embeddings(encoder, identity, chunks, n, dim, path, batch_size)
    with atomic_path(path) as tmp:
        array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n, dim))  # (N, D)
        done = 0
        with tqdm(total=n, desc=desc, disable=not progress, leave=False) as bar:
            for texts in chunks():
                emb = bi_encoder.encode(encoder, texts, batch_size=batch_size)  # (n_chunk, D)
                array[done : done + len(texts)] = emb
                done += len(texts)
                bar.update(len(texts))
        if done != n:
            raise IndusError(f"expected {n} texts to encode, read {done} (did the input change while mining?)")
        array.flush()
        del array
    atomic_write_json(path.with_suffix(".json"), {"model": identity.splitlines()[0], "count": n, "dim": dim})
    return np.load(path, mmap_mode="r"), False


def _sharded_embeddings(
    encoder: Any,
    identity: str,
    chunks: Callable[[], Iterator[list[str]]],
    n: int,
    dim: int,
    path: Path,
    batch_size: int,
) -> tuple[np.ndarray | None, bool]:
    """The miss of :func:`cached_embeddings` across the processes of a launch: each encodes its shard into
    ``.<key>.sharded.npy``; the main process renames it to ``path`` (a killed run leaves only the staging file,
    which no later run reads) and returns the memory map; the others return ``None``."""
    from indus.distributed import encode_sharded, is_main_process  # lazy: pulls torch

    # every process reads the texts (as every process of a sharded `indus retriever index` does)
    texts = [text for chunk in chunks() for text in chunk]
    if len(texts) != n:
        raise IndusError(f"expected {n} texts to encode, read {len(texts)} (did the input change while mining?)")
    staging = path.with_name(f".{path.stem}.sharded.npy")
    array = encode_sharded(encoder, texts, staging, batch_size=batch_size, dim=dim)  # (N, D) on the main process
    if not is_main_process():
        return None, False
    del array
    os.replace(staging, path)
    atomic_write_json(path.with_suffix(".json"), {"model": identity.splitlines()[0], "count": n, "dim": dim})
    return np.load(path, mmap_mode="r"), False


def _chunked(items: Sequence[str], size: int) -> Callable[[], Iterator[list[str]]]:
    def gen() -> Iterator[list[str]]:
        for start in range(0, len(items), size):
            yield list(items[start : start + size])

    return gen


def _corpus_chunks(path: Path, size: int) -> Callable[[], Iterator[list[str]]]:
    def gen() -> Iterator[list[str]]:
        batch: list[str] = []
        for _, text in corpus_texts(path):
            batch.append(text)
            if len(batch) == size:
                yield batch
                batch = []
        if batch:
            yield batch

    return gen


def _digest(texts: Sequence[str]) -> str:
    sha = hashlib.sha256()
    for text in texts:
        data = text.encode("utf-8")
        sha.update(len(data).to_bytes(8, "little") + data)
    return sha.hexdigest()


# --------------------------------------------------------------------------------------------- search


def dense_top(
    queries: np.ndarray, corpus: np.ndarray, k: int, chunk_size: int, progress: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` inner products of each query over a (memory-mapped) corpus, one slice of rows at a time.

    Returns ``(scores, rows)``, each ``(Q, k)``, best first; rows of ``-1`` pad a corpus smaller than ``k``.
    """
    import faiss
    from tqdm.auto import tqdm

    from indus.ann import _rows  # lazy: pulls faiss

    n, dim = corpus.shape
    k = min(k, n)
    heap = faiss.ResultHeap(len(queries), k, keep_max=True)
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    for start in tqdm(range(0, n, chunk_size), desc="search", disable=not progress, leave=False):
        block = _rows(corpus, start, min(n, start + chunk_size))  # (C, D), the only copy in memory
        index = faiss.IndexFlatIP(dim)
        index.add(block)
        scores, rows = index.search(queries, min(k, len(block)))  # (Q, k')
        heap.add_result(scores, np.where(rows >= 0, rows + start, -1))
    heap.finalize()
    return heap.D, heap.I


# --------------------------------------------------------------------------------------------- mining


def summary_path(out: str | Path) -> Path:
    """``X.jsonl.gz`` -> ``X.summary.json`` (beside the output)."""
    out = Path(out)
    stem = out.name
    for suffix in PAIR_SUFFIXES:
        stem = stem.removesuffix(suffix)
    return out.with_name(f"{stem}.summary.json")


def mine_negatives(
    model: str,
    pairs: Sequence[str | Path],
    corpus: str | Path,
    out: str | Path,
    settings: MineSettings | None = None,
    *,
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> dict[str, Any] | None:
    """Mine hard negatives for the pairs of ``pairs`` from ``corpus`` and write ``out`` (see the module docstring).

    Parameters
    ----------
    model
        The dense model: it ranks the candidates in ``dense`` / ``hybrid`` mode and scores them for the margin
        filter in every mode.
    pairs
        Pair files, folders or data-root names (JSON lines ``anchor``, ``positive``, optional ``source``,
        ``positive_id``).
    corpus
        BEIR folder or ``corpus.jsonl`` (``_id``, ``title``, ``text``), JSON lines with ``id``/``text``, text lines.
    out
        The mined pairs, ``.jsonl.gz`` or ``.jsonl``, written atomically; the summary goes beside it.
    settings
        :class:`MineSettings` (defaults: top 50, ranks 10-50, margin 0.95, one negative, dense).
    cache_dir
        Embedding cache folder (default :func:`default_cache_dir`).

    Returns
    -------
    dict or None
        The summary (also written to :func:`summary_path`). Under ``torchrun`` (inside
        :func:`indus.distributed.sharded_encoding`) every process encodes its shard of the corpus on a cache miss;
        the main process alone mines and writes, the others return ``None`` once their shard is written.
    """
    from tqdm.auto import tqdm

    from indus.distributed import sharding_active  # lazy: pulls torch

    started = time.perf_counter()
    settings = settings or MineSettings()
    lo, hi = parse_range(settings.rank_range)
    out = Path(out)
    if not out.name.endswith(PAIR_SUFFIXES):
        raise IndusError(
            f"--out {out}: name the mined pairs *.jsonl.gz or *.jsonl (what `indus retriever train` reads)"
        )
    if is_bm25_only(model):
        raise IndusError(
            "--model must be a dense model: it scores the candidates for the margin filter "
            "(rank them by BM25 with --mode bm25)"
        )
    if not model.startswith("random:") and parse_student_spec(model) is None:
        resolve_model(model)  # an unknown name fails here, before the corpus is read
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    mine_pairs, anchors, files = read_mine_pairs(pairs)
    corpus_path = resolve_collection(corpus, "documents")
    scan = scan_corpus(corpus_path)
    n_docs = len(scan.ids)

    lazy = LazyModel(model, settings.max_seq_length)
    identity = model_identity(model, settings.max_seq_length)
    doc_emb, corpus_hit = cached_embeddings(
        lazy,
        identity,
        scan.digest,
        n_docs,
        _corpus_chunks(corpus_path, settings.chunk_size),
        cache,
        batch_size=settings.batch_size,
        progress=progress,
        desc="encode corpus",
        sharded=sharding_active(),
    )
    if doc_emb is None:  # a process other than the main one of a sharded launch: its shard is written
        return None
    positives = list(dict.fromkeys(p.positive for p in mine_pairs))
    anchor_emb, anchors_hit = cached_embeddings(
        lazy,
        identity,
        _digest(anchors),
        len(anchors),
        _chunked(anchors, settings.chunk_size),
        cache,
        batch_size=settings.batch_size,
        progress=progress,
        desc="encode anchors",
    )
    pos_emb, pos_hit = cached_embeddings(
        lazy,
        identity,
        _digest(positives),
        len(positives),
        _chunked(positives, settings.chunk_size),
        cache,
        batch_size=settings.batch_size,
        progress=progress,
        desc="encode positives",
    )
    if anchor_emb.shape[1] != doc_emb.shape[1]:
        raise IndusError(
            f"the cached corpus embeddings have {doc_emb.shape[1]} dimensions, the anchors "
            f"{anchor_emb.shape[1]}; clear {cache}"
        )
    anchor_emb = np.ascontiguousarray(anchor_emb)  # (A, D), in memory: searched against every slice
    pos_row = {text: i for i, text in enumerate(positives)}

    # what each anchor must never get back: its positives' ids (explicit, or by identical text) and texts
    skip_keys: list[set[int]] = [{text_key(a)} for a in anchors]
    skip_ids: list[set[int]] = [set() for _ in anchors]
    row_of_id = None
    for p in mine_pairs:
        skip_keys[p.anchor].add(text_key(p.positive))
    if any(p.positive_id is not None for p in mine_pairs):
        row_of_id = {doc_id: row for row, doc_id in enumerate(scan.ids)}
        for p in mine_pairs:
            if p.positive_id is not None and p.positive_id in row_of_id:
                skip_ids[p.anchor].add(row_of_id[p.positive_id])
    anchors_of: dict[int, list[int]] = {}
    for a, skip in enumerate(skip_keys):
        for key in skip:
            anchors_of.setdefault(key, []).append(a)
    wanted = np.fromiter(anchors_of, dtype=np.uint64, count=len(anchors_of))
    for row in np.flatnonzero(np.isin(scan.keys, wanted).any(axis=1)):  # texts equal to an anchor or a positive
        for key in {int(scan.keys[row, 0]), int(scan.keys[row, 1])}:
            for a in anchors_of.get(key, ()):
                skip_ids[a].add(int(row))

    depth = min(n_docs, settings.top_k + max(len(s) for s in skip_ids) + 1)
    ranked = _rank(settings, scan, corpus_path, anchors, anchor_emb, doc_emb, depth, progress)  # A lists of rows

    rng = random.Random(settings.seed)
    counts = {
        "candidates": 0,
        "in_range": 0,
        "removed_by_margin": 0,
        "skipped_positive": 0,
        "pairs_without_negative": 0,
    }
    chosen: list[tuple[MinePair, list[int], float]] = []
    for p in tqdm(mine_pairs, desc="mine", disable=not progress, leave=False):
        rows = []
        for row in ranked[p.anchor]:
            if row in skip_ids[p.anchor]:
                counts["skipped_positive"] += 1
                continue
            rows.append(row)
            if len(rows) == settings.top_k:
                break
        counts["candidates"] += len(rows)
        window = rows[lo - 1 : hi]
        counts["in_range"] += len(window)
        pos_score = float(anchor_emb[p.anchor] @ pos_emb[pos_row[p.positive]])
        if settings.margin is not None and window:
            scores = doc_emb[np.sort(window)] @ anchor_emb[p.anchor]  # (W,), rows read in file order
            score_of = dict(zip(np.sort(window).tolist(), scores.tolist(), strict=True))
            kept = [r for r in window if score_of[r] <= settings.margin * pos_score]
            counts["removed_by_margin"] += len(window) - len(kept)
            window = kept
        if not window:
            counts["pairs_without_negative"] += 1
            continue
        chosen.append((p, rng.sample(window, min(settings.negatives, len(window))), pos_score))

    needed = {r for _, rows, _ in chosen for r in rows}
    texts = dict(corpus_texts(corpus_path, needed))
    written = 0
    with atomic_path(out) as tmp:
        opener = gzip.open if out.name.endswith(".gz") else open
        with opener(tmp, "wt", encoding="utf-8") as fh:
            for p, rows, _ in chosen:
                for r in rows:
                    fh.write(
                        json.dumps(
                            {
                                "anchor": p.anchor_text,
                                "positive": p.positive,
                                "negative": texts[r],
                                "source": p.source,
                                "negative_id": scan.ids[r],
                            },
                            ensure_ascii=False,
                        )
                        + "\n"
                    )
                    written += 1
    summary = {
        "task": "retriever-mine",
        "model": model,
        "mode": settings.mode,
        "pairs_files": files,
        "corpus": str(corpus_path),
        "out": str(out),
        "documents": n_docs,
        "pairs": len(mine_pairs),
        "anchors": len(anchors),
        "pairs_written": len(chosen),
        "rows": written,
        **counts,
        "removed_fraction": counts["removed_by_margin"] / counts["in_range"] if counts["in_range"] else 0.0,
        "cache": {
            "dir": str(cache),
            "corpus_hit": corpus_hit,
            "anchors_hit": anchors_hit,
            "positives_hit": pos_hit,
            "model_loaded": lazy.loaded,
        },
        "settings": {**asdict(settings), "rank_range": [lo, hi]},
        "wall_s": round(time.perf_counter() - started, 2),
    }
    atomic_write_json(summary_path(out), summary)
    return summary


def _rank(
    settings: MineSettings,
    scan: CorpusScan,
    corpus_path: Path,
    anchors: list[str],
    anchor_emb: np.ndarray,
    doc_emb: np.ndarray,
    depth: int,
    progress: bool,
) -> list[list[int]]:
    """Each anchor's ``depth`` best corpus rows, best first, in ``settings.mode``."""
    dense: list[list[int]] = []
    if settings.mode in ("dense", "hybrid"):
        scores, rows = dense_top(anchor_emb, doc_emb, depth, settings.chunk_size, progress)  # (A, depth)
        dense = [[int(r) for r in row if r >= 0] for row in rows]
        if settings.mode == "dense":
            return dense

    bm25 = Bm25Retriever(progress=progress)
    names = [str(i) for i in range(len(scan.ids))]  # rows as ids: the fused lists map straight back
    bm25.index(names, [text for _, text in corpus_texts(corpus_path)])
    lexical = [[int(d) for d, _ in hits] for hits in bm25.search(anchors, depth)]
    del bm25
    if settings.mode == "bm25":
        return lexical
    fused = []
    for lex, den, score in zip(lexical, dense, scores, strict=True):
        a = [(str(r), float(len(lex) - i)) for i, r in enumerate(lex)]
        b = [(str(r), float(s)) for r, s in zip(den, score, strict=False)]
        fused.append([int(d) for d, _ in reciprocal_rank_fusion([a, b], depth=depth)])
    return fused
