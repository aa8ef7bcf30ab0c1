"""Index types at scale: build time, bytes on disk and in memory, recall@10 against exact search, ms per query.

Synthetic unit vectors (D = 384, the width of MiniLM / INDUS-small embeddings) with cluster structure, as
sentence embeddings have: ``N / 100`` random unit centres, each vector ``normalize(centre + z)`` with
``z ~ N(0, I / D)`` (cosine about 0.7 to its centre, 0.5 between two vectors of a cluster); each query is a
collection vector plus the same kind of noise (cosine about 0.7 to it). Uniform random unit vectors would be
the worst case for every approximate index (no neighbourhood structure), so they are not used.

The vectors are written to an on-disk ``.npy`` in chunks and every index is built from that memory map by
:func:`indus.ann.build_faiss_index` (the ``indus retriever index`` path). Exact top-10 by an
``IndexFlatIP`` over the same map is the reference (so ``flat``'s recall is 1 by construction). Each
(size, type) runs in its own process so the memory readings are its own:

- ``build_s``: wall time of ``build_faiss_index`` (for ``ivfpq`` including k-means training);
- ``disk_bytes``: the index file; ``ram_bytes``: growth of the process's anonymous memory after loading the
  file into memory and searching; ``mmap_ram_bytes``: the same when loaded memory-mapped
  (``IO_FLAG_MMAP_IFC``: the vectors stay in the page cache, shared and reclaimable);
- ``ms_per_query_batch``: all queries in one ``search`` call (faiss's threads), per query;
  ``ms_per_query_single``: the median of queries searched one at a time; both on the memory-mapped index
  after one warm-up pass.

Run (takes ~10 minutes on 2 cores; other benchmarks must not run alongside). ``--skip TYPE@N`` leaves a row
out (the default HNSW graph at 10^6 takes about an hour to build on 2 cores)::

    flock /tmp/indus-bench.lock python benchmarks/index_scale.py --skip hnsw@1000000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

# faiss's OpenMP threads spin while they wait by default; on cores shared with other jobs that multiplies
# build times several-fold (measured: k-means training 55 s -> 16 s), so they sleep instead.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.machine import machine_info  # noqa: E402
from indus import ann  # noqa: E402
from indus.atomic import atomic_write_json, atomic_write_text  # noqa: E402

DIM = 384
K = 10
# Row label -> (index type, IndexSpec parameters): every type with IndexSpec's defaults (what
# `indus retriever index --index-type TYPE` builds); "ivfpq-pq" is ivfpq without exact re-ranking.
VARIANTS = {"flat": ("flat", {}), "hnsw": ("hnsw", {}), "ivfpq": ("ivfpq", {}), "ivfpq-pq": ("ivfpq", {"refine": 0})}


def anon_rss() -> int:
    """Anonymous resident memory of this process, in bytes (file pages of a memory map are not counted)."""
    with open("/proc/self/status", encoding="utf-8") as fh:
        line = next(line for line in fh if line.startswith("RssAnon:"))
    return int(line.split()[1]) * 1024


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def make_data(n: int, n_queries: int, work: Path, seed: int = 0, chunk: int = 100_000) -> tuple[Path, Path]:
    """Write ``vectors.npy`` (n, D) chunk by chunk and ``queries.npy`` (Q, D); see the module docstring."""
    rng = np.random.default_rng(seed)
    centres = unit(rng.standard_normal((max(1, n // 100), DIM)).astype(np.float32))  # (C, D)
    vec_path, q_path = work / "vectors.npy", work / "queries.npy"
    out = np.lib.format.open_memmap(vec_path, mode="w+", dtype=np.float32, shape=(n, DIM))
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        noise = rng.standard_normal((m, DIM)).astype(np.float32) / np.sqrt(DIM)
        out[start : start + m] = unit(centres[rng.integers(0, len(centres), m)] + noise)
    out.flush()
    picks = rng.choice(n, size=n_queries, replace=False)
    queries = unit(
        np.asarray(out[np.sort(picks)]) + rng.standard_normal((n_queries, DIM)).astype(np.float32) / np.sqrt(DIM)
    )
    del out
    np.save(q_path, queries.astype(np.float32))
    return vec_path, q_path


def exact_topk(vec_path: Path, queries: np.ndarray, k: int = K, chunk: int = 200_000) -> np.ndarray:
    """Exact top-``k`` rows by inner product, over the memory map in chunks (the reference)."""
    import faiss

    vectors = np.load(vec_path, mmap_mode="r")
    best_s = np.full((len(queries), k), -np.inf, dtype=np.float32)
    best_i = np.full((len(queries), k), -1, dtype=np.int64)
    for start in range(0, len(vectors), chunk):
        block = np.ascontiguousarray(vectors[start : start + chunk])
        s, i = faiss.knn(queries, block, k, metric=faiss.METRIC_INNER_PRODUCT)  # (Q, k) each
        s_all, i_all = np.hstack([best_s, s]), np.hstack([best_i, i + start])
        order = np.argsort(-s_all, axis=1)[:, :k]
        best_s, best_i = np.take_along_axis(s_all, order, 1), np.take_along_axis(i_all, order, 1)
    return best_i


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean over queries of |found top-k ∩ exact top-k| / k."""
    return float(np.mean([len(set(f) & set(t)) / truth.shape[1] for f, t in zip(found.tolist(), truth.tolist())]))


