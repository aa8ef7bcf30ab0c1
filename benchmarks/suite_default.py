"""Wall time and scores of an evaluation suite (default: the packaged default suite) for one model.

Run (one heavy job at a time on shared machines; the default suite is meant to take about 30 minutes)::

    flock /tmp/indus-cpu.lock .venv/bin/python benchmarks/suite_default.py --model minilm

Writes ``benchmarks/results/suite_default.md`` and ``suite_default.json`` (the full ``run_suite`` result).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
from benchmarks.machine import machine_line  # noqa: E402
from indus.atomic import atomic_write_json, atomic_write_text  # noqa: E402
from indus.evaluation.suite import load_suite, run_suite  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def _settings(row: dict) -> str:
    m = row["metrics"]
    parts = []
    for key in ("seeds", "epochs"):
        if key in m:
            parts.append(f"{key} {m[key]:g}")
    for used, total in (
        ("train_sentences", "train_sentences_total"),
        ("train_questions", None),
        ("train_examples", "train_examples_total"),
    ):
        if used in m:
            parts.append(f"train {m[used]}/{m[total]}" if total in m else f"train {m[used]}")
    for key in ("eval_sentences", "eval_questions", "eval_examples", "queries"):
        if key in m:
            parts.append(f"eval {m[key]}")
            break
    if m.get("settings", {}).get("bf16"):
        parts.append("bf16")
    return ", ".join(parts)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--suite", default=None, help="suite file or packaged name (default: default)")
    parser.add_argument("--out", type=Path, default=RESULTS / "suite_default.md")
    args = parser.parse_args(argv)
    if os.environ.get("INDUS_DATA") is None:
        os.environ["INDUS_DATA"] = str(Path(__file__).resolve().parents[2] / "shared" / "data")

    suite = load_suite(args.suite)
    result = run_suite(
        args.model,
        args.suite,
        on_row=lambda r: print(
            f"{r['task']} {r['data']}: {r['metric']} {r['value']:.4f} ({r['wall_s']:.0f} s)", flush=True
        ),
    )
    extra = " ".join(sys.argv[1:] if argv is None else argv)
    command = "flock /tmp/indus-cpu.lock .venv/bin/python benchmarks/suite_default.py" + (f" {extra}" if extra else "")
    lines = [
        f"# Suite `{result['suite']}` for {args.model}",
        "",
        f"Machine: {machine_line()}",
        "",
        f"Command: `{command}` (suite file `{Path(result['suite_path']).name}`; the same as "
        f"`indus eval suite --model {args.model}{f' --suite {args.suite}' if args.suite else ''}`).",
        "",
        f"Total wall time: **{result['wall_s'] / 60:.1f} min** for {len(suite.tasks)} tasks.",
        "",
        "| task | data | model | metric | value | std | also | budget | wall (min) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        std = f"{r['std']:.4f}" if r["std"] is not None else ""
        lines.append(
            f"| {r['task']} | {r['data']} | {r['model']} | {r['metric']} | {r['value']:.4f} | {std} | "
            f"{r['also']} | {_settings(r)} | {r['wall_s'] / 60:.1f} |"
        )
    atomic_write_text(args.out, "\n".join(lines) + "\n")
    atomic_write_json(args.out.with_suffix(".json"), {"command": command, "machine": machine_line(), **result})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
