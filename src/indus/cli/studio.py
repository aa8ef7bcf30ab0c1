"""``indus studio``: the web app to search an index, write questions and judge pools, and its export."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from indus._extras import require_extra
from indus.cli.common import console, print_table

app = typer.Typer(
    help="A web app to search an index, write questions and judge relevance, and export the benchmark.",
    no_args_is_help=True,
)

DEFAULT_DB = "studio.db"


def build_studio(
    index: Path,
    *,
    db: str = DEFAULT_DB,
    corpus: str | None = None,
    pool: list[str] | None = None,
    pool_depth: int = 10,
    queries: str | None = None,
    passage_words: int = 120,
    seed: int = 0,
    progress: bool = True,
):  # noqa: ANN201 (the return type is imported lazily)
    """Open the index and the database and make a :class:`~indus.studio.service.Studio` (pools built)."""
    from indus.retriever.index import read_texts, resolve_collection
    from indus.retriever.search import Searcher
    from indus.studio.db import Store
    from indus.studio.passages import Passage, load_passages
    from indus.studio.service import Studio, make_pool_systems

    searcher = Searcher.open(index)
    store = Store.open(db)
    store.set_meta("index", str(Path(index).resolve()))
    if corpus is not None:
        passages = load_passages(corpus, passage_words, seed=seed)
    else:  # the index's own documents, whole: a written question's relevant passage is then an index document
        import random

        passages = [Passage(d.id, d.id, d.title, d.text) for d in searcher]
        random.Random(seed).shuffle(passages)
    systems = make_pool_systems(
        pool or [m for m in ("bm25", "dense") if m in searcher.modes], searcher, progress=progress
    )
    studio = Studio(store, searcher, passages, systems, pool_depth=pool_depth, seed=seed)
    if queries is not None:
        added = studio.add_queries(read_texts(resolve_collection(queries, "queries"), kind="queries"))
        console.print(f"loaded {added} new queries from {queries}")
    pooled = studio.build_pools(progress=progress)
    console.print(
        f"index {index}: {len(searcher):,} documents, modes {', '.join(searcher.modes)}; "
        f"{len(passages):,} passages; pool: {', '.join(s.name for s in systems)} to depth {pool_depth} "
        f"({pooled} queries pooled now); database {store.engine.url}"
    )
    return studio


@app.callback()
def studio() -> None:
    """A web app for a team of experts: search, write questions, judge pooled results; export the benchmark."""


@app.command()
def serve(
    index: Annotated[Path, typer.Option("--index", help="An index directory (indus retriever index).")],
    corpus: Annotated[
        str | None,
        typer.Option(
            "--corpus",
            help="Passages to write questions on: a corpus, BEIR folder, JSON lines, text or SQuAD file "
            "(default: the index's documents, whole).",
            show_default=False,
        ),
    ] = None,
    pool: Annotated[
        list[str] | None,
        typer.Option(
            "--pool",
            help="A system pooled for judging: bm25, dense, hybrid or a model folder; repeat it "
            "(default: bm25 and dense where the index has them).",
            show_default=False,
        ),
    ] = None,
    pool_depth: Annotated[int, typer.Option("--pool-depth", help="Each system's top k that enters the pool.")] = 10,
    queries: Annotated[
        str | None,
        typer.Option(
            "--queries",
            help="Queries to judge (BEIR queries.jsonl, JSON lines id/text, or text lines).",
            show_default=False,
        ),
    ] = None,
    db: Annotated[str, typer.Option("--db", help="Database: a SQLite file or a SQLAlchemy URL.")] = DEFAULT_DB,
    host: Annotated[str, typer.Option("--host", help="Address to bind (loopback only by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port.")] = 8000,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            envvar="INDUS_STUDIO_TOKEN",
            help="Every write must carry this token (default: writes from loopback only).",
            show_default=False,
        ),
    ] = None,
    passage_words: Annotated[int, typer.Option("--passage-words", help="Words per --corpus passage.")] = 120,
    seed: Annotated[int, typer.Option("--seed", help="Seeds the passage order and pool shuffles.")] = 0,
) -> None:
    """Serve the studio: Search, Write questions, Judge and Progress pages and their JSON API."""
    require_extra("eval", "studio", what="indus studio serve")
    import uvicorn

    from indus.errors import IndusError
    from indus.studio.app import create_app

    if not 0 < port < 65536:
        raise IndusError(f"--port must be 1..65535, got {port}")
    if token is not None and len(token) < 8:
        raise IndusError("--token must have at least 8 characters")
    studio = build_studio(
        index,
        db=db,
        corpus=corpus,
        pool=pool,
        pool_depth=pool_depth,
        queries=queries,
        passage_words=passage_words,
        seed=seed,
    )
    if host not in ("127.0.0.1", "localhost", "::1") and token is None:
        console.print(
            f"[yellow]bound to {host} without --token: clients other than this machine can read, not write[/yellow]"
        )
    console.print(f"indus studio on http://{host}:{port}/ (Ctrl-C stops it)")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    uvicorn.run(create_app(studio, token=token), host=host, port=port, workers=1, log_level="warning", access_log=False)


@app.command("export")
def export_cmd(
    db: Annotated[str, typer.Option("--db", help="The studio database (SQLite file or SQLAlchemy URL).")],
    out: Annotated[Path, typer.Option("--out", help="Output folder: qa.json, ir/, report.md.")],
    index: Annotated[
        Path | None,
        typer.Option(
            "--index",
            help="Index whose collection joins the IR corpus (default: the one the studio served).",
            show_default=False,
        ),
    ] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a non-empty --out.")] = False,
) -> None:
    """Export the annotations: SQuAD v2 (qa.json), BEIR (ir/) and report.md."""
    require_extra("studio", what="indus studio export")
    from indus.studio.db import Store
    from indus.studio.export import export

    summary = export(Store.open(db, create=False), out, index=index, overwrite=overwrite)
    print_table([summary], title="indus studio export")
