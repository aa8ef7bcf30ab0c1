"""``indus tokenizer``: train INDUSBPE and compare tokenizers."""

from __future__ import annotations

import typer

app = typer.Typer(help="Train a domain byte-level BPE tokenizer (INDUSBPE) and compare tokenizers.",
                  no_args_is_help=True)


@app.callback()
def tokenizer() -> None:
    """Train a domain byte-level BPE tokenizer (INDUSBPE) and compare tokenizers."""
