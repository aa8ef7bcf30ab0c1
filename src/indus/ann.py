"""faiss indexes for collections from thousands to hundreds of millions of passages.

Three index types, all inner product over L2-normalised vectors (= cosine):

========  ===========================================  ==================================  =====================
type      faiss                                        memory per vector (D = 384)          when (``auto``)
========  ===========================================  ==================================  =====================
flat      ``IndexFlatIP``: exact                       ``4 D`` = 1,536 B                    N <= 200,000
hnsw      ``IndexHNSWFlat``: graph, ``M`` links        ``4 D + 8 M`` = 1,792 B (M = 32)     N <= 5,000,000
ivfpq     ``IndexIVFPQ``: ``nlist`` lists, PQ codes,   ``pq_m + 8`` = 56 B (pq_m = 48),     N > 5,000,000
          re-ranked exactly (``IndexRefineFlat``)      + ``4 D`` on disk when re-ranking
========  ===========================================  ==================================  =====================

``flat`` is exact and needs no parameters; its query cost grows with N. ``hnsw`` answers in about a
millisecond at any N but keeps every vector in memory and builds slowly (the graph is built one vector
at a time). ``ivfpq`` compresses each vector to ``pq_m`` bytes (27x smaller at D = 384) and searches
``nprobe`` of ``nlist`` lists; it needs a training pass (k-means on a sample). PQ distances alone rank
poorly among close neighbours, so by default the ``refine * k`` best PQ candidates are re-scored with their
exact vectors, which the index file also holds and which stay on disk (memory-mapped) at search time.
``benchmarks/index_scale.py`` measures the three with these defaults
(``benchmarks/results/index_scale.md``); ``docs/scale.md`` takes the arithmetic to 10^8.

**Memory-bounded building.** :func:`build_faiss_index` reads the vectors from any array, typically an
``np.memmap`` written by :func:`indus.distributed.encode_sharded`, in slices of ``batch_rows``
rows: the embeddings of the collection are never one Python object, only the index itself is in memory
(for ``ivfpq`` with ``refine=0``, only its compressed codes; re-ranking keeps the full vectors too).

**Memory-mapped loading.** :func:`read_faiss_index` opens every type with ``IO_FLAG_MMAP_IFC``: the vectors
(or codes) stay in the file and the operating system pages them in as searches touch them, so several
processes share one copy and a process's own memory holds only the small structures.

Example
-------
>>> import numpy as np
>>> x = np.random.default_rng(0).standard_normal((1000, 16)).astype("float32")
>>> x /= np.linalg.norm(x, axis=1, keepdims=True)
>>> index, spec = build_faiss_index("hnsw", x, hnsw_m=8)
>>> int(index.search(x[:1], 1)[1][0, 0])
0
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from indus.atomic import atomic_path
from indus.errors import IndusError

INDEX_TYPES = ("flat", "hnsw", "ivfpq")
FLAT_MAX = 200_000
HNSW_MAX = 5_000_000


def default_index_type(n: int) -> str:
    """The index type ``auto`` picks for ``n`` vectors (the table of the module docstring)."""
    if n <= FLAT_MAX:
        return "flat"
    return "hnsw" if n <= HNSW_MAX else "ivfpq"


def auto_nlist(n: int) -> int:
    """IVF lists for ``n`` vectors: the power of two nearest ``sqrt(n)``, between 16 and 65,536.

    faiss's guideline is ``4 sqrt(n)`` to ``16 sqrt(n)`` lists for the fastest search; ``sqrt(n)`` keeps the
    k-means training (about 40 points per list, ``O(sqrt(n)^2)`` work per pass) affordable without a GPU,
    at the price of searching longer lists.
    """
    return int(min(65_536, max(16, 2 ** round(math.log2(math.sqrt(max(n, 1)))))))


def auto_pq_m(dim: int) -> int:
    """PQ sub-quantizers: one byte per 8 dimensions (48 for D = 384), a divisor of ``dim``."""
    m = max(1, dim // 8)
    while dim % m:
        m -= 1
    return m


@dataclass(frozen=True)
class IndexSpec:
    """How an index is built and searched; stored in the index's metadata.

    Parameters
    ----------
    kind
        ``flat``, ``hnsw`` or ``ivfpq`` (``auto`` is resolved by :meth:`resolve`).
    hnsw_m, ef_construction, ef_search
        HNSW links per node, build breadth, default search breadth.
    nlist, nprobe
        IVF lists (``None``: :func:`auto_nlist`) and lists searched per query (``None``: ``max(8, nlist // 32)``).
    pq_m, pq_nbits
        PQ bytes per vector (``None``: :func:`auto_pq_m`) and bits per sub-quantizer code.
    refine
        ``ivfpq`` only: re-rank ``refine * k`` PQ candidates by their exact inner product (faiss
        ``IndexRefineFlat``; the full vectors are stored in the index file, memory-mapped at search time);
        0 keeps only the PQ codes (least disk and memory, lower recall).
    train_size
        Vectors sampled (at random, seeded) to train ``ivfpq``; ``None``: ``40 * nlist``, at most all of them.
    """

    kind: str = "flat"
    hnsw_m: int = 32
    ef_construction: int = 200
    ef_search: int = 128
    nlist: int | None = None
    nprobe: int | None = None
    pq_m: int | None = None
    pq_nbits: int = 8
    train_size: int | None = None
    refine: int = 4

    def __post_init__(self) -> None:
        if self.kind not in (*INDEX_TYPES, "auto"):
            raise IndusError(f"--index-type must be one of auto, {', '.join(INDEX_TYPES)}; got {self.kind!r}")
        for name in ("hnsw_m", "ef_construction", "ef_search", "pq_nbits"):
            if getattr(self, name) < 1:
                raise IndusError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.refine < 0:
            raise IndusError(f"refine must be 0 (off) or a positive factor, got {self.refine}")

    def resolve(self, n: int, dim: int) -> IndexSpec:
        """A copy with ``auto`` and every ``None`` replaced by its value for ``n`` vectors of ``dim``."""
        kind = default_index_type(n) if self.kind == "auto" else self.kind
        nlist = self.nlist or min(auto_nlist(n), max(1, n // 39))  # k-means needs ~39 points per centroid
        pq_m = self.pq_m or auto_pq_m(dim)
        if dim % pq_m:
            raise IndusError(f"pq_m = {pq_m} does not divide the dimension {dim}")
        return IndexSpec(
            kind=kind,
            hnsw_m=self.hnsw_m,
            ef_construction=self.ef_construction,
            ef_search=self.ef_search,
            nlist=nlist,
            nprobe=self.nprobe or max(8, nlist // 32),
            pq_m=pq_m,
            pq_nbits=self.pq_nbits,
            refine=self.refine,
            train_size=min(n, self.train_size or 40 * nlist),
        )

    def to_json(self) -> dict[str, Any]:
        """The parameters that matter for ``kind`` (for ``meta.json``)."""
        keep = {
            "flat": ("kind",),
            "hnsw": ("kind", "hnsw_m", "ef_construction", "ef_search"),
            "ivfpq": ("kind", "nlist", "nprobe", "pq_m", "pq_nbits", "refine", "train_size"),
        }.get(self.kind)
        return {k: v for k, v in asdict(self).items() if keep is None or k in keep}


def open_vectors(vectors: Any) -> np.ndarray:
    """``vectors`` as a 2-D array: an array or memmap as is, a ``.npy`` path opened memory-mapped (read-only)."""
    if isinstance(vectors, str | Path):
        try:
            vectors = np.load(vectors, mmap_mode="r")
        except (OSError, ValueError) as exc:
            raise IndusError(f"{vectors}: not a .npy array of embeddings ({exc})") from None
    if getattr(vectors, "ndim", None) != 2:
        raise IndusError(f"expected a 2-D array of embeddings, got shape {getattr(vectors, 'shape', None)}")
    return vectors


def _rows(vectors: np.ndarray, start: int, stop: int) -> np.ndarray:
    """Rows ``start:stop`` as a C-contiguous float32 copy (what faiss takes); the only copy made at a time."""
    return np.ascontiguousarray(vectors[start:stop], dtype=np.float32)


def _training_sample(vectors: np.ndarray, size: int, seed: int) -> np.ndarray:
    """``size`` distinct rows chosen at random (seeded), read in index order (sequential on a memmap)."""
    n = vectors.shape[0]
    if size >= n:
        return _rows(vectors, 0, n)
    picks = np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False))
    return np.ascontiguousarray(vectors[picks], dtype=np.float32)


def empty_index(spec: IndexSpec, dim: int) -> Any:
    """An untrained, empty faiss index for a resolved ``spec`` (inner-product metric)."""
    if spec.kind == "flat":
        return faiss.IndexFlatIP(dim)
    if spec.kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, spec.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = spec.ef_construction
        index.hnsw.efSearch = spec.ef_search
        return index
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFPQ(quantizer, dim, spec.nlist, spec.pq_m, spec.pq_nbits, faiss.METRIC_INNER_PRODUCT)
    index.nprobe = spec.nprobe
    if spec.refine:
        index = faiss.IndexRefineFlat(index)  # the wrapper keeps the IVF index (and its quantizer) alive
        index.k_factor = spec.refine
    return index


def build_faiss_index(
    kind: str | IndexSpec, vectors: Any, *, batch_rows: int = 65_536, seed: int = 0, progress: Any = None, **params: Any
) -> tuple[Any, IndexSpec]:
    """Build a faiss index from ``vectors``, reading ``batch_rows`` rows at a time.

    Parameters
    ----------
    kind
        ``flat``, ``hnsw``, ``ivfpq``, ``auto`` (by size, :func:`default_index_type`) or an :class:`IndexSpec`.
    vectors
        ``(N, D)`` L2-normalised embeddings: an array, an ``np.memmap`` or a ``.npy`` path (memory-mapped).
    batch_rows
        Rows converted and added per call; bounds the memory beyond the index itself.
    seed
        Seed of the ``ivfpq`` training sample and k-means.
    progress
        Called as ``progress(rows_done, n)`` after each batch.
    **params
        :class:`IndexSpec` fields (``hnsw_m``, ``nlist``, ...) when ``kind`` is a string.

    Returns
    -------
    index : faiss.Index
        The index, holding all ``N`` vectors.
    spec : IndexSpec
        Its parameters, resolved (for the index's metadata).
    """
    vectors = open_vectors(vectors)
    n, dim = (int(s) for s in vectors.shape)
    if n == 0:
        raise IndusError("no vectors to index")
    if batch_rows < 1:
        raise IndusError(f"batch_rows must be at least 1, got {batch_rows}")
    spec = (kind if isinstance(kind, IndexSpec) else IndexSpec(kind=kind, **params)).resolve(n, dim)
    index = empty_index(spec, dim)
    if spec.kind == "ivfpq":
        if spec.train_size < 2**spec.pq_nbits:
            raise IndusError(
                f"ivfpq needs at least {2**spec.pq_nbits} vectors to train its codebooks, got "
                f"{spec.train_size}; use --index-type flat for a collection this small"
            )
        sample = _training_sample(vectors, spec.train_size, seed)  # (T, D)
        ivf = faiss.extract_index_ivf(index)
        ivf.cp.seed = seed
        faiss.downcast_index(ivf).pq.cp.seed = seed
        index.train(sample)
        del sample
    for start in range(0, n, batch_rows):
        stop = min(n, start + batch_rows)
        index.add(_rows(vectors, start, stop))
        if progress is not None:
            progress(stop, n)
    return index, spec


def write_faiss_index(index: Any, path: str | Path) -> Path:
    """Write ``index`` to ``path`` atomically (a crash leaves the previous file or none)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        faiss.write_index(index, str(tmp))
    return path


def read_faiss_index(path: str | Path, *, mmap: bool = True) -> Any:
    """Read an index written by :func:`write_faiss_index`; memory-mapped and read-only when ``mmap``.

    Every type (``IndexFlat``, ``IndexHNSWFlat``, ``IndexIVFPQ``) maps its vectors or codes from the file
    (``IO_FLAG_MMAP_IFC``); such an index can be searched but not added to.
    """
    flags = faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_READ_ONLY if mmap else 0
    try:
        return faiss.read_index(str(path), flags)
    except RuntimeError as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise IndusError(f"{path}: could not read the faiss index ({reason})") from None


def set_search_params(index: Any, *, ef_search: int | None = None, nprobe: int | None = None) -> None:
    """Set the search breadth of an HNSW index (``ef_search``) or an IVF index (``nprobe``); others ignore it."""
    if ef_search is not None and hasattr(index, "hnsw"):
        index.hnsw.efSearch = ef_search
    if nprobe is not None:
        try:
            faiss.extract_index_ivf(index).nprobe = nprobe
        except RuntimeError:  # not an IVF index
            pass


def write_index_sharded(
    model: Any,
    texts: Sequence[str],
    index_path: str | Path,
    *,
    kind: str = "auto",
    vectors_path: str | Path | None = None,
    batch_size: int = 64,
    chunk_size: int = 8192,
    **params: Any,
) -> dict[str, Any] | None:
    """Encode ``texts`` across the processes and write one faiss index, from the main process only.

    Parameters
    ----------
    model, texts, batch_size, chunk_size
        As for :func:`encode_sharded`.
    index_path
        The faiss index file, written atomically by the main process.
    kind, **params
        Index type and :class:`~indus.ann.IndexSpec` fields (:func:`~indus.ann.build_faiss_index`).
    vectors_path
        The ``(N, D)`` embeddings array (default: ``index_path`` with suffix ``.npy``); kept, so other index types
        can be built, or the vectors exported, without encoding again.

    Returns
    -------
    dict or None
        On the main process: ``count``, ``dim`` and the resolved index parameters; ``None`` on the others. Every
        process returns after the index is written.
    """
    from indus.distributed import barrier, encode_sharded  # lazy: pulls torch (ann itself needs only faiss)

    index_path = Path(index_path)
    vectors_path = Path(vectors_path) if vectors_path is not None else index_path.with_suffix(".npy")
    vectors = encode_sharded(model, texts, vectors_path, batch_size=batch_size, chunk_size=chunk_size)
    meta = None
    try:
        if vectors is not None:
            index, spec = build_faiss_index(kind, vectors, **params)
            write_faiss_index(index, index_path)
            meta = {"count": int(vectors.shape[0]), "dim": int(vectors.shape[1]), "index": spec.to_json()}
    finally:
        barrier()  # the others go on once the index exists (or the main process failed)
    return meta


# ------------------------------------------------------------------------------------ quantized flat indexes

QUANTIZE = ("int8", "binary")


def binary_codes(vectors: np.ndarray) -> np.ndarray:
    """Sign bits of ``(N, D)`` vectors packed 8 to a byte, ``(N, D / 8)`` uint8 (what ``IndexBinaryFlat`` holds)."""
    return np.packbits(np.asarray(vectors) > 0, axis=1)


def build_quantized_index(
    kind: str, vectors: Any, *, batch_rows: int = 65_536, seed: int = 0, train_size: int = 100_000
) -> Any:
    """An exact (brute-force) index over compressed vectors, built ``batch_rows`` rows at a time.

    ``int8``: faiss ``IndexScalarQuantizer`` (``QT_8bit``: one byte per dimension, each dimension's range learnt
    from a seeded sample of ``train_size`` vectors), inner product; 4x smaller than float32. ``binary``: faiss
    ``IndexBinaryFlat`` over the sign bit of each dimension (one bit per dimension, 32x smaller), searched by Hamming
    distance; ``D`` must be a multiple of 8.
    """
    if kind not in QUANTIZE:
        raise IndusError(f"--quantize must be one of {', '.join(QUANTIZE)}, got {kind!r}")
    vectors = open_vectors(vectors)
    n, dim = (int(s) for s in vectors.shape)
    if n == 0:
        raise IndusError("no vectors to index")
    if kind == "binary":
        if dim % 8:
            raise IndusError(f"--quantize binary needs a dimension divisible by 8, the model embeds in {dim}")
        index = faiss.IndexBinaryFlat(dim)
        for start in range(0, n, batch_rows):
            index.add(binary_codes(vectors[start : min(n, start + batch_rows)]))
        return index
    index = faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT)
    index.train(_training_sample(vectors, min(n, train_size), seed))
    for start in range(0, n, batch_rows):
        index.add(_rows(vectors, start, min(n, start + batch_rows)))
    return index


def write_any_index(index: Any, path: str | Path) -> Path:
    """:func:`write_faiss_index`, also for a binary index (``faiss.write_index_binary``)."""
    if isinstance(index, faiss.IndexBinary):
        path = Path(path)
        with atomic_path(path) as tmp:
            faiss.write_index_binary(index, str(tmp))
        return path
    return write_faiss_index(index, path)


def read_binary_index(path: str | Path) -> Any:
    """Read an index written for ``--quantize binary``."""
    try:
        return faiss.read_index_binary(str(path))
    except RuntimeError as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise IndusError(f"{path}: could not read the binary faiss index ({reason})") from None


def search_index(
    index: Any, emb: np.ndarray, k: int, *, quantize: str | None = None, rescore: int = 0, vectors: Any = None
) -> list[list[tuple[int, float]]]:
    """Top-``k`` ``(row, score)`` per query embedding over a float, ``int8`` or ``binary`` index, best first.

    Parameters
    ----------
    index
        A faiss index (binary for ``quantize="binary"``).
    emb
        ``(Q, D)`` normalised query embeddings.
    quantize
        ``None`` (float), ``int8`` or ``binary``: a binary index is searched with the queries' sign bits and scores
        ``1 - 2 h / D`` (``h`` differing bits: the cosine of the sign vectors).
    rescore
        Re-rank the ``max(k, rescore)`` best candidates by the exact inner product with ``vectors(rows)`` (0: off).
    vectors
        ``rows -> (n, D)`` float32 vectors (for rescoring).
    """
    n = index.ntotal
    depth = min(max(k, rescore), n)
    if quantize == "binary":
        hamming, rows = index.search(binary_codes(emb), depth)  # (Q, depth) bits differing
        scores = 1.0 - 2.0 * hamming.astype(np.float32) / index.d
    else:
        scores, rows = index.search(emb, depth)  # (Q, depth), (Q, depth)
    if not rescore:
        return [[(int(r), float(s)) for r, s in zip(row[:k], score[:k]) if r >= 0] for row, score in zip(rows, scores)]
    if vectors is None:
        raise IndusError("rescoring needs the float vectors of the documents")
    out = []
    for q, row in zip(emb, rows):
        row = row[row >= 0]
        exact = vectors(row) @ q  # (depth,)
        best = sorted(zip(exact.tolist(), row.tolist()), key=lambda t: (-t[0], t[1]))[:k]
        out.append([(int(r), float(s)) for s, r in best])
    return out


def index_bytes(index: Any) -> int:
    """Bytes of the searched structure as faiss serialises it (what ``write_index`` writes).

    A flat index (float or binary) holds no trained state: its size is an empty one's header plus ``ntotal`` codes,
    counted without serialising (and so copying) the collection; other types are serialised once.
    """
    if type(index) is faiss.IndexBinaryFlat:
        return int(faiss.serialize_index_binary(faiss.IndexBinaryFlat(index.d)).nbytes) + index.ntotal * index.code_size
    if type(index) in (faiss.IndexFlatIP, faiss.IndexFlatL2):
        empty = type(index)(index.d)
        return int(faiss.serialize_index(empty).nbytes) + index.ntotal * index.code_size
    if isinstance(index, faiss.IndexBinary):
        return int(faiss.serialize_index_binary(index).nbytes)
    return int(faiss.serialize_index(index).nbytes)
