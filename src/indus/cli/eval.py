"""``indus eval``: the science benchmark harness (NER, QA, IR, classification)."""

from __future__ import annotations

import typer

app = typer.Typer(help="Evaluate a model on scientific NER, extractive QA, retrieval and classification.",
                  no_args_is_help=True)


@app.callback()
def eval_group() -> None:
    """Evaluate a model on scientific NER, extractive QA, retrieval and classification."""