def run_one(label: str, work: Path) -> dict:
    """Build, write, load (in memory, then memory-mapped) and search one index type; in a fresh process."""
    vectors = np.load(work / "vectors.npy", mmap_mode="r")
    queries = np.load(work / "queries.npy")
    truth = np.load(work / "truth.npy")
    kind, params = VARIANTS[label]
    path = work / f"{label}.faiss"
    start = time.perf_counter()
    index, spec = ann.build_faiss_index(kind, vectors, **params)
    build_s = time.perf_counter() - start
    ann.write_faiss_index(index, path)
    del index
    # memory-mapped first (it allocates least), then fully loaded
    before = anon_rss()
    index = ann.read_faiss_index(path, mmap=True)
    index.search(queries, K)  # warm-up: page the file in
    start = time.perf_counter()
    _, found = index.search(queries, K)  # (Q, K)
    batch_ms = (time.perf_counter() - start) * 1000 / len(queries)
    single = []
    for q in queries[:200]:
        t = time.perf_counter()
        index.search(q[None, :], K)
        single.append((time.perf_counter() - t) * 1000)
    mmap_ram = anon_rss() - before
    del index
    before = anon_rss()
    index = ann.read_faiss_index(path, mmap=False)
    index.search(queries[:10], K)
    ram = anon_rss() - before
    return {
        "n": int(vectors.shape[0]),
        "dim": int(vectors.shape[1]),
        "type": label,
        "params": spec.to_json(),
        "build_s": round(build_s, 1),
        "disk_bytes": path.stat().st_size,
        "ram_bytes": int(ram),
        "mmap_ram_bytes": int(mmap_ram),
        "recall@10": round(recall_at_k(found, truth), 4),
        "ms_per_query_batch": round(batch_ms, 3),
        "ms_per_query_single": round(float(np.median(single)), 3),
    }


def _fmt_bytes(b: int) -> str:
    return f"{b / 2**30:.2f} GiB" if b >= 2**30 else f"{b / 2**20:.1f} MiB"


