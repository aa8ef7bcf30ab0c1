"""``indus data``: find, count and validate datasets."""

from __future__ import annotations

from pathlib import Path

import typer

from indus.cli.common import console, err_console, print_table, write_json

app = typer.Typer(
    help="Find, count and validate datasets (CoNLL, SQuAD, BEIR, pairs, corpus, classification).", no_args_is_help=True
)


@app.command("list")
def list_datasets() -> None:
    """Show the named datasets under the data root, with counts; a file that cannot be read is marked, not fatal."""
    from indus.data.registry import count, discover, require_data_root

    root = require_data_root()
    try:
        entries = discover(root)
    except OSError as exc:
        from indus.errors import IndusError

        raise IndusError(f"{root}: cannot list the data root ({exc.strerror or exc})") from None
    console.print(f"data root: {root}")
    rows = []
    for e in entries:
        try:
            counts = count(e)
        except OSError as exc:  # an unreadable folder: mark the dataset, list the others
            counts = {"folder": f"unreadable ({exc.strerror or exc})"}
        bad = {k: v for k, v in counts.items() if isinstance(v, str)}
        for key, problem in bad.items():
            err_console.print(f"warning: {e.kind}/{e.name} ({key}): {problem}", markup=False, highlight=False)
        rows.append(
            {
                "name": e.name,
                "kind": e.kind,
                "path": str(e.path.relative_to(root)),
                "counts": ", ".join(f"{k}: {v:,}" for k, v in counts.items() if k not in bad),
                "problems": "; ".join(f"{k}: {v}" for k, v in bad.items()),
            }
        )
    if not any(r["problems"] for r in rows):
        for r in rows:
            del r["problems"]
    print_table(rows, title=f"{len(entries)} datasets")


@app.command("check")
def check_dataset(
    path: str = typer.Argument(..., help="A file, a folder, or a dataset name under the data root."),
    fmt: str | None = typer.Option(
        None,
        "--format",
        "-f",
        show_default=False,
        help="Force the format: ner, squad, beir, pairs, classification, corpus.",
    ),
    scheme: str = typer.Option(
        "auto", "--scheme", help="NER tag scheme: auto (detect, repair), or IOB1 / IOB2 / BIOES / BILOU (strict)."
    ),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the counts as JSON.", show_default=False),
) -> None:
    """Validate a dataset (format detected from the path) and print its counts."""
    from indus.data.check import check, summary_rows

    result = check(path, fmt, scheme=scheme)
    for warning in result.get("warnings", []):
        err_console.print(f"warning: {warning}", markup=False, highlight=False, soft_wrap=True)
    summary, tables = summary_rows({k: v for k, v in result.items() if k != "warnings"})
    print_table(summary, title=f"{result['format']}: {result['path']}")
    for name, rows in tables.items():
        print_table(rows, title=name)
    write_json(json_out, result)


@app.command("holdout")
def holdout_split(
    path: str = typer.Argument(..., help="A BEIR folder or an ir dataset name under the data root."),
    out: Path = typer.Option(..., "--out", help="The new BEIR folder (corpus and queries linked, qrels written)."),
    split: str = typer.Option("train", "--split", help="The split whose queries are divided."),
    dev: str = typer.Option("dev", "--dev", help="Name of the held-out split."),
    fraction: float = typer.Option(0.2, "--fraction", help="Share of the split's queries held out."),
    seed: int = typer.Option(0, "--seed", help="Seed of the draw."),
) -> None:
    """Hold out part of a BEIR split's queries as a dev split, to choose settings without touching test."""
    from indus.data.beir import holdout
    from indus.data.registry import resolve_dataset

    counts = holdout(resolve_dataset(path, kind="ir"), out, split=split, dev=dev, fraction=fraction, seed=seed)
    print_table([{"split": k, "queries": v} for k, v in counts.items()], title=str(out))
