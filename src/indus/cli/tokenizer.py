"""``indus tokenizer``: train INDUSBPE and compare tokenizers."""

from __future__ import annotations

from pathlib import Path

import typer

from indus._extras import require_extra
from indus.cli.common import console, print_table, write_json

app = typer.Typer(
    help="Train a domain byte-level BPE tokenizer (INDUSBPE) and compare tokenizers.", no_args_is_help=True
)


@app.callback()
def tokenizer() -> None:
    """Train a domain byte-level BPE tokenizer (INDUSBPE) and compare tokenizers."""


@app.command()
def train(
    corpus: list[str] = typer.Option(
        ...,
        "--corpus",
        help="Corpus file, folder or dataset name such as 'corpus' (JSONL with 'text', "
        "or text); a folder gives its training files, never valid/dev/test ones.",
    ),
    vocab_size: int = typer.Option(50_265, "--vocab-size", help="Vocabulary size incl. 5 specials (paper: 50,265)."),
    lowercase: bool = typer.Option(False, "--lowercase/--cased", help="Lower-case first (INDUSBPE is uncased)."),
    max_docs: int | None = typer.Option(None, "--max-docs", help="Train on the first N documents only."),
    min_frequency: int = typer.Option(2, "--min-frequency", help="Smallest pair count that makes a merge."),
    out: Path = typer.Option(..., "--out", help="Output folder (loads with AutoTokenizer.from_pretrained)."),
    overwrite: bool = typer.Option(
        False,
        "--overwrite",
        help="Write into a non-empty --out (files of the same names are replaced, other files kept).",
    ),
) -> None:
    """Train a byte-level BPE with RoBERTa's special tokens (<s> <pad> </s> <unk> <mask> = ids 0..4)."""
    require_extra("train", what="indus tokenizer train")
    import sys
    import time

    from indus.tokenizer.train import train_bpe

    t0 = time.perf_counter()
    # progress bars only on a terminal: piped stderr keeps a bad-input error as its one line
    tok = train_bpe(
        corpus,
        vocab_size,
        out_dir=out,
        lowercase=lowercase,
        max_docs=max_docs,
        min_frequency=min_frequency,
        overwrite=overwrite,
        show_progress=sys.stderr.isatty(),
    )
    console.print(
        f"wrote {out}: {len(tok):,} tokens, {'uncased' if lowercase else 'cased'}, {time.perf_counter() - t0:.1f} s"
    )


@app.command()
def compare(
    text: str = typer.Option(
        ...,
        "--text",
        help="Corpus file, folder or dataset name to tokenise; a folder "
        "gives its held-out files when it has some (corpus: valid).",
    ),
    tokenizers: list[str] = typer.Option(..., "--tokenizer", help="Tokenizer folder or model spec (repeatable)."),
    max_docs: int | None = typer.Option(None, "--max-docs", help="Use the first N documents only."),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the rows as JSON."),
) -> None:
    """Tokens, tokens per word and % difference against the first tokenizer (the paper's Table 2)."""
    require_extra("train", what="indus tokenizer compare")
    from indus.tokenizer.fertility import compare_tokenizers

    rows = [r.to_dict() for r in compare_tokenizers(text, tokenizers, max_docs=max_docs)]
    print_table(rows, title=f"tokenizer fertility on {text}")
    write_json(json_out, rows)
