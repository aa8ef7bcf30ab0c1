"""Compressed retrieval on SciFact test with minilm: int8 / binary indexes, an int8 query encoder, convex vs RRF
fusion with BM25, and hard-negative mining of the SciFact train pairs.

One process, run under the shared lock::

    flock /tmp/indus-bench.lock .venv/bin/python benchmarks/retriever_compress.py --index runs/scifact-minilm

``--index`` is an index of the SciFact corpus by minilm truncated to 256 tokens, as built by
``indus retriever index --model minilm --corpus ir/scifact --max-seq-length 256 --out runs/scifact-minilm``: its
float vectors (read back from its flat faiss index) are the documents of every row, so no row re-encodes the
corpus. Queries are encoded here by minilm (256 tokens). Every run is scored by
:func:`indus.evaluation.ir_metrics.score_run` over the 300 judged test queries, depth 100, a document whose id is the
query's dropped (``indus eval ir``'s protocol).

Rows:

- **index**: float ``IndexFlatIP``; ``int8`` (faiss ``IndexScalarQuantizer`` QT_8bit); ``binary`` (``IndexBinaryFlat``
  over sign bits); each compressed one also re-ranking its top 100 by the float vectors (:func:`search_index`,
  the code ``indus retriever search`` runs). Bytes = the faiss serialisation of the searched structure. Latency =
  median search time of one query embedding, interleaved rounds (every index in turn, each round).
- **int8 query encoder**: ``indus retriever export --format int8`` of minilm encodes the queries; documents stay the
  float index. nDCG change and the median per-query latency (encode one query + exact search) against the float
  encoder, interleaved rounds.
- **fusion**: BM25 (the evaluator's settings) + minilm, RRF (k = 60) vs convex with the BM25 weight chosen on the 809
  SciFact train queries (``ConvexFusedRetriever.choose_weight``: grid 0.0..1.0 step 0.1), never on test.
- **mining** (``--mine``): ``indus retriever mine`` of ``pairs/scifact-train`` against the SciFact corpus (dense,
  top 50, ranks 10-50, margin 0.95; and without the filter), the corpus embeddings put into the mining cache from
  the same index vectors (same model, texts and truncation, so the cache key is the one mining computes).

Results: ``benchmarks/results/retriever_compress.{md,json}`` (the machine and its load average named).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402

from benchmarks.machine import machine_line  # noqa: E402
from indus.atomic import atomic_write_json, atomic_write_text  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
MAX_LENGTH = 256
K = 100
RESCORE = 100
ROUNDS, LATENCY_QUERIES = 5, 100


def _run(qids: list[str], hits: list[list[tuple[str, float]]]) -> dict[str, dict[str, float]]:
    """The evaluator's run: a document whose id is the query's dropped, top ``K`` kept."""
    return {q: dict([(d, s) for d, s in h if d != q][:K]) for q, h in zip(qids, hits, strict=True)}


def _metrics(run: dict[str, dict[str, float]], qrels: dict[str, dict[str, int]]) -> dict[str, float]:
    from indus.evaluation.ir_metrics import score_run

    m = score_run(run, qrels, ignore_identical_ids=True)
    return {"ndcg@10": m["ndcg@10"], "recall@100": m["recall@100"], "mrr@10": m["mrr@10"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", type=Path, required=True, help="a minilm (256-token) index of SciFact")
    parser.add_argument("--data-root", default=os.environ.get("INDUS_DATA", str(REPO.parent / "shared" / "data")))
    parser.add_argument("--work", type=Path, default=REPO / "runs" / "retriever-compress")
    parser.add_argument("--mine", action="store_true", help="also mine negatives for pairs/scifact-train")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    os.environ["INDUS_DATA"] = args.data_root

    import faiss

    from indus.ann import build_quantized_index, index_bytes, search_index
    from indus.data.beir import load_beir
    from indus.evaluation.ir import (
        Bm25Retriever,
        ConvexFusedRetriever,
        DenseRetriever,
        convex_fusion,
        reciprocal_rank_fusion,
    )
    from indus.evaluation.ir_metrics import trec_order
    from indus.retriever.bi_encoder import encode, load_bi_encoder
    from indus.retriever.index import load_index
    from indus.retriever.quantize import export_int8

    started = time.perf_counter()
    load_start = os.getloadavg()
    data = Path(args.data_root) / "ir" / "scifact"
    test, train = load_beir(data, "test"), load_beir(data, "train")
    saved = load_index(args.index)
    if saved.meta.get("model") != "minilm" or saved.meta.get("max_seq_length") != MAX_LENGTH:
        raise SystemExit(f"{args.index}: expected a minilm index at {MAX_LENGTH} tokens, got {saved.meta}")
    if saved.ids != list(test.corpus):
        raise SystemExit(f"{args.index}: its documents are not SciFact's corpus in order")
    ids = saved.ids
    vectors = saved.index.reconstruct_n(0, saved.index.ntotal)  # (N, D) float32, the documents of every row
    model = load_bi_encoder("minilm", max_seq_length=MAX_LENGTH, device="cpu")
    qids, qtexts = list(test.eval_queries), list(test.eval_queries.values())
    q_emb = encode(model, qtexts, batch_size=64)  # (300, D)

    # ------------------------------------------------------------------------------------------ indexes
    flat = faiss.IndexFlatIP(vectors.shape[1])
    flat.add(vectors)
    variants = [
        ("float (IndexFlatIP)", flat, None, 0),
        ("int8 (IndexScalarQuantizer QT_8bit)", build_quantized_index("int8", vectors), "int8", 0),
        ("int8 + float rescoring of the top 100", None, "int8", RESCORE),
        ("binary (IndexBinaryFlat, sign bits)", build_quantized_index("binary", vectors), "binary", 0),
        ("binary + float rescoring of the top 100", None, "binary", RESCORE),
    ]
    variants = [
        (name, index if index is not None else next(v[1] for v in variants if v[2] == kind and v[1]), kind, rescore)
        for name, index, kind, rescore in variants
    ]
    index_rows = []
    for name, index, kind, rescore in variants:
        hits = search_index(index, q_emb, K + 1, quantize=kind, rescore=rescore, vectors=lambda r: vectors[r])
        run = _run(qids, [[(ids[r], s) for r, s in h] for h in hits])
        index_rows.append(
            {
                "index": name,
                "quantize": kind,
                "rescore": rescore,
                **_metrics(run, test.qrels),
                "index_bytes": index_bytes(index),
                "float_vectors_on_disk_bytes": int(vectors.nbytes) if rescore else 0,
            }
        )
        print(json.dumps(index_rows[-1]), flush=True)
    times: dict[str, list[float]] = {r["index"]: [] for r in index_rows}
    for _ in range(ROUNDS):
        for name, index, kind, rescore in variants:
            for q in q_emb[:LATENCY_QUERIES]:
                t0 = time.perf_counter()
                search_index(index, q[None, :], K, quantize=kind, rescore=rescore, vectors=lambda r: vectors[r])
                times[name].append((time.perf_counter() - t0) * 1000.0)
    base = index_rows[0]
    for row in index_rows:
        row["search_ms"] = statistics.median(times[row["index"]])
        row["ndcg_vs_float"] = row["ndcg@10"] / base["ndcg@10"]
        row["memory_reduction"] = base["index_bytes"] / row["index_bytes"]

    # ------------------------------------------------------------------------------- int8 query encoder
    int8_dir = args.work / "minilm-int8"
    export_int8("minilm", int8_dir, max_seq_length=MAX_LENGTH, overwrite=True)
    from indus.models import load_sentence_transformer

    int8 = load_sentence_transformer(str(int8_dir), device="cpu", max_seq_length=MAX_LENGTH)
    q8 = encode(int8, qtexts, batch_size=64)
    encoders = {"float minilm": (model, q_emb), "int8 minilm (torch dynamic quantization)": (int8, q8)}
    enc_rows = []
    for name, (_, emb) in encoders.items():
        hits = search_index(flat, emb, K + 1)
        enc_rows.append(
            {"query encoder": name, **_metrics(_run(qids, [[(ids[r], s) for r, s in h] for h in hits]), test.qrels)}
        )
    enc_times: dict[str, list[float]] = {name: [] for name in encoders}
    for _ in range(ROUNDS):
        for name, (m, _) in encoders.items():
            encode(m, qtexts[:1])  # warm-up
            for q in qtexts[:LATENCY_QUERIES]:
                t0 = time.perf_counter()
                flat.search(encode(m, [q]), K)
                enc_times[name].append((time.perf_counter() - t0) * 1000.0)
    for row in enc_rows:
        row["latency_ms"] = statistics.median(enc_times[row["query encoder"]])
    enc_rows[1]["ndcg_change"] = enc_rows[1]["ndcg@10"] - enc_rows[0]["ndcg@10"]
    enc_rows[1]["latency_ratio_float_over_int8"] = enc_rows[0]["latency_ms"] / enc_rows[1]["latency_ms"]
    enc_rows[1]["cosine_to_float_min"] = float((q8 * q_emb).sum(1).min())
    print(json.dumps(enc_rows), flush=True)

    # ------------------------------------------------------------------------------------------- fusion
    bm25 = Bm25Retriever()
    bm25.index(ids, [test.corpus[d].full_text() for d in ids])
    dense = DenseRetriever(model, batch_size=64)
    dense.doc_ids, dense.faiss_index = ids, flat
    convex = ConvexFusedRetriever(bm25, dense)
    grid = convex.choose_weight(train.eval_queries, train.qrels, K)
    cands = convex.candidates(qtexts, K + 1)
    lexical, dense_hits = bm25.search(qtexts, K + 1), dense.search(qtexts, K + 1)
    fusion_rows = [
        {"system": "BM25", **_metrics(_run(qids, [trec_order(dict(h)) for h in lexical]), test.qrels)},
        {"system": "minilm", **_metrics(_run(qids, dense_hits), test.qrels)},
        {
            "system": "BM25 + minilm, RRF (k = 60)",
            **_metrics(
                _run(qids, [reciprocal_rank_fusion([a, b], depth=K + 1) for a, b in zip(lexical, dense_hits)]),
                test.qrels,
            ),
        },
        {
            "system": f"BM25 + minilm, convex (w = {convex.weight}, chosen on 809 train queries)",
            "weight": convex.weight,
            **_metrics(_run(qids, [convex_fusion(a, b, convex.weight) for a, b in cands]), test.qrels),
        },
    ]
    test_grid = {
        f"{w:.1f}": _metrics(_run(qids, [convex_fusion(a, b, w) for a, b in cands]), test.qrels)["ndcg@10"]
        for w in (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
    }
    print(json.dumps(fusion_rows), flush=True)

    # ------------------------------------------------------------------------------------------- mining
    mining = None
    if args.mine:
        mining = mine_rows(args, vectors)

    load_end = os.getloadavg()
    result = {
        "machine": machine_line(),
        "load_avg_1_5_15_start": [round(v, 2) for v in load_start],
        "load_avg_1_5_15_end": [round(v, 2) for v in load_end],
        "index": str(args.index),
        "index_rows": index_rows,
        "encoder_rows": enc_rows,
        "fusion_rows": fusion_rows,
        "fusion_train_grid_ndcg@10": grid,
        "fusion_test_grid_ndcg@10_for_reference_only": test_grid,
        "mining": mining,
        "wall_s": round(time.perf_counter() - started, 1),
    }
    write(result, args.results)


def mine_rows(args: argparse.Namespace, vectors: np.ndarray) -> list[dict[str, Any]]:
    """Mine pairs/scifact-train against the SciFact corpus, with and without the margin filter."""
    from indus.retriever.index import resolve_collection
    from indus.retriever.mine import MineSettings, mine_negatives, model_identity, scan_corpus

    corpus = resolve_collection(Path(args.data_root) / "ir" / "scifact", "documents")
    cache = args.work / "embedding-cache"
    _seed_cache(cache, model_identity("minilm", MAX_LENGTH), scan_corpus(corpus).digest, vectors)
    rows = []
    for margin in (0.95, None):
        out = args.work / f"scifact-train-mined{'-nofilter' if margin is None else ''}.jsonl.gz"
        s = mine_negatives(
            "minilm",
            ["pairs/scifact-train"],
            corpus,
            out,
            MineSettings(margin=margin, max_seq_length=MAX_LENGTH),
            cache_dir=cache,
            progress=False,
        )
        rows.append(
            {
                k: s[k]
                for k in (
                    "pairs",
                    "anchors",
                    "pairs_written",
                    "rows",
                    "in_range",
                    "removed_by_margin",
                    "removed_fraction",
                    "pairs_without_negative",
                    "skipped_positive",
                    "wall_s",
                )
            }
            | {"margin": margin, "corpus_cache_hit": s["cache"]["corpus_hit"]}
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


def _seed_cache(cache: Path, identity: str, digest: str, vectors: np.ndarray) -> tuple[Path, bool]:
    """Write ``vectors`` as the mining cache entry of (``identity``, ``digest``), as :func:`cached_embeddings` names
    it, unless it exists."""
    import hashlib

    from indus.atomic import atomic_path

    key = hashlib.sha256(f"{identity}\n{digest}".encode()).hexdigest()[:40]
    path = cache / f"{key}.npy"
    if path.is_file():
        return path, True
    cache.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, tmp.open("wb") as fh:
        np.save(fh, np.ascontiguousarray(vectors, dtype=np.float32))
    return path, False


def _f(v: Any, d: int = 4) -> str:
    return "n/a" if v is None else f"{v:.{d}f}" if isinstance(v, float) else str(v)


def write(result: dict[str, Any], results: Path) -> None:
    la, lb = result["load_avg_1_5_15_start"], result["load_avg_1_5_15_end"]
    lines = [
        "# Compressed retrieval, int8 query encoder, fusion and mining: minilm on SciFact test",
        "",
        f"Machine: {result['machine']}",
        "",
        f"Load average (1, 5, 15 min) at start {la}, at end {lb}: other agents shared this 2-core machine, so "
        "compare the latencies within this run (interleaved rounds), not with other runs.",
        "",
        "Command: `flock /tmp/indus-bench.lock .venv/bin/python benchmarks/retriever_compress.py --index "
        "runs/scifact-minilm --mine` (see its docstring for the protocol).",
        "",
        "## Indexes (documents: minilm float vectors; queries: float minilm)",
        "",
        "| index | nDCG@10 | Recall@100 | nDCG vs float | index bytes | memory reduction | float vectors on disk "
        "(bytes) | search ms/query |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in result["index_rows"]:
        lines.append(
            f"| {r['index']} | {_f(r['ndcg@10'])} | {_f(r['recall@100'])} | {100 * r['ndcg_vs_float']:.1f}% "
            f"| {r['index_bytes']:,} | {r['memory_reduction']:.1f}x | {r['float_vectors_on_disk_bytes']:,} | "
            f"{_f(r['search_ms'], 3)} |"
        )
    lines += [
        "",
        f"Search latency: median over {ROUNDS} interleaved rounds x {LATENCY_QUERIES} test queries (one "
        "embedding searched at a time).",
        "",
        "## Query encoder (documents: float index)",
        "",
        "| query encoder | nDCG@10 | Recall@100 | latency ms/query (encode + search) |",
        "|---|---|---|---|",
    ]
    for r in result["encoder_rows"]:
        lines.append(
            f"| {r['query encoder']} | {_f(r['ndcg@10'])} | {_f(r['recall@100'])} | {_f(r['latency_ms'], 2)} |"
        )
    e = result["encoder_rows"][1]
    lines += [
        "",
        f"int8 vs float: nDCG@10 change {e['ndcg_change']:+.4f}, latency ratio (float / int8) "
        f"{e['latency_ratio_float_over_int8']:.2f}x (median over {ROUNDS} interleaved rounds x "
        f"{LATENCY_QUERIES} queries), lowest cosine between the two encoders' query embeddings "
        f"{e['cosine_to_float_min']:.4f}.",
        "",
        "## Fusion with BM25",
        "",
        "| system | nDCG@10 | Recall@100 |",
        "|---|---|---|",
    ]
    for r in result["fusion_rows"]:
        lines.append(f"| {r['system']} | {_f(r['ndcg@10'])} | {_f(r['recall@100'])} |")
    lines += [
        "",
        "Convex weight grid, nDCG@10 on the train queries (what chose w): "
        + ", ".join(f"{w}: {v:.4f}" for w, v in result["fusion_train_grid_ndcg@10"].items()),
        "",
        "The same grid on test, for reference only (not used to choose): "
        + ", ".join(f"{w}: {v:.4f}" for w, v in result["fusion_test_grid_ndcg@10_for_reference_only"].items()),
    ]
    if result.get("mining"):
        lines += [
            "",
            "## Mining pairs/scifact-train against the SciFact corpus (minilm, dense, top 50, ranks 10-50)",
            "",
            "| margin filter | pairs | pairs written | candidates in ranks 10-50 | removed by the filter | "
            "pairs left without a negative | wall (s) |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in result["mining"]:
            lines.append(
                f"| {r['margin'] if r['margin'] is not None else 'off'} | {r['pairs']} | "
                f"{r['pairs_written']} | {r['in_range']} | {r['removed_by_margin']} "
                f"({100 * r['removed_fraction']:.1f}%) | {r['pairs_without_negative']} | {r['wall_s']} |"
            )
    lines += ["", f"Wall time of the whole run: {result['wall_s']} s."]
    results.mkdir(parents=True, exist_ok=True)
    atomic_write_text(results / "retriever_compress.md", "\n".join(lines) + "\n")
    atomic_write_json(results / "retriever_compress.json", result)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
