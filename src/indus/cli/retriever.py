"""``indus retriever``: contrastive bi-encoders, distillation, index and search."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from indus.cli.common import console, print_table
from indus.errors import IndusError

app = typer.Typer(help="Train and distill sentence-embedding retrievers; build an index and search it.",
                  no_args_is_help=True)

CONFIG_HELP = "YAML config (configs/retriever-*.yaml); options given here win over it."
RESUME_HELP = "Continue from the newest checkpoint in OUT/checkpoints (from the start if there is none)."
SET_HELP = "Override a setting: key=value (repeatable), e.g. --set batch_size=32."
PAIRS_HELP = "Pair files or folders (JSON lines: anchor, positive[, source, negative]) or data-root names; " \
             "--pairs A B C or repeat the option."


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
    model: str | None = typer.Option(None, "--model",
                                     help="minilm | a model folder | random:<preset>[@<tokenizer>] | layers:N@MODEL | "
                                          "minilm-layers:N"),
    pairs: list[str] | None = typer.Option(None, "--pairs", help=PAIRS_HELP),
    more_pairs: list[str] | None = typer.Argument(None, help="More pair files (after --pairs).", show_default=False),
    config: Path | None = typer.Option(None, "--config", help=CONFIG_HELP),
    sets: list[str] | None = typer.Option(None, "--set", help=SET_HELP),
    resume: bool = typer.Option(False, "--resume", help=RESUME_HELP),
    overwrite: bool = typer.Option(False, "--overwrite", help="Allow a non-empty OUT."),
) -> None:
    """Train a bi-encoder with the GTE contrastive loss, one source per batch."""
    from indus.retriever.train import RetrieverTrainConfig, train_retriever

    cfg = _config(RetrieverTrainConfig, config, sets, model=model, pairs=(pairs or []) + (more_pairs or []))
    summary = train_retriever(cfg, out, resume=resume, overwrite=overwrite)
    _summary_table(summary, out, ("steps", "pairs_seen", "epochs_done", "final_loss", "wall_s", "stop_reason"))


@app.command()
def distill(
    out: Path = typer.Option(..., "--out", help="Run folder of the student."),
    teacher: str | None = typer.Option(None, "--teacher",
                                       help="Teacher retriever: minilm | a folder | any model spec."),
    student: str | None = typer.Option(None, "--student",
                                       help="A folder | random:<preset>[@<tokenizer>] | layers:N@MODEL | "
                                            "minilm-layers:N"),
    pairs: list[str] | None = typer.Option(None, "--pairs", help=PAIRS_HELP),
    more_pairs: list[str] | None = typer.Argument(None, help="More pair files (after --pairs).", show_default=False),
    config: Path | None = typer.Option(None, "--config", help=CONFIG_HELP),
    sets: list[str] | None = typer.Option(None, "--set", help=SET_HELP),
    resume: bool = typer.Option(False, "--resume", help=RESUME_HELP),
    overwrite: bool = typer.Option(False, "--overwrite", help="Allow a non-empty OUT."),
) -> None:
    """Distil a retriever into a smaller student with DistillCSE (tau_KD = 4) plus the contrastive loss."""
    from indus.retriever.distill import RetrieverDistillConfig, distill_retriever

    cfg = _config(RetrieverDistillConfig, config, sets, teacher=teacher, student=student,
                  pairs=(pairs or []) + (more_pairs or []))
    summary = distill_retriever(cfg, out, resume=resume, overwrite=overwrite)
    _summary_table(summary, out, ("steps", "pairs_seen", "student_layers", "final_loss", "teacher_s", "wall_s",
                                  "stop_reason"))


@app.command()
def index(
    model: str = typer.Option(..., "--model", help="The bi-encoder: minilm | a folder | layers:N@MODEL | "
                                                         "minilm-layers:N | random:<preset>."),
    corpus: str = typer.Option(..., "--corpus", help="BEIR folder or corpus.jsonl, JSONL with id/text, or text "
                                                     "lines (id = line number); or a data-root name."),
    out: Path = typer.Option(..., "--out", help="Index directory (written atomically)."),
    approximate: bool = typer.Option(False, "--approximate", help="HNSW instead of exact inner-product search."),
    index_type: str | None = typer.Option(None, "--index-type", help="flat | hnsw | ivfpq | auto (by collection "
                                          "size, docs/scale.md); overrides --approximate."),
    batch_size: int = typer.Option(64, "--batch-size", help="Encoding batch size."),
    max_seq_length: int | None = typer.Option(None, "--max-seq-length", help="Truncate documents to this length."),
    hnsw_m: int = typer.Option(32, "--hnsw-m", help="HNSW links per node."),
    ef_search: int = typer.Option(128, "--ef-search", help="HNSW search breadth (default stored in the index)."),
) -> None:
    """Embed a collection and store it in a faiss index with its document ids."""
    from indus.retriever.index import build_index

    meta = build_index(model, corpus, out, approximate=approximate, batch_size=batch_size,
                       max_seq_length=max_seq_length, hnsw_m=hnsw_m, ef_search=ef_search, index_type=index_type)
    print_table([{k: meta[k] for k in ("count", "dim", "index_type", "encode_s", "docs_per_s")}],
                title=f"index -> {out}")


@app.command()
def search(
    index_dir: Path = typer.Option(..., "--index", help="Index directory from `indus retriever index`."),
    query: str | None = typer.Option(None, "--query", help="One query; prints the top k."),
    queries: str | None = typer.Option(None, "--queries",
                                       help="Batch mode: BEIR folder or queries.jsonl, JSONL with id/text, or lines."),
    k: int = typer.Option(10, "-k", "--top-k", help="Documents per query."),
    out: Path | None = typer.Option(None, "--out", help="Batch mode output: a TREC run, or JSONL for *.jsonl."),
    fmt: str | None = typer.Option(None, "--format", help="trec | jsonl (default from the --out suffix)."),
    model: str | None = typer.Option(None, "--model", help="Override the model recorded in the index."),
    ef_search: int | None = typer.Option(None, "--ef-search", help="HNSW search breadth."),
) -> None:
    """Search an index with one query or a file of queries."""
    from indus.retriever.index import load_index, read_texts, resolve_collection, write_run

    if (query is None) == (queries is None):
        raise IndusError("give exactly one of --query TEXT or --queries FILE")
    if queries is not None and out is None:
        raise IndusError("--queries needs --out RUN (a TREC run file, or .jsonl)")
    idx = load_index(index_dir, model=model)
    if query is not None:
        hits = idx.search([query], k=k, ef_search=ef_search)[0]
        print_table([{"rank": r, "id": d, "score": round(s, 4)} for r, (d, s) in enumerate(hits, 1)],
                    title=f"{query!r} in {index_dir}")
        return
    items = read_texts(resolve_collection(queries, "queries"), kind="queries")
    hits = idx.search([text for _, text in items], k=k, ef_search=ef_search)
    write_run([(qid, text, h) for (qid, text), h in zip(items, hits)], out, fmt)
    console.print(f"wrote {out} ({len(items)} queries, top {k})")