def render(results: dict) -> str:
    m = results["machine"]
    lines = [
        "# Index types at scale (`benchmarks/index_scale.py`)",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, GPU: {m['gpu']}; faiss "
        f"{results['faiss']} with {results['faiss_threads']} threads; {m['date']}. Load average "
        f"{results['load_before']} before and {results['load_after']} after: other agents shared the two cores "
        "during the run, so absolute times are pessimistic; compare rows of this table with each other.",
        "",
        f"Synthetic clustered unit vectors, D = {DIM}, {results['queries']} queries, exact top-{K} as reference "
        "(module docstring). RAM = anonymous memory after loading the index into memory; mmap RAM = the same when "
        "loaded memory-mapped (vectors in the shared page cache). Per-query times on the memory-mapped index.",
        "",
        "| N | type | parameters | build s | disk | RAM | mmap RAM | recall@10 | ms/query (batch) | ms/query (one) |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results["rows"]:
        params = ", ".join(f"{k}={v}" for k, v in r["params"].items() if k != "kind") or "-"
        lines.append(
            f"| {r['n']:,} | {r['type']} | {params} | {r['build_s']} | {_fmt_bytes(r['disk_bytes'])} | "
            f"{_fmt_bytes(r['ram_bytes'])} | {_fmt_bytes(r['mmap_ram_bytes'])} | {r['recall@10']:.3f} | "
            f"{r['ms_per_query_batch']} | {r['ms_per_query_single']} |"
        )
    lines.append("")
    if results["prepare_s"]:
        lines.append(
            "Data generation and exact reference per size (s): "
            + ", ".join(f"{int(n):,}: {s}" for n, s in results["prepare_s"].items())
        )
    lines += [f"Total wall time: {results['total_s']} s.", ""]
    if results.get("skipped"):
        lines += ["Not run (--skip): " + ", ".join(results["skipped"]) + ".", ""]
    if results.get("note"):
        lines += [results["note"], ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--types", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--work", type=Path, default=Path("/tmp/indus-index-scale"))
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "index_scale")
    parser.add_argument(
        "--skip",
        nargs="+",
        default=[],
        metavar="TYPE@N",
        help="rows not to run, e.g. hnsw@1000000 (they are listed under the table)",
    )
    parser.add_argument("--note", default="", help="a line added under the table")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)  # child: TYPE, in --work
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.work)))
        return
    import faiss

    if args.queries < 200:
        parser.error("--queries must be at least 200 (the single-query median uses 200)")
    skip = set()
    for item in args.skip:
        kind, _, size = item.partition("@")
        if kind not in VARIANTS or not size.isdigit():
            parser.error(f"--skip takes TYPE@N with TYPE one of {', '.join(VARIANTS)}; got {item!r}")
        skip.add((kind, int(size)))
    total = time.perf_counter()
    load_before = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    rows, prepare = [], {}

    def write(finished: bool) -> dict:
        """The results so far; written after every row, so a run stopped on its time budget keeps its rows."""
        results = {
            "machine": machine_info(),
            "faiss": faiss.__version__,
            "faiss_threads": faiss.omp_get_max_threads(),
            "queries": args.queries,
            "load_before": load_before,
            "load_after": ", ".join(f"{x:.1f}" for x in os.getloadavg()),
            "prepare_s": prepare,
            "total_s": round(time.perf_counter() - total, 1),
            "rows": rows,
            "note": args.note
            if finished
            else " ".join([args.note, f"Stopped after {len(rows)} rows (sizes asked: {args.sizes})."]).strip(),
            "skipped": [f"{kind}@{n}" for kind, n in sorted(skip)],
            "finished": finished,
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        }
        atomic_write_json(args.out.with_suffix(".json"), results)
        atomic_write_text(args.out.with_suffix(".md"), render(results))
        return results

    for n in args.sizes:
        work = args.work / str(n)
        work.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        vec_path, q_path = make_data(n, args.queries, work)
        np.save(work / "truth.npy", exact_topk(vec_path, np.load(q_path)))
        prepare[n] = round(time.perf_counter() - start, 1)
        for kind in args.types:
            if (kind, n) in skip:
                continue
            done = subprocess.run(
                [sys.executable, __file__, "--one", kind, "--work", str(work)],
                capture_output=True,
                text=True,
                check=False,
            )
            if done.returncode != 0:
                raise SystemExit(f"{kind} at {n}: {done.stderr[-2000:]}")
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(json.dumps(rows[-1]), flush=True)
            write(finished=False)
        for f in work.iterdir():
            f.unlink()
    results = write(finished=True)
    print(render(results))


if __name__ == "__main__":
    main()
