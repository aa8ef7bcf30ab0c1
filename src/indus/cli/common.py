"""Small helpers shared by the CLI modules: one console, tables, JSON output."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

# Piped output (logs, CI) gets a wide console instead of rich's 80-column default, so tables do not wrap.
console = Console(stderr=False, width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)


def print_table(rows: list[dict[str, Any]], title: str | None = None, columns: list[str] | None = None) -> None:
    """Print a list of dicts as a rich table (floats with 4 significant digits)."""
    if not rows:
        console.print("(nothing to show)")
        return
    columns = columns or list(dict.fromkeys(k for r in rows for k in r))
    table = Table(title=title)
    for c in columns:
        table.add_column(str(c))
    for r in rows:
        table.add_row(*(_fmt(r.get(c, "")) for c in columns))
    console.print(table)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def write_json(path: Path | None, obj: Any) -> None:
    """Write ``obj`` to ``path`` atomically when a path is given."""
    if path is not None:
        from indus.atomic import atomic_write_json

        atomic_write_json(path, obj)
        console.print(f"wrote {path}")
