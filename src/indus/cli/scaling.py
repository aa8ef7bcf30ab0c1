"""``indus scaling``: observational scaling laws (arXiv 2405.10938)."""

from __future__ import annotations

import typer

app = typer.Typer(help="Observational scaling laws: capability PCs, sigmoid forecasts, model selection.",
                  no_args_is_help=True)


@app.callback()
def scaling() -> None:
    """Observational scaling laws: capability PCs, sigmoid forecasts, model selection."""
