"""Classification past the majority class: minilm on citation_intent with ``--class-weights balanced --lr auto``.

The learning rate is the best of the family's grid on the dev split (first seed), early stopping on dev keeps the
best epoch, and each class's loss is weighted by n / (classes x count). The macro-F1 is reported next to the
majority-class baseline (always the most frequent training label) and per class.

Run (one heavy job at a time on shared machines)::

    flock /tmp/indus-bench.lock .venv/bin/python benchmarks/finetune_cls.py --data citation_intent
    flock /tmp/indus-bench.lock .venv/bin/python benchmarks/finetune_cls.py --data sci-cite --seeds 1 \
        --max-train-examples 2000

Writes ``benchmarks/results/finetune_cls_<data>.md`` and ``.json``.
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
from indus.evaluation.cls import ClassificationEvaluator  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="citation_intent")
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=float, default=3.0)
    parser.add_argument("--max-train-examples", type=int, default=None, help="a fixed random subset of train")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (about 2x on CPUs with AMX)")
    parser.add_argument("--out", type=Path, default=None, help="default results/finetune_cls_<data>.md")
    args = parser.parse_args(argv)
    args.out = args.out or RESULTS / f"finetune_cls_{args.data}.md"
    if os.environ.get("INDUS_DATA") is None:
        os.environ["INDUS_DATA"] = str(Path(__file__).resolve().parents[2] / "shared" / "data")

    evaluator = ClassificationEvaluator(
        seeds=args.seeds,
        epochs=args.epochs,
        lr="auto",
        class_weights="balanced",
        max_train_examples=args.max_train_examples,
        bf16=args.bf16,
        progress=False,
    )
    command = (
        f"python benchmarks/finetune_cls.py --data {args.data} --model {args.model} --seeds {args.seeds} "
        f"--epochs {args.epochs:g}"
        + (f" --max-train-examples {args.max_train_examples}" if args.max_train_examples else "")
        + (" --bf16" if args.bf16 else "")
    )
    started = time.perf_counter()
    result = evaluator.evaluate(args.model, args.data)
    flat = {**result.to_json(), "command": command, "machine": machine_line(), "total_s": time.perf_counter() - started}
    atomic_write_json(args.out.with_suffix(".json"), flat)

    choice = result.info["lr_choice"]
    base = result.info["majority_baseline"]
    lines = [
        f"# Classification: {args.model} on {args.data}, class-weighted, lr chosen on dev",
        "",
        f"Machine: {flat['machine']}. Other agents shared this 2-core machine during the run; the seconds are "
        "this run's only.",
        "",
        f"Command: `{command}`",
        "",
        f"Learning rate: {choice['lr']:g}, the best dev {result.primary_metric} of "
        + ", ".join(f"{lr} ({v['dev']:.4f}, best epoch {v['best_epoch']:g})" for lr, v in choice["grid"].items())
        + f" on the {choice['dev']} split ({choice['dev_examples']} examples); early stopping on dev, patience "
        f"{choice['patience']}. Class weights (balanced): "
        + ", ".join(
            f"{lab} {w:.2f}" for lab, w in zip(result.info["labels"], result.info["class_weights"], strict=True)
        )
        + ".",
        "",
        "| predictor | macro-F1 | micro-F1 | accuracy |",
        "|---|---|---|---|",
    ]

    def pm(key: str) -> str:
        value, std = result.metric(key), result.metric(f"{key}_std")
        return "collapsed" if value is None else f"{value:.4f} ± {std:.4f}"

    lines.append(
        f"| {args.model}, {args.seeds} seeds (mean ± std) | {pm('macro_f1')} | {pm('micro_f1')} | {pm('accuracy')} |"
    )
    lines.append(
        f"| always `{base['label']}` (majority class) | {base['macro_f1']:.4f} | {base['micro_f1']:.4f} | "
        f"{base['accuracy']:.4f} |"
    )
    lines += [
        "",
        f"Collapsed seeds: {result.counts['collapsed_seeds']} of {args.seeds}. "
        f"Per seed macro-F1: "
        + ", ".join(f"{r['macro_f1']:.4f} (lr {r['lr']:g}, best epoch {r['best_epoch']:g})" for r in result.per_seed)
        + ".",
        "",
        "| class | F1 (mean over seeds) |",
        "|---|---|",
    ]
    lines += [f"| {label} | {f1:.4f} |" for label, f1 in (result.metric("per_label") or {}).items()]
    lines += [
        "",
        f"Total {flat['total_s'] / 60:.1f} min ({result.counts['train_examples']} training examples, "
        f"{result.counts['eval_examples']} test examples).",
    ]
    atomic_write_text(args.out, "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
