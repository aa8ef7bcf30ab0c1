"""Search quality through the Searcher (what the studio app serves) against ``indus eval ir`` on SciFact test.

For each mode the judged test queries go through :meth:`indus.retriever.search.Searcher.search_many` on an index
built by ``indus retriever index --model minilm``, with BEIR's protocol applied as ``indus eval ir`` applies it
(top ``k + 1`` = 101, a document whose id equals the query id dropped, the top 100 kept, pytrec_eval scoring). The
same metrics then come from the evaluator behind ``indus eval ir`` (:func:`indus.evaluation.evaluate`) for the
matching model: ``bm25`` for bm25, ``minilm`` for dense, ``bm25+minilm`` for hybrid (RRF, k = 60). The table shows
both and their largest absolute difference; the two paths share the BM25 scorer, the encoder and the fusion
function but not the index (the Searcher reads a saved index, the evaluator builds its own in memory).

Run (about 3 corpus encodings with minilm: 15-30 min on 2 shared cores)::

    flock /tmp/indus-bench.lock .venv/bin/python benchmarks/search_quality.py [--index runs/scifact-minilm]

Writes ``benchmarks/results/search_quality.md`` and ``search_quality.json``; ``--from-json`` re-renders the markdown.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
from benchmarks.machine import machine_line  # noqa: E402
from indus.atomic import atomic_write_json, atomic_write_text  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
MODES = ("bm25", "dense", "hybrid")
METRICS = ("ndcg@10", "recall@10", "recall@100", "mrr@10")


def searcher_run(searcher, queries: dict[str, str], mode: str, k: int) -> dict[str, dict[str, float]]:
    """The run of ``mode`` over ``queries`` under BEIR's protocol (``k + 1`` retrieved, identical ids dropped)."""
    qids = list(queries)
    hits = searcher.search_many([queries[q] for q in qids], k=k + 1, mode=mode)
    return {q: dict([(h.id, h.score) for h in hs if h.id != q][:k]) for q, hs in zip(qids, hits, strict=True)}


def read_trec(path: Path) -> dict[str, list[str]]:
    run: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        qid, _, doc_id, *_ = line.split()
        run.setdefault(qid, []).append(doc_id)
    return run


