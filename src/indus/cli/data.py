"""``indus data``: find, count and validate datasets."""

from __future__ import annotations

import typer

from indus.cli.common import console, print_table

app = typer.Typer(help="Find, count and validate datasets (CoNLL, SQuAD, BEIR, pairs, corpus, classification).",
                  no_args_is_help=True)


@app.command("list")
def list_datasets() -> None:
    """Show the named datasets under the data root, with counts."""
    from indus.data.registry import count, discover, require_data_root

    root = require_data_root()
    entries = discover(root)
    console.print(f"data root: {root}")
    rows = []
    for e in entries:
        counts = count(e)
        rows.append({"name": e.name, "kind": e.kind, "path": str(e.path.relative_to(root)),
                     "counts": ", ".join(f"{k}: {v:,}" for k, v in counts.items())})
    print_table(rows, title=f"{len(entries)} datasets")
