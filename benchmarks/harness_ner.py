"""NER harness check: minilm against ``random:minilm`` (same shape, same budget) on BC5CDR test.

The harness is only trustworthy if a pretrained encoder clearly beats the same architecture with random weights
under an identical fine-tuning budget. Both models get the same training subset, epochs, learning rate, batch size
and seeds; the score is strict entity-level F1 (seqeval, IOB2) on the full BC5CDR test split, mean ± sample std
over seeds.

Run (one heavy job at a time on shared machines)::

    flock /tmp/indus-cpu.lock .venv/bin/python benchmarks/harness_ner.py

Writes ``benchmarks/results/harness_ner.md`` and ``harness_ner.json``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
from benchmarks.machine import machine_line  # noqa: E402
from indus.atomic import atomic_write_json, atomic_write_text  # noqa: E402
from indus.evaluation.ner import NEREvaluator  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="bc5cdr", help="NER dataset name or folder")
    parser.add_argument("--models", nargs="+", default=["minilm", "random:minilm"])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--max-train-sentences", type=int, default=None)
    parser.add_argument("--max-eval-sentences", type=int, default=None)
    parser.add_argument("--out", type=Path, default=RESULTS / "harness_ner.md")
    args = parser.parse_args(argv)
    if os.environ.get("INDUS_DATA") is None:
        os.environ["INDUS_DATA"] = str(Path(__file__).resolve().parents[2] / "shared" / "data")

    evaluator = NEREvaluator(
        seeds=args.seeds,
        epochs=args.epochs,
        lr=args.lr,
        batch_size=args.batch_size,
        max_length=args.max_length,
        max_train_sentences=args.max_train_sentences,
        max_eval_sentences=args.max_eval_sentences,
        split="test",
        progress=False,
    )
    started = time.perf_counter()
    results = {}
    for model in args.models:
        results[model] = evaluator.evaluate(model, args.data).to_json()
        r = results[model]
        print(f"{model}: f1 {r['f1']:.4f} ± {r['f1_std']:.4f} ({r['wall_s']:.0f} s)", flush=True)
    total = time.perf_counter() - started

    extra = " ".join(sys.argv[1:] if argv is None else argv)
    command = "flock /tmp/indus-cpu.lock .venv/bin/python benchmarks/harness_ner.py" + (f" {extra}" if extra else "")
    first = next(iter(results.values()))
    types = list(first["per_type"])
    lines = [
        f"# NER harness: {' vs '.join(args.models)} on {args.data} {first['split']}",
        "",
        f"Machine: {machine_line()}",
        "",
        f"Command: `{command}`",
        "",
        f"Budget (identical for every model): {first['train_sentences']} of {first['train_sentences_total']} "
        f"train sentences, {args.epochs:g} epochs, lr {args.lr:g}, batch {args.batch_size}, max_length "
        f"{args.max_length} subwords, seeds {', '.join(str(r['seed']) for r in first['per_seed'])}. "
        f"Scored on {first['eval_sentences']} of {first['eval_sentences_total']} {first['split']} sentences "
        f"({first['eval_entities']} entities); strict entity-level F1 (seqeval, IOB2), mean ± sample std over "
        f"seeds. Sentences split into windows: train {first['train_sentences_split']}, "
        f"{first['split']} {first['eval_sentences_split']}. Total wall time {total / 60:.1f} min.",
        "",
        "| model | F1 | precision | recall | "
        + " | ".join(f"{t} F1" for t in types)
        + " | F1 per seed | train s / run | eval s / run |",
        "|---|---|---|---|" + "---|" * len(types) + "---|---|---|",
    ]
    for model, r in results.items():
        seeds = ", ".join(f"{s['f1']:.4f}" for s in r["per_seed"])
        train_s = sum(s["train_s"] for s in r["per_seed"]) / len(r["per_seed"])
        eval_s = sum(s["eval_s"] for s in r["per_seed"]) / len(r["per_seed"])
        lines.append(
            f"| {model} | {r['f1']:.4f} ± {r['f1_std']:.4f} | {r['precision']:.4f} | {r['recall']:.4f} | "
            + " | ".join(f"{r['per_type'][t]['f1']:.4f}" for t in types)
            + f" | {seeds} | {train_s:.0f} | {eval_s:.0f} |"
        )
    if len(results) >= 2:
        (a, ra), (b, rb) = list(results.items())[:2]
        worst_a = min(s["f1"] for s in ra["per_seed"])
        best_b = max(s["f1"] for s in rb["per_seed"])
        lines += [
            "",
            f"{a} − {b}: {ra['f1'] - rb['f1']:+.4f} F1; worst {a} seed {worst_a:.4f} vs best {b} seed "
            f"{best_b:.4f} ({'separated' if worst_a > best_b else 'overlapping'}).",
        ]
    atomic_write_text(args.out, "\n".join(lines) + "\n")
    atomic_write_json(
        args.out.with_suffix(".json"),
        {"command": command, "machine": machine_line(), "wall_s": total, "results": results},
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
