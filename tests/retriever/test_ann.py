"""Index types: built in batches from an on-disk array, loaded memory-mapped, searched as well as exact search."""

from __future__ import annotations

import numpy as np
import pytest

from indus import ann
from indus.errors import IndusError


def clustered(n: int, dim: int = 16, seed: int = 0) -> np.ndarray:
    """Unit vectors around n // 20 centres (neighbourhoods, as sentence embeddings have)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(1, n // 20), dim))
    x = centres[rng.integers(0, len(centres), n)] + 0.5 * rng.standard_normal((n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def exact(x: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-(q @ x.T), axis=1)[:, :k]  # (Q, k)


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found.tolist(), truth.tolist())]))


class RecordingArray:
    """An (N, D) array that records the largest block of rows read at once."""

    def __init__(self, x: np.ndarray) -> None:
        self.x, self.shape, self.ndim, self.largest = x, x.shape, 2, 0

    def __getitem__(self, key):
        block = self.x[key]
        self.largest = max(self.largest, len(block))
        return block


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    x = clustered(3000)
    path = tmp_path_factory.mktemp("ann") / "vectors.npy"
    np.save(path, x)
    q = clustered(3000, seed=1)[:50]
    return path, x, q, exact(x, q, 10)


def test_default_type_by_collection_size():
    assert ann.default_index_type(1_000) == "flat"
    assert ann.default_index_type(ann.FLAT_MAX) == "flat"
    assert ann.default_index_type(ann.FLAT_MAX + 1) == "hnsw"
    assert ann.default_index_type(ann.HNSW_MAX + 1) == "ivfpq"
    assert ann.auto_nlist(1_000_000) == 1024 and ann.auto_nlist(100) == 16
    assert ann.auto_pq_m(384) == 48 and 384 % ann.auto_pq_m(384) == 0 and 100 % ann.auto_pq_m(100) == 0
    spec = ann.IndexSpec(kind="auto").resolve(10_000_000, 384)
    assert spec.kind == "ivfpq" and spec.nlist == 4096 and spec.train_size == 40 * 4096


@pytest.mark.parametrize("kind, minimum", [("flat", 1.0), ("hnsw", 0.9), ("ivfpq", 0.85)])
def test_each_type_built_in_batches_from_a_memmap_finds_the_exact_neighbours(data, tmp_path, kind, minimum):
    path, x, q, truth = data
    vectors = RecordingArray(np.load(path, mmap_mode="r"))
    params = {"nlist": 16, "nprobe": 16, "train_size": 1000, "pq_m": 8} if kind == "ivfpq" else {}
    index, spec = ann.build_faiss_index(kind, vectors, batch_rows=500, **params)
    assert index.ntotal == len(x) and spec.kind == kind
    assert vectors.largest <= max(500, spec.train_size or 0)  # never the whole collection at once
    assert recall(index.search(q, 10)[1], truth) >= minimum
    out = ann.write_faiss_index(index, tmp_path / f"{kind}.faiss")
    mapped = ann.read_faiss_index(out, mmap=True)
    np.testing.assert_array_equal(mapped.search(q, 10)[1], index.search(q, 10)[1])


def test_ivfpq_reranking_beats_codes_alone(data):
    path, _, q, truth = data
    params = {"nlist": 16, "nprobe": 16, "train_size": 1000, "pq_m": 4}
    refined, _ = ann.build_faiss_index("ivfpq", path, **params)
    codes, spec = ann.build_faiss_index("ivfpq", path, refine=0, **params)
    assert spec.to_json()["refine"] == 0
    assert recall(refined.search(q, 10)[1], truth) > recall(codes.search(q, 10)[1], truth)


def test_memory_mapped_index_keeps_vectors_out_of_process_memory(tmp_path):
    x = clustered(20_000, dim=64)
    index, _ = ann.build_faiss_index("flat", x)
    path = ann.write_faiss_index(index, tmp_path / "flat.faiss")
    del index

    def anon() -> int:
        with open("/proc/self/status", encoding="utf-8") as fh:
            return int(next(line for line in fh if line.startswith("RssAnon:")).split()[1]) * 1024

    before = anon()
    mapped = ann.read_faiss_index(path, mmap=True)
    mapped.search(x[:5], 3)
    assert anon() - before < x.nbytes / 4  # the 5 MB of vectors stay in the page cache
    loaded = ann.read_faiss_index(path, mmap=False)
    np.testing.assert_array_equal(mapped.search(x[:5], 3)[1], loaded.search(x[:5], 3)[1])


def test_search_parameters_reach_the_index(data):
    path, *_ = data
    hnsw, _ = ann.build_faiss_index("hnsw", path, hnsw_m=8, ef_search=16)
    ann.set_search_params(hnsw, ef_search=99)
    assert hnsw.hnsw.efSearch == 99
    ivf, _ = ann.build_faiss_index("ivfpq", path, nlist=16, pq_m=4, train_size=1000)
    ann.set_search_params(ivf, nprobe=5)
    import faiss

    assert faiss.extract_index_ivf(ivf).nprobe == 5
    flat, _ = ann.build_faiss_index("flat", path)
    ann.set_search_params(flat, ef_search=5, nprobe=5)  # no-op, no error


def test_bad_input_is_one_clear_error(tmp_path):
    with pytest.raises(IndusError, match="index-type"):
        ann.IndexSpec(kind="lsh")
    with pytest.raises(IndusError, match="at least 256 vectors"):
        ann.build_faiss_index("ivfpq", clustered(100))
    with pytest.raises(IndusError, match="2-D"):
        ann.build_faiss_index("flat", np.zeros(5, dtype=np.float32))
    (tmp_path / "bad.faiss").write_bytes(b"not an index")
    with pytest.raises(IndusError, match="could not read"):
        ann.read_faiss_index(tmp_path / "bad.faiss")
    with pytest.raises(IndusError, match="not a .npy"):
        ann.build_faiss_index("flat", tmp_path / "bad.faiss")


def test_build_index_takes_an_index_type_and_loads_memory_mapped(tmp_path, micro_model_dir):
    from indus.retriever.index import build_index, load_index

    corpus = tmp_path / "docs.txt"
    corpus.write_text("\n".join(f"document {i} about topic {i % 7}" for i in range(40)) + "\n")
    meta = build_index(str(micro_model_dir), corpus, tmp_path / "idx", index_type="hnsw", hnsw_m=8)
    assert meta["index_type"] == "hnsw" and meta["index"]["hnsw_m"] == 8
    assert not list(tmp_path.glob(".*.npy"))  # the embeddings array is gone once the index is written
    auto = build_index(str(micro_model_dir), corpus, tmp_path / "auto", index_type="auto")
    assert auto["index_type"] == "flat"  # 40 documents
    idx = load_index(tmp_path / "idx")
    hits = idx.search(["document 3 about topic 3"], k=3)[0]
    assert len(hits) == 3 and hits[0][0] == "4"  # line 4 holds document 3
    with pytest.raises(IndusError, match="index-type"):
        build_index(str(micro_model_dir), corpus, tmp_path / "bad", index_type="lsh")


@pytest.mark.parametrize("kind", ["ip", "l2", "binary", "int8"])
def test_index_bytes_equals_the_serialised_size(kind):
    import faiss

    from indus.ann import build_quantized_index, index_bytes

    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((37, 16)).astype(np.float32)  # (N, D)
    if kind in ("binary", "int8"):
        index = build_quantized_index(kind, vectors)
    else:
        index = faiss.IndexFlatIP(16) if kind == "ip" else faiss.IndexFlatL2(16)
        index.add(vectors)
    serialised = (
        faiss.serialize_index_binary(index) if isinstance(index, faiss.IndexBinary) else faiss.serialize_index(index)
    )
    assert index_bytes(index) == serialised.nbytes
