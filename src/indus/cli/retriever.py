"""``indus retriever``: contrastive bi-encoders, distillation, index and search."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from indus._extras import require_extra
from indus.cli.common import console, print_table
from indus.errors import IndusError

app = typer.Typer(
    help="Train and distill sentence-embedding retrievers; build an index and search it.", no_args_is_help=True
)

CONFIG_HELP = "YAML config (configs/retriever/*.yaml); options given here win over it."
RESUME_HELP = (
    "Continue from the newest complete checkpoint in OUT/checkpoints (from the start if there is none), "
    "also a run its time budget stopped; the settings that change the loss curve must match."
)
OVERWRITE_HELP = "Start again in a non-empty OUT (its earlier run's checkpoints go; files indus did not write stay)."
SET_HELP = "Override a setting: key=value (repeatable), e.g. --set batch_size=32."
PAIRS_HELP = (
    "Pair files or folders (JSON lines: anchor, positive[, source, negative]) or data-root names; "
    "--pairs A B C or repeat the option."
)


@app.callback()
def retriever() -> None:
    """Train and distill sentence-embedding retrievers; build an index and search it."""


def _config(cls: type, config: Path | None, sets: list[str] | None, **given: Any) -> Any:
    from indus.config import build_config, read_yaml

    data = read_yaml(config) if config is not None else {}
    data.update({k: v for k, v in given.items() if v not in (None, [])})
    return build_config(cls, data, overrides=sets, where=str(config) if config else "config")


def _summary_table(summary: dict[str, Any], out: Path, keys: tuple[str, ...]) -> None:
    print_table([{k: summary.get(k) for k in keys}], title=f"{summary.get('task')} -> {out}")


@app.command()
def train(
    out: Path = typer.Option(..., "--out", help="Run folder; it loads with SentenceTransformer(DIR)."),
    model: str | None = typer.Option(
        None,
        "--model",
        help="minilm | a model folder | random:<preset>[@<tokenizer>] | layers:N@MODEL | minilm-layers:N",
    ),
    pairs: list[str] | None = typer.Option(None, "--pairs", help=PAIRS_HELP),
    more_pairs: list[str] | None = typer.Argument(None, help="More pair files (after --pairs).", show_default=False),
    config: Path | None = typer.Option(None, "--config", help=CONFIG_HELP),
    sets: list[str] | None = typer.Option(None, "--set", help=SET_HELP),
    resume: bool = typer.Option(False, "--resume", help=RESUME_HELP),
    overwrite: bool = typer.Option(False, "--overwrite", help=OVERWRITE_HELP),
) -> None:
    """Train a bi-encoder with the GTE contrastive loss, one source per batch."""
    require_extra("train", what="indus retriever train")
    from indus.outdir import check_flags
    from indus.retriever.train import RetrieverTrainConfig, train_retriever

    check_flags(resume, overwrite)
    cfg = _config(RetrieverTrainConfig, config, sets, model=model, pairs=(pairs or []) + (more_pairs or []))
    summary = train_retriever(cfg, out, resume=resume, overwrite=overwrite)
    _summary_table(
        summary,
        out,
        ("steps", "pairs_seen", "epochs_done", "final_loss", "negatives_per_query", "wall_s", "stop_reason"),
    )


@app.command()
def distill(
    out: Path = typer.Option(..., "--out", help="Run folder of the student."),
    teacher: str | None = typer.Option(
        None, "--teacher", help="Teacher retriever: minilm | a folder | any model spec."
    ),
    student: str | None = typer.Option(
        None, "--student", help="A folder | random:<preset>[@<tokenizer>] | layers:N@MODEL | minilm-layers:N"
    ),
    pairs: list[str] | None = typer.Option(None, "--pairs", help=PAIRS_HELP),
    more_pairs: list[str] | None = typer.Argument(None, help="More pair files (after --pairs).", show_default=False),
    query_only: bool = typer.Option(
        False,
        "--query-only",
        help="Distil a query encoder: the student embeds queries into the teacher's space and the documents keep "
        "the teacher's vectors (index with --model TEACHER --query-model OUT).",
    ),
    config: Path | None = typer.Option(None, "--config", help=CONFIG_HELP),
    sets: list[str] | None = typer.Option(None, "--set", help=SET_HELP),
    resume: bool = typer.Option(False, "--resume", help=RESUME_HELP),
    overwrite: bool = typer.Option(False, "--overwrite", help=OVERWRITE_HELP),
) -> None:
    """Distil a retriever into a smaller student with DistillCSE (tau_KD = 4) plus the contrastive loss, or (with
    --query-only) into a query encoder for the teacher's document vectors."""
    require_extra("train", what="indus retriever distill")
    from indus.outdir import check_flags
    from indus.retriever.distill import RetrieverDistillConfig, distill_retriever

    check_flags(resume, overwrite)
    cfg = _config(
        RetrieverDistillConfig,
        config,
        sets,
        teacher=teacher,
        student=student,
        pairs=(pairs or []) + (more_pairs or []),
        query_only=True if query_only else None,  # unset: the config's (or the default) stands
    )
    summary = distill_retriever(cfg, out, resume=resume, overwrite=overwrite)
    _summary_table(
        summary,
        out,
        (
            "steps",
            "pairs_seen",
            "student_layers",
            "final_loss",
            "negatives_per_query",
            "teacher_s",
            "wall_s",
            "stop_reason",
        ),
    )


