"""``indus retriever``: contrastive bi-encoders, distillation, index and search."""

from __future__ import annotations

import typer

app = typer.Typer(help="Train and distill sentence-embedding retrievers; build an index and search it.",
                  no_args_is_help=True)


@app.callback()
def retriever() -> None:
    """Train and distill sentence-embedding retrievers; build an index and search it."""
