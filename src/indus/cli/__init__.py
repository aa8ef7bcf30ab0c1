"""The ``indus`` command line: one typer app whose sub-commands are thin calls into the library.

Each command group lives in its own module here; heavy libraries are imported inside the commands so that
``indus --help`` stays fast.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

from indus import __version__
from indus.cli import data as data_cli
from indus.cli import encoder as encoder_cli
from indus.cli import eval as eval_cli
from indus.cli import retriever as retriever_cli
from indus.cli import run as run_cli
from indus.cli import scaling as scaling_cli
from indus.cli import studio as studio_cli
from indus.cli import tokenizer as tokenizer_cli
from indus.errors import IndusError

app = typer.Typer(
    name="indus",
    help="Build, evaluate and forecast domain language models for science (INDUS + observational scaling laws).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"indus {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    data_root: Path | None = typer.Option(
        None, "--data-root", help="Folder holding the named datasets (default: $INDUS_DATA).", show_default=False
    ),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version."),
) -> None:
    """indus: build, evaluate and forecast domain language models for science."""
    if data_root is not None:
        from indus.data.registry import ENV_VAR
        from indus.data.registry import data_root as check_root

        check_root(data_root)
        os.environ[ENV_VAR] = str(data_root.expanduser().resolve())


app.add_typer(data_cli.app, name="data")
app.add_typer(scaling_cli.app, name="scaling")
app.add_typer(tokenizer_cli.app, name="tokenizer")
encoder_cli.register(app)
app.add_typer(retriever_cli.app, name="retriever")
app.add_typer(eval_cli.app, name="eval")
run_cli.register(app)
app.add_typer(studio_cli.app, name="studio")


def main() -> None:
    """Entry point: user errors become one line on stderr and exit code 2."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        app()
    except IndusError as exc:
        message = " ".join(str(exc).split("\n"))  # one line, even when it quotes a library's multi-line message
        typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.secho("interrupted", err=True, fg=typer.colors.YELLOW)
        sys.exit(130)
