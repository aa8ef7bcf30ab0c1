"""NER harness check: minilm against ``random:minilm`` (same shape, same budget) on science NER test splits.

The harness is only trustworthy if a pretrained encoder clearly beats the same architecture with random weights
under an identical fine-tuning budget. Both models get the same training subset, epochs, learning rate, batch size
and seeds; the score is strict entity-level F1 (seqeval, IOB2) on the full BC5CDR test split, mean ± sample std
over seeds.

Run (one heavy job at a time on shared machines)::

    flock /tmp/indus-cpu.lock .venv/bin/python benchmarks/harness_ner.py
    flock /tmp/indus-cpu.lock .venv/bin/python benchmarks/harness_ner.py --lr auto --bf16 \
        --data bc5cdr ncbi-disease sciie --max-train-sentences 2000 --out benchmarks/results/harness_ner_auto.md

Writes ``benchmarks/results/harness_ner.md`` and ``harness_ner.json`` (or ``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
from benchmarks.machine import machine_line, results_lock  # noqa: E402
from indus.atomic import atomic_write_json, atomic_write_text  # noqa: E402
from indus.errors import IndusError  # noqa: E402
from indus.evaluation.ner import NEREvaluator  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", default=["bc5cdr"], help="NER dataset names or folders")
    parser.add_argument(
        "--models",
        nargs="+",
        default=["minilm", "random:minilm"],
        help="model specs, each optionally LABEL=SPEC (the label names the row)",
    )
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--lr", default="1e-4", help="learning rate, or auto: chosen on dev per model and data set")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--max-train-sentences", type=int, default=None)
    parser.add_argument("--max-eval-sentences", type=int, default=None)
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (about 2x on CPUs with AMX)")
    parser.add_argument("--out", type=Path, default=RESULTS / "harness_ner.md")
    parser.add_argument("--merge", action="store_true", help="add to the results already in --out (same settings)")
    parser.add_argument(
        "--note",
        action="append",
        default=[],
        metavar="LABEL=TEXT",
        help="a line about a model (how it was made), kept in the results file and printed under the settings",
    )
    parser.add_argument(
        "--render", action="store_true", help="write --out's markdown again from its JSON (adding any --note); no runs"
    )
    args = parser.parse_args(argv)
    if any("=" not in n for n in args.note):
        parser.error(f"--note: expected LABEL=TEXT, got {next(n for n in args.note if '=' not in n)!r}")
    notes = dict(n.split("=", 1) for n in args.note)
    if args.render:
        saved = json.loads(args.out.with_suffix(".json").read_text())
        recorded = shlex.split(saved["commands"][-1])  # the settings line: the last run's arguments
        settings = parser.parse_args(recorded[recorded.index("benchmarks/harness_ner.py") + 1 :])
        settings.out = args.out
        notes = {**saved.get("notes", {}), **notes}
        write(settings, saved["commands"], saved["results"], saved["wall_s"], notes)
        print(f"wrote {args.out}")
        return
    if os.environ.get("INDUS_DATA") is None:
        os.environ["INDUS_DATA"] = str(Path(__file__).resolve().parents[2] / "shared" / "data")

    try:  # the evaluator checks the settings (--lr: a number or auto) and reads the number
        evaluator = NEREvaluator(
            seeds=args.seeds,
            epochs=args.epochs,
            lr=args.lr,
            batch_size=args.batch_size,
            max_length=args.max_length,
            max_train_sentences=args.max_train_sentences,
            max_eval_sentences=args.max_eval_sentences,
            split="test",
            bf16=args.bf16,
            progress=False,
        )
    except IndusError as exc:
        parser.error(str(exc))
    started = time.perf_counter()
    results: dict[str, dict[str, dict]] = {}
    for data in args.data:
        results[data] = {}
        for entry in args.models:
            labelled = re.fullmatch(r"([\w.-]+)=(.+)", entry)  # LABEL=SPEC; a spec may hold "=" (ffn=320)
            model, spec = labelled.groups() if labelled else (entry, entry)
            results[data][model] = r = evaluator.evaluate(spec, data).to_json()
            print(f"{data} {model}: f1 {r['f1']:.4f} ± {r['f1_std']:.4f} ({r['wall_s']:.0f} s)", flush=True)
    total = time.perf_counter() - started

    extra = " ".join(sys.argv[1:] if argv is None else argv)
    command = "flock /tmp/indus-cpu.lock .venv/bin/python benchmarks/harness_ner.py" + (f" {extra}" if extra else "")
    commands = [command]
    if args.merge:
        # several runs (e.g. one per core) add their models and data sets to one results file, under a lock
        with results_lock(args.out.name):
            previous = args.out.with_suffix(".json")
            if previous.is_file():
                old = json.loads(previous.read_text())
                commands = [*old.get("commands", [old.get("command")]), command]
                total += old.get("wall_s", 0.0)
                notes = {**old.get("notes", {}), **notes}
                for data, res in results.items():
                    old["results"].setdefault(data, {}).update(res)
                results = old["results"]
            write(args, commands, results, total, notes)
    else:
        write(args, commands, results, total, notes)
    print(f"wrote {args.out}")


def write(
    args: argparse.Namespace,
    commands: list[str],
    results: dict[str, dict[str, dict]],
    total: float,
    notes: dict[str, str] | None = None,
) -> None:
    """The results files: the settings, any notes on the models, then a table per data set."""
    lr = (
        "chosen on dev per model and data set (the family's grid, first seed; early stopping on dev keeps the "
        "best epoch)"
        if args.lr == "auto"
        else f"{float(args.lr):g}"
    )
    models = dict.fromkeys(m for res in results.values() for m in res)
    lines = [
        f"# NER harness: {' vs '.join(models)} on {', '.join(results)}",
        "",
        f"Machine: {machine_line()}",
        "",
        *(["Commands:", "", *[f"    {c}" for c in commands]] if len(commands) > 1 else [f"Command: `{commands[0]}`"]),
        "",
        f"Budget (identical for every model): up to {args.epochs:g} epochs, lr {lr}, batch {args.batch_size}, "
        f"max_length {args.max_length} subwords{', bf16 autocast' if args.bf16 else ''}. Strict entity-level F1 "
        f"(seqeval, IOB2), mean ± sample std over seeds. Total wall time {total / 60:.1f} min"
        + (" (the runs summed)." if len(commands) > 1 else "."),
        "",
        *[f"- {label}: {text}" for label, text in (notes or {}).items()],
        *([""] if notes else []),
    ]
    for data, res in results.items():  # every table lists the models in one order (their first appearance)
        lines += section(data, {m: res[m] for m in models if m in res})
    atomic_write_text(args.out, "\n".join(lines) + "\n")
    atomic_write_json(
        args.out.with_suffix(".json"),
        {"commands": commands, "machine": machine_line(), "wall_s": total, "results": results, "notes": notes or {}},
    )


def section(data: str, results: dict[str, dict]) -> list[str]:
    """One data set's table: a row per model, the chosen learning rate and collapsed seeds included."""
    first = next(iter(results.values()))
    types = list(first.get("per_type") or {})
    lines = [
        f"## {data}",
        "",
        f"{first['train_sentences']} of {first['train_sentences_total']} train sentences, seeds "
        f"{', '.join(str(r['seed']) for r in first['per_seed'])}; scored on {first['eval_sentences']} of "
        f"{first['eval_sentences_total']} {first['split']} sentences ({first['eval_entities']} entities). "
        f"Sentences split into windows: train {first['train_sentences_split']}, {first['split']} "
        f"{first['eval_sentences_split']}.",
        "",
        "| model | F1 | precision | recall | "
        + " | ".join(f"{t} F1" for t in types)
        + " | F1 per seed | lr | collapsed seeds | train s / run | eval s / run |",
        "|---|---|---|---|" + "---|" * len(types) + "---|---|---|---|---|",
    ]
    for model, r in results.items():
        seeds = ", ".join(f"{s['f1']:.4f}" if s.get("f1") is not None else "collapsed" for s in r["per_seed"])
        train_s = sum(s["train_s"] for s in r["per_seed"]) / len(r["per_seed"])
        eval_s = sum(s["eval_s"] for s in r["per_seed"]) / len(r["per_seed"])
        choice = r.get("lr_choice") or {}
        lr = f"{choice.get('lr', r.get('lr')):g}" if choice.get("lr") is not None else str(r.get("lr"))
        if choice.get("mode") == "auto" and choice.get("grid"):
            lr += " (dev " + ", ".join(f"{k}: {v['dev']:.3f}" for k, v in choice["grid"].items()) + ")"
        per_type = r.get("per_type") or {}
        lines.append(
            f"| {model} | {fmt(r.get('f1'))} ± {fmt(r.get('f1_std'))} | {fmt(r.get('precision'))} | "
            f"{fmt(r.get('recall'))} | "
            + " | ".join(fmt((per_type.get(t) or {}).get("f1")) for t in types)
            + f" | {seeds} | {lr} | {r.get('collapsed_seeds', 0)} | {train_s:.0f} | {eval_s:.0f} |"
        )
    if len(results) >= 2:
        (a, ra), (b, rb) = list(results.items())[:2]
        if ra.get("f1") is not None and rb.get("f1") is not None:
            if ra["f1"] < rb["f1"]:  # the higher mean first: separated when its worst seed beats the other's best
                (a, ra), (b, rb) = (b, rb), (a, ra)
            worst_a = min(s["f1"] for s in ra["per_seed"] if s.get("f1") is not None)
            best_b = max(s["f1"] for s in rb["per_seed"] if s.get("f1") is not None)
            lines += [
                "",
                f"{a} − {b}: {ra['f1'] - rb['f1']:+.4f} F1; worst {a} seed {worst_a:.4f} vs best {b} seed "
                f"{best_b:.4f} ({'separated' if worst_a > best_b else 'overlapping'}).",
            ]
    return [*lines, ""]


def fmt(value: float | None) -> str:
    """A score with four decimals, ``collapsed`` where every seed collapsed (no score)."""
    return "collapsed" if value is None else f"{value:.4f}"


if __name__ == "__main__":
    main()
