"""Encoder quality on 2 CPU cores: a `tiny` INDUS encoder vs random init, and MiniLMv2 vs plain MLM for a student.

Run (the whole script under the CPU lock; about 75 minutes on a quiet 2-core machine)::

    nohup flock /tmp/indus-cpu.lock .venv/bin/python benchmarks/encoder_quality.py > runs/quality.log 2>&1 &

Steps (each skipped when its output exists, so an interrupted run continues; models stay in ``runs/quality/``):

1. ``tiny`` teacher: ``indus pretrain --config configs/cpu-tiny.yaml`` for a 30-minute training budget;
2. ``nano`` student distilled from it: ``indus distill --config configs/cpu-distill.yaml`` (10 minutes);
3. the same ``nano`` trained with plain MLM for the same 10 minutes (``cpu-tiny.yaml`` with ``preset=nano``);
4. ``indus eval ner`` on BC5CDR, same fine-tuning budget for every model, including ``random:tiny@teacher`` and
   ``random:nano@teacher`` (random weights, the same INDUSBPE tokenizer).

Writes ``benchmarks/results/encoder_quality.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.machine import machine_line  # noqa: E402
from indus.atomic import atomic_write_json, atomic_write_text  # noqa: E402

RUNS = ROOT / "runs" / "quality"
INDUS = [sys.executable, "-m", "indus"]
TEACHER_MINUTES, STUDENT_MINUTES = 30, 10
NER_ARGS = ["--data", "bc5cdr", "--seeds", "2", "--epochs", "3", "--max-train-sentences", "2000",
            "--max-eval-sentences", "1000", "--lr", "3e-4", "--batch-size", "32"]


def run(cmd: list[str]) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1",
                                                   "TOKENIZERS_PARALLELISM": "false"})


def train_models(tokenizer: Path) -> dict[str, Path]:
    teacher, distilled, scratch = RUNS / "tiny-teacher", RUNS / "nano-distilled", RUNS / "nano-scratch"
    if not (teacher / "metrics.json").is_file():
        run([*INDUS, "pretrain", "--config", "configs/cpu-tiny.yaml", "--out", str(teacher), "--resume",
             "--set", f"tokenizer={tokenizer}", "--set", f"max_minutes={TEACHER_MINUTES}"])
    if not (distilled / "metrics.json").is_file():
        run([*INDUS, "distill", "--teacher", str(teacher), "--student-preset", "nano", "--config",
             "configs/cpu-distill.yaml", "--out", str(distilled), "--resume",
             "--set", f"max_minutes={STUDENT_MINUTES}"])
    if not (scratch / "metrics.json").is_file():
        run([*INDUS, "pretrain", "--config", "configs/cpu-tiny.yaml", "--out", str(scratch), "--resume",
             "--set", f"tokenizer={tokenizer}", "--set", "preset=nano", "--set", f"max_minutes={STUDENT_MINUTES}"])
    return {"teacher": teacher, "distilled": distilled, "scratch": scratch}


def ner(model: str, name: str, data_root: Path) -> dict:
    out = RUNS / f"ner-{name}.json"
    if not out.is_file():
        run([*INDUS, "--data-root", str(data_root), "eval", "ner", "--model", model, *NER_ARGS, "--json", str(out)])
    return json.loads(out.read_text())


def initial_valid_loss(run_dir: Path) -> float:
    """The held-out MLM loss at step 0 (random weights), from the run's log."""
    first = next(json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()
                 if "valid_loss" in line)
    return first["valid_loss"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--tokenizer", type=Path, default=ROOT / "runs" / "tokenizers" / "indusbpe-50265")
    args = parser.parse_args()
    if not (args.tokenizer / "tokenizer.json").is_file():
        run([*INDUS, "tokenizer", "train", "--corpus", str(args.data / "corpus" / "train.jsonl.gz"),
             "--vocab-size", "50265", "--lowercase", "--out", str(args.tokenizer)])
    models = train_models(args.tokenizer)
    metrics = {k: json.loads((v / "metrics.json").read_text()) for k, v in models.items()}
    teacher = models["teacher"]
    rows = [  # (label, file key, model spec, training metrics, held-out MLM loss)
        ("random:tiny (same tokenizer)", "random-tiny", f"random:tiny@{teacher}", None, initial_valid_loss(teacher)),
        ("tiny, MLM 30 min (teacher)", "teacher", str(teacher), metrics["teacher"], metrics["teacher"]["valid_loss"]),
        ("random:nano (same tokenizer)", "random-nano", f"random:nano@{teacher}", None,
         initial_valid_loss(models["scratch"])),
        ("nano, MLM 10 min (scratch)", "scratch", str(models["scratch"]), metrics["scratch"],
         metrics["scratch"]["valid_loss"]),
        ("nano, MiniLMv2 10 min (distilled)", "distilled", str(models["distilled"]), metrics["distilled"],
         metrics["distilled"]["valid_loss"]),
    ]
    results = []
    for name, key, spec, m, valid_loss in rows:
        r = ner(spec, key, args.data)
        results.append({"model": name, "spec": spec, "params": (m or {}).get("params"),
                        "train_min": round(m["train_s"] / 60, 1) if m else 0.0, "steps": (m or {}).get("steps"),
                        "tokens_seen": (m or {}).get("tokens_seen"), "valid_mlm_loss": valid_loss,
                        "valid_distill_loss": (m or {}).get("valid_distill_loss"),
                        "ner_f1": r["f1"], "ner_f1_std": r.get("f1_std"), "ner_seeds": r["seeds"]})

    lines = ["# Encoder quality on 2 CPU cores", "", f"Machine: {machine_line()}", "",
             "Command: `flock /tmp/indus-cpu.lock .venv/bin/python benchmarks/encoder_quality.py`", "",
             "Corpus: `corpus/train.jsonl.gz`, INDUSBPE 50,265 (uncased), sequences of 128. Held-out MLM loss on "
             "256 packed sequences of `corpus/valid.jsonl.gz` with fixed masks. "
             f"NER: `indus eval ner {' '.join(NER_ARGS)}` (strict entity F1 on a fixed 1,000-sentence subset "
             "of the BC5CDR test split, mean ± std over seeds; the same budget for every model).", "",
             "| model | params | training (min) | steps | tokens seen | held-out MLM loss | held-out MiniLMv2 loss | "
             "BC5CDR F1 |", "|---|---|---|---|---|---|---|---|"]
    for r in results:
        params = f"{r['params'] / 1e6:.1f}M" if r["params"] else "-"
        distill_loss = f"{r['valid_distill_loss']:.4f}" if r["valid_distill_loss"] is not None else "-"
        std = f" ± {r['ner_f1_std']:.4f}" if r["ner_f1_std"] else ""
        lines.append(f"| {r['model']} | {params} | {r['train_min']} | {r['steps'] or '-'} | "
                     f"{r['tokens_seen'] or 0:,} | {r['valid_mlm_loss']:.3f} | {distill_loss} | "
                     f"{r['ner_f1']:.4f}{std} |")
    d = metrics["distilled"]
    lines += ["", f"Random rows: held-out MLM loss at step 0 of the corresponding run (random weights). The distilled "
              f"student's MLM loss is measured after fitting its MLM head for {d['head_fit_steps']} steps "
              f"({d['head_fit_s']:.0f} s) with the encoder frozen: MiniLMv2 trains the encoder only. "
              f"Its training time includes the teacher's forward passes (teacher layer {d['teacher_layer']}, "
              f"{d['relation_heads']} relation heads)."]
    (ROOT / "benchmarks" / "results").mkdir(parents=True, exist_ok=True)
    atomic_write_text(ROOT / "benchmarks" / "results" / "encoder_quality.md", "\n".join(lines) + "\n")
    atomic_write_json(ROOT / "benchmarks" / "results" / "encoder_quality.json",
                      {"machine": machine_line(), "rows": results, "metrics": metrics})
    print("\n".join(lines))


if __name__ == "__main__":
    main()