@app.command()
def index(
    model: str = typer.Option(
        ...,
        "--model",
        help="The bi-encoder: minilm | a folder | layers:N@MODEL | "
        "minilm-layers:N | random:<preset>; or bm25 for a BM25-only "
        "index (no dense part). Every index also holds BM25 and "
        "the documents' texts.",
    ),
    corpus: str = typer.Option(
        ...,
        "--corpus",
        help="BEIR folder or corpus.jsonl, JSONL with id/text, or text lines (id = line number); or a data-root name.",
    ),
    out: Path = typer.Option(..., "--out", help="Index directory (a new or empty one, unless --overwrite)."),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Write into a non-empty OUT (index files replaced, other files kept)."
    ),
    approximate: bool = typer.Option(False, "--approximate", help="HNSW instead of exact inner-product search."),
    index_type: str | None = typer.Option(
        None,
        "--index-type",
        help="flat | hnsw | ivfpq | auto (by collection size; see docs/scale.md); overrides --approximate.",
    ),
    batch_size: int = typer.Option(64, "--batch-size", help="Encoding batch size."),
    max_seq_length: int | None = typer.Option(None, "--max-seq-length", help="Truncate documents to this length."),
    hnsw_m: int = typer.Option(32, "--hnsw-m", help="HNSW links per node."),
    ef_search: int = typer.Option(128, "--ef-search", help="HNSW search breadth (default stored in the index)."),
    quantize: str | None = typer.Option(
        None,
        "--quantize",
        help="int8 (faiss scalar quantizer, 4x smaller) | "
        "binary (sign bits, Hamming distance, 32x smaller): an exhaustive index over "
        "compressed vectors.",
        show_default=False,
    ),
    rescore: int = typer.Option(
        0,
        "--rescore",
        help="With --quantize: re-rank the N best compressed candidates "
        "by their float vectors (kept on disk, memory-mapped).",
    ),
    query_model: str | None = typer.Option(
        None,
        "--query-model",
        help="Encode search queries with this model instead of --model: a query encoder distilled into --model's "
        "space (indus retriever distill --query-only).",
        show_default=False,
    ),
) -> None:
    """Store a collection's texts, a BM25 index and (unless --model bm25) its embeddings in a faiss index.

    Under ``torchrun`` every process encodes its shard of the corpus; the main process writes the one index.
    """
    require_extra("eval", what="indus retriever index")
    from indus.distributed import sharded_encoding
    from indus.retriever.index import build_index

    with sharded_encoding() as (rank, _):
        meta = build_index(
            model,
            corpus,
            out,
            approximate=approximate,
            batch_size=batch_size,
            max_seq_length=max_seq_length,
            hnsw_m=hnsw_m,
            ef_search=ef_search,
            overwrite=overwrite,
            index_type=index_type,
            quantize=quantize,
            rescore=rescore,
            progress=rank == 0,
            query_model=query_model,
        )
    if rank != 0:
        return
    print_table(
        [
            {
                k: meta.get(k)
                for k in (
                    "count",
                    "model",
                    "query_model",
                    "dim",
                    "index_type",
                    "quantize",
                    "index_bytes",
                    "bm25_s",
                    "encode_s",
                    "docs_per_s",
                )
            }
        ],
        title=f"index -> {out}",
    )


