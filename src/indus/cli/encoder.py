"""``indus pretrain`` and ``indus distill``: INDUS encoders."""

from __future__ import annotations

import typer

from indus.errors import IndusError


def register(app: typer.Typer) -> None:
    """Add the encoder commands to the main app."""

    @app.command()
    def pretrain() -> None:
        """Masked-LM pretraining of a RoBERTa-style encoder (not built yet)."""
        raise IndusError("indus pretrain is not built yet")

    @app.command()
    def distill() -> None:
        """MiniLMv2 distillation of a small encoder (not built yet)."""
        raise IndusError("indus distill is not built yet")
