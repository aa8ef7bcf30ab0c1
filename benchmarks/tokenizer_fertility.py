"""INDUSBPE against minilm's general WordPiece: tokens and tokens per word on the held-out corpus (paper Table 2).

Run (one heavy job at a time on shared machines)::

    flock /tmp/indus-cpu.lock .venv/bin/python benchmarks/tokenizer_fertility.py [--data ../shared/data]

Trains uncased byte-level BPEs on ``corpus/train.jsonl.gz`` (50,265 tokens as the paper, and 30,522, the size of
minilm's WordPiece) into ``runs/tokenizers/`` (reused by the encoder benchmarks) and counts tokens on
``corpus/valid.jsonl.gz``. Writes ``benchmarks/results/tokenizer_fertility.{md,json}``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from benchmarks.machine import machine_line  # noqa: E402
from indus.atomic import atomic_write_json, atomic_write_text  # noqa: E402
from indus.tokenizer import compare_tokenizers, train_bpe  # noqa: E402

OUT = ROOT / "benchmarks" / "results"
VOCABS = (50_265, 30_522)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--tokenizers", type=Path, default=ROOT / "runs" / "tokenizers")
    args = parser.parse_args()
    train, valid = args.data / "corpus" / "train.jsonl.gz", args.data / "corpus" / "valid.jsonl.gz"

    train_s: dict[int, float] = {}
    for v in VOCABS:
        start = time.perf_counter()
        train_bpe(
            [train], v, out_dir=args.tokenizers / f"indusbpe-{v}", lowercase=True, show_progress=False, overwrite=True
        )
        train_s[v] = time.perf_counter() - start
    specs = [str(args.tokenizers / f"indusbpe-{v}") for v in VOCABS] + ["minilm"]
    names = [f"INDUSBPE {v:,} (ours, uncased)" for v in VOCABS] + ["minilm WordPiece 30,522 (uncased, general)"]
    rows = compare_tokenizers(valid, specs, names=names)
    base = rows[-1]

    lines = [
        "# Tokenizer fertility: INDUSBPE vs minilm's WordPiece",
        "",
        f"Machine: {machine_line()}",
        "",
        "Command: `flock /tmp/indus-cpu.lock .venv/bin/python benchmarks/tokenizer_fertility.py`",
        "",
        f"Trained on `corpus/train.jsonl.gz` (uncased byte-level BPE); counted on `corpus/valid.jsonl.gz` "
        f"({base.documents:,} documents, {base.words:,} whitespace words), special tokens excluded.",
        "",
        "| tokenizer | vocab | tokens | tokens / word | vs INDUSBPE 50,265 | vs minilm | train time (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r, v in zip(rows, [*VOCABS, None], strict=True):
        vs_minilm = 100.0 * (r.tokens - base.tokens) / base.tokens
        t = f"{train_s[v]:.1f}" if v else "-"
        lines.append(
            f"| {r.tokenizer} | {r.vocab_size:,} | {r.tokens:,} | {r.tokens_per_word:.3f} | "
            f"{r.relative_diff_pct:+.1f}% | {vs_minilm:+.1f}% | {t} |"
        )
    lines += [
        "",
        "The paper (arXiv 2405.10725, Table 2) reports INDUSBPE producing 4.3% fewer tokens than RoBERTa's "
        "BPE on ADS abstracts and 8.3% fewer on PMC papers (RoBERTa's tokenizer is not available offline here; "
        "minilm's general-domain WordPiece is the baseline).",
    ]
    OUT.mkdir(parents=True, exist_ok=True)
    atomic_write_text(OUT / "tokenizer_fertility.md", "\n".join(lines) + "\n")
    atomic_write_json(
        OUT / "tokenizer_fertility.json",
        {"machine": machine_line(), "train_s": train_s, "rows": [r.to_dict() for r in rows]},
    )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