@app.command()
def mine(
    model: str = typer.Option(
        ...,
        "--model",
        help="Dense model: ranks candidates (dense, hybrid) and scores them "
        "for the margin filter: minilm | a folder | layers:N@MODEL.",
    ),
    pairs: list[str] | None = typer.Option(None, "--pairs", help=PAIRS_HELP),
    more_pairs: list[str] | None = typer.Argument(None, help="More pair files (after --pairs).", show_default=False),
    corpus: str = typer.Option(
        ...,
        "--corpus",
        help="Where negatives come from: BEIR folder or corpus.jsonl, JSONL "
        "with id/text, text lines, or a data-root name.",
    ),
    out: Path = typer.Option(
        ...,
        "--out",
        help="Mined pairs (*.jsonl.gz): anchor, positive, negative, source; a *.summary.json goes beside it.",
    ),
    top_k: int = typer.Option(50, "--top-k", help="Candidates per anchor after skipping its positives."),
    rank_range: str = typer.Option("10-50", "--range", help="Candidate ranks the negatives are drawn from."),
    margin: float = typer.Option(
        0.95,
        "--margin",
        help="Drop candidates scoring above MARGIN x the positive's score (NV-Retriever's relative margin).",
    ),
    no_filter: bool = typer.Option(False, "--no-filter", help="Keep every candidate (no margin filter)."),
    negatives: int = typer.Option(1, "--negatives", help="Negatives per pair (one row each)."),
    mode: str = typer.Option("dense", "--mode", help="dense | bm25 | hybrid (RRF): what ranks the candidates."),
    batch_size: int = typer.Option(64, "--batch-size", help="Encoding batch size."),
    max_seq_length: int | None = typer.Option(None, "--max-seq-length", help="Truncate texts to this length."),
    cache: Path | None = typer.Option(
        None, "--cache", help="Embedding cache folder (default $INDUS_CACHE/embeddings or ~/.cache/indus/embeddings)."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the negative sampling."),
) -> None:
    """Mine hard negatives for pairs from a corpus, with the relative-margin false-negative filter.

    Under ``torchrun`` every process encodes its shard of the corpus (on a cache miss); the main process mines.
    """
    require_extra("eval", what="indus retriever mine")
    from indus.distributed import sharded_encoding
    from indus.retriever.mine import MineSettings, mine_negatives, parse_range, summary_path

    settings = MineSettings(
        top_k=top_k,
        rank_range=parse_range(rank_range),
        margin=None if no_filter else margin,
        negatives=negatives,
        mode=mode,
        batch_size=batch_size,
        max_seq_length=max_seq_length,
        seed=seed,
    )
    with sharded_encoding() as (rank, _):
        summary = mine_negatives(
            model, (pairs or []) + (more_pairs or []), corpus, out, settings, cache_dir=cache, progress=rank == 0
        )
    if summary is None:  # a process other than the main one: its shard of the corpus is encoded
        return
    print_table(
        [
            {
                k: summary[k]
                for k in (
                    "pairs",
                    "pairs_written",
                    "rows",
                    "in_range",
                    "removed_by_margin",
                    "pairs_without_negative",
                    "wall_s",
                )
            }
        ],
        title=f"mine -> {out}",
    )
    console.print(
        f"the margin filter removed {summary['removed_by_margin']} of {summary['in_range']} candidates "
        f"in ranks {rank_range}; summary: {summary_path(out)}"
    )


def _mode_from_model(model: str | None, mode: str | None) -> tuple[str | None, str | None]:
    """``--model A[+B]`` of ``indus retriever search``: which mode and which dense query encoder it names.

    The index holds one embedding space, so a fused spec has at most one dense system: ``bm25`` -> bm25,
    ``X`` -> dense with encoder X, ``bm25+X`` (either order) -> hybrid with encoder X.
    """
    from indus.evaluation.ir import split_systems

    if model is None:
        return mode, None
    systems = split_systems(model)
    dense = [s for s in systems if s.lower() != "bm25"]
    if len(dense) > 1 or len(systems) > 2 or len(systems) != len(set(s.lower() for s in systems)):
        raise IndusError(
            f"--model {model}: an index fuses its BM25 with its one dense model at most (bm25, MODEL or bm25+MODEL)"
        )
    implied = "hybrid" if len(systems) == 2 else "dense" if dense else "bm25"
    if mode is not None and mode != implied:
        raise IndusError(f"--model {model} searches in {implied} mode, but --mode says {mode}")
    return implied, (dense[0] if dense else None)


def _print_hits(searcher: Any, query: str, hits: list[Any], mode: str, took_ms: float) -> None:
    from rich.text import Text

    found = f"{len(hits)} result{'' if len(hits) == 1 else 's'}"
    console.print(Text.assemble((found, "bold"), f" for {query!r} ({mode}, {took_ms:.1f} ms, {searcher.path})"))
    for hit in hits:
        line = Text.assemble(
            (f"{hit.rank:>3}. ", "bold"),
            (hit.title or hit.id, "bold cyan"),
            (f"  [{hit.id}]  score {hit.score:.4f}", "dim"),
        )
        console.print(line)
        snippet = Text("     ")
        for piece, is_term in searcher.snippet(hit.text, query):
            snippet.append(piece, style="bold yellow" if is_term else None)
        console.print(snippet)


@app.command()
def search(
    index_dir: Path = typer.Option(..., "--index", help="Index directory from `indus retriever index`."),
    query: str | None = typer.Option(None, "--query", help="One query; prints the top k with snippets."),
    queries: str | None = typer.Option(
        None, "--queries", help="Batch mode: BEIR folder or queries.jsonl, JSONL with id/text, or lines."
    ),
    k: int = typer.Option(10, "-k", "--top-k", help="Documents per query."),
    mode: str | None = typer.Option(
        None,
        "--mode",
        help="bm25 | dense | hybrid (RRF of both); default hybrid when the index has both parts.",
        show_default=False,
    ),
    out: Path | None = typer.Option(None, "--out", help="Batch mode output: a TREC run, or JSONL for *.jsonl."),
    fmt: str | None = typer.Option(None, "--format", help="trec | jsonl (default from the --out suffix)."),
    model: str | None = typer.Option(
        None,
        "--model",
        help="bm25 | MODEL (dense, overrides the index's query encoder) | bm25+MODEL (hybrid); sets the mode.",
    ),
    fusion_k: int = typer.Option(60, "--fusion-k", help="Reciprocal-rank-fusion constant (hybrid)."),
    fusion: str = typer.Option(
        "rrf",
        "--fusion",
        help="Hybrid fusion: rrf | convex (w * norm(bm25) + (1 - w) * norm(dense); needs --fusion-weight).",
    ),
    fusion_weight: float | None = typer.Option(
        None,
        "--fusion-weight",
        help="BM25's weight w for --fusion convex (choose it with `indus eval ir --fusion convex` on dev/train qrels).",
        show_default=False,
    ),
    rescore: int | None = typer.Option(
        None,
        "--rescore",
        help="Quantized index: re-rank this many candidates exactly (default: the index's setting; 0 = off).",
        show_default=False,
    ),
    ef_search: int | None = typer.Option(None, "--ef-search", help="HNSW search breadth."),
) -> None:
    """Search an index by BM25, dense or hybrid retrieval, with one query or a file of queries."""
    require_extra("eval", what="indus retriever search")
    import time

    from indus.retriever.index import read_texts, resolve_collection, write_run
    from indus.retriever.search import Searcher

    if (query is None) == (queries is None):
        raise IndusError("give exactly one of --query TEXT or --queries FILE")
    if queries is not None and out is None:
        raise IndusError("--queries needs --out RUN (a TREC run file, or .jsonl)")
    mode, encoder = _mode_from_model(model, mode)
    searcher = Searcher.open(
        index_dir,
        model=encoder,
        fusion_k=fusion_k,
        ef_search=ef_search,
        load_model=mode != "bm25",
        fusion=fusion,
        fusion_weight=fusion_weight,
        rescore=rescore,
    )  # a BM25 search needs no encoder
    if query is not None:
        mode = searcher.validate(query, k, mode)
        start = time.perf_counter()
        hits = searcher.search(query, k, mode)
        _print_hits(searcher, query, hits, mode, (time.perf_counter() - start) * 1000)
        return
    items = read_texts(resolve_collection(queries, "queries"), kind="queries")
    hits = searcher.search_many([text for _, text in items], k, mode)
    write_run(
        [(qid, text, [(h.id, h.score) for h in hs]) for (qid, text), hs in zip(items, hits)],
        out,
        fmt,
        tag=mode or searcher.default_mode,
    )
    console.print(f"wrote {out} ({len(items)} queries, top {k}, {mode or searcher.default_mode})")


@app.command()
def export(
    index_dir: Path | None = typer.Option(
        None,
        "--index",
        help="Index directory from `indus retriever index` (opensearch, elasticsearch).",
        show_default=False,
    ),
    out: Path = typer.Option(
        ...,
        "--out",
        help="The bulk file (NDJSON; the mapping goes to <stem>.mapping.json), or the model folder for --format int8.",
    ),
    fmt: str = typer.Option(
        "opensearch",
        "--format",
        help="opensearch (knn_vector) | elasticsearch (dense_vector) | int8 (a query encoder with int8 Linear layers).",
    ),
    model: str | None = typer.Option(
        None,
        "--model",
        help="--format int8: the model to quantize (minilm | a folder | layers:N@MODEL).",
        show_default=False,
    ),
    name: str | None = typer.Option(
        None, "--name", help="The engine's index name (default: the index folder's).", show_default=False
    ),
    space: str | None = typer.Option(
        None,
        "--space",
        help="Vector similarity: cosinesimil | innerproduct (opensearch), cosine | dot_product (elasticsearch).",
        show_default=False,
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="--format int8: replace a non-empty OUT."),
) -> None:
    """Write an index as an OpenSearch / Elasticsearch bulk file plus mapping, or a model as an int8 query encoder."""
    require_extra("eval", what="indus retriever export")
    if fmt == "int8":
        from indus.retriever.quantize import export_int8

        if model is None or index_dir is not None:
            raise IndusError("--format int8 exports a model: give --model M (and no --index)")
        info = export_int8(model, out, overwrite=overwrite)
        console.print(
            f"wrote {out}: {model} with int8 Linear layers ({info['method']}); probe cosine to the float "
            f"model >= {info['probe_cosine_min']:.4f}; evaluate it with `indus eval ir --model {out}`"
        )
        return
    from indus.retriever.export import export_index

    if index_dir is None:
        raise IndusError(f"--format {fmt} exports an index: give --index DIR")
    info = export_index(index_dir, out, fmt=fmt, name=name, space=space)
    console.print(
        f"wrote {info['bulk']} ({info['documents']} documents, dim {info['dim']}) and {info['mapping']} "
        f"(index {info['name']!r})"
    )
