"""``indus run``: the end-to-end pipeline from a corpus to a report."""

from __future__ import annotations

import typer

from indus.errors import IndusError


def register(app: typer.Typer) -> None:
    """Add the pipeline command to the main app."""

    @app.command()
    def run() -> None:
        """Run the whole pipeline from a config (not built yet)."""
        raise IndusError("indus run is not built yet")