def measure(args: argparse.Namespace) -> dict:
    from indus.data.beir import load_beir
    from indus.data.registry import resolve_dataset
    from indus.evaluation import evaluate
    from indus.evaluation.ir_metrics import score_run, trec_order
    from indus.retriever.index import build_index
    from indus.retriever.search import Searcher

    started = time.perf_counter()
    data = resolve_dataset(args.data, kind="ir")
    beir = load_beir(data, args.split)
    index = Path(args.index)
    modes = [m for m in MODES if m in args.modes.split(",")]
    if not (index / "meta.json").is_file():
        build_index(args.model if modes != ["bm25"] else "bm25", data, index, progress=False)
    searcher = Searcher.open(index)
    queries = beir.eval_queries
    rows = []
    runs_dir = Path(args.runs)
    runs_dir.mkdir(parents=True, exist_ok=True)
    for mode in modes:
        model = {"bm25": "bm25", "dense": args.model, "hybrid": f"bm25+{args.model}"}[mode]
        t0 = time.perf_counter()
        run = searcher_run(searcher, queries, mode, args.k)
        search_s = time.perf_counter() - t0
        ours = score_run(run, beir.qrels, ignore_identical_ids=True)
        trec = runs_dir / f"eval-{mode}.trec"
        evaluated = evaluate(
            "ir", model, data, split=args.split, k=args.k, progress=False, latency_queries=0, run_path=trec
        )
        theirs = read_trec(trec)
        same_top10 = sum(1 for q in queries if [d for d, _ in trec_order(run[q])][:10] == theirs.get(q, [])[:10])
        rows.append(
            {
                "mode": mode,
                "eval_model": evaluated["model"],
                **{f"searcher_{m}": ours[m] for m in METRICS},
                **{f"eval_{m}": evaluated[m] for m in METRICS},
                "max_abs_diff": max(abs(ours[m] - evaluated[m]) for m in METRICS),
                "queries_same_top10": same_top10,
                "queries": len(queries),
                "searcher_queries_per_s": len(queries) / search_s,
                "eval_wall_s": evaluated["wall_s"],
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return {
        "machine": machine_line(),
        "command": (f"INDUS_DATA={os.environ['INDUS_DATA']} " if os.environ.get("INDUS_DATA") else "")
        + ("flock /tmp/indus-bench.lock " if args.under_lock else "")
        + ".venv/bin/python benchmarks/search_quality.py "
        + " ".join(sys.argv[1:]),
        "data": str(data),
        "split": args.split,
        "k": args.k,
        "index": str(index),
        "index_meta": searcher.meta,
        "fusion_k": searcher.fusion_k,
        "fusion_depth": searcher.fusion_depth,
        "rows": rows,
        "wall_s": time.perf_counter() - started,
        "load": "shared machine: other agents' jobs ran beside this one (timings are indicative only)",
    }


def latency(args: argparse.Namespace) -> dict:
    """In-process latency of one query per mode (the Searcher alone, no HTTP), the modes interleaved query by query
    so that a change in machine load hits all of them alike; ``k`` = 10, as the studio's search page asks."""
    import statistics

    from indus.data.beir import load_beir
    from indus.data.registry import resolve_dataset
    from indus.retriever.search import Searcher

    beir = load_beir(resolve_dataset(args.data, kind="ir"), args.split)
    searcher = Searcher.open(args.index)
    queries = list(beir.eval_queries.values())[: args.latency]
    times: dict[str, list[float]] = {mode: [] for mode in searcher.modes}
    for mode in searcher.modes:  # warm-up: first calls pay for lazy imports and allocations
        searcher.search(queries[0], 10, mode)
    for query in queries:
        for mode in searcher.modes:
            t0 = time.perf_counter()
            searcher.search(query, 10, mode)
            times[mode].append((time.perf_counter() - t0) * 1000.0)
    return {
        "machine": machine_line(),
        "queries": len(queries),
        "rows": [
            {
                "mode": mode,
                "p50_ms": statistics.median(ts),
                "p95_ms": float(sorted(ts)[max(0, round(0.95 * len(ts)) - 1)]),
                "queries_per_s": len(ts) / (sum(ts) / 1000.0),
            }
            for mode, ts in times.items()
        ],
    }


def render(result: dict) -> str:
    meta, rows = result["index_meta"], result["rows"]
    model = Path(meta["model"]).name if meta["model"] and "/" in meta["model"] else meta["model"] or "bm25"
    lines = [
        "# Search quality through the Searcher vs `indus eval ir` (SciFact test)",
        "",
        f"Machine: {result['machine']}",
        "",
        f"Command: `{result['command']}`",
        "",
        f"Total wall time {result['wall_s'] / 60:.1f} min; {result['load']}.",
        "",
        f"Index: `indus retriever index --model {model}` ({meta['count']} documents"
        + (
            f", {meta['index_type']} inner product, dim {meta['dim']}, and its stored BM25). "
            if meta["dense"]
            else "). "
        )
        + f"{rows[0]['queries']} judged queries, top {result['k']} "
        f"(BEIR protocol: {result['k']} + 1 retrieved, identical ids dropped). "
        + (
            f"Hybrid = RRF with k = {result['fusion_k']} over each system's top max({result['fusion_depth']}, k + 1); "
            f"the evaluator fuses `{rows[-1]['eval_model']}` over each system's top k + 1."
            if rows[-1]["mode"] == "hybrid"
            else ""
        ),
        "",
        "| mode | `indus eval ir --model` | nDCG@10 Searcher | nDCG@10 eval ir | Recall@100 Searcher | "
        "Recall@100 eval ir | MRR@10 Searcher | MRR@10 eval ir | max abs diff (4 metrics) | "
        "queries with the same top 10 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['mode']} | {r['eval_model']} | {r['searcher_ndcg@10']:.6f} | {r['eval_ndcg@10']:.6f} | "
            f"{r['searcher_recall@100']:.6f} | {r['eval_recall@100']:.6f} | {r['searcher_mrr@10']:.6f} | "
            f"{r['eval_mrr@10']:.6f} | {r['max_abs_diff']:.1e} | {r['queries_same_top10']} / {r['queries']} |"
        )
    if "latency" in result:
        lat = result["latency"]
        lines += [
            "",
            f"## In-process latency of one search (k = 10), {lat['queries']} test queries, the modes interleaved",
            "",
            f"Machine: {lat['machine']}. The Searcher alone (query encoding, BM25, faiss, fusion; no HTTP); "
            "`benchmarks/studio_load.py` measures the running app. "
            f"Command: `{lat['command']}`.",
            "",
            "| mode | p50 ms | p95 ms | queries/s (one client, sequential) |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {r['mode']} | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} | {r['queries_per_s']:.0f} |" for r in lat["rows"]
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="scifact")
    parser.add_argument("--split", default="test")
    parser.add_argument("--index", default="runs/scifact-minilm", help="built with minilm when missing")
    parser.add_argument("--runs", default="runs/search-quality", help="where the evaluator's TREC runs go")
    parser.add_argument("--model", default="minilm", help="the dense model (of the index and of eval ir)")
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated subset of bm25,dense,hybrid")
    parser.add_argument("--results", default=str(RESULTS), help="folder for search_quality.md / .json")
    parser.add_argument("--under-lock", action="store_true", help="say in the results that flock held the lock")
    parser.add_argument("--from-json", action="store_true", help="re-render the markdown from the saved JSON")
    parser.add_argument(
        "--latency",
        type=int,
        default=0,
        metavar="N",
        help="only time N single searches per mode and add them to the saved JSON",
    )
    args = parser.parse_args()
    out = Path(args.results) / "search_quality.json"
    if args.latency:
        result = json.loads(out.read_text())
        result["latency"] = latency(args)
        result["latency"]["command"] = ("flock /tmp/indus-bench.lock " if args.under_lock else "") + (
            ".venv/bin/python benchmarks/search_quality.py " + " ".join(sys.argv[1:])
        )
    else:
        result = json.loads(out.read_text()) if args.from_json else measure(args)
    if not args.from_json:
        atomic_write_json(out, result)
    atomic_write_text(out.with_suffix(".md"), render(result))
    print(render(result))


if __name__ == "__main__":
    main()
