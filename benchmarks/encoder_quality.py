"""Encoder quality on 2 CPU cores: a `tiny` INDUS encoder vs random init, and MiniLMv2 vs plain MLM for a student.

Run (the whole script under the CPU lock; about 1 h 50 min from nothing, 20 min when the pretrained models exist)::

    nohup flock /tmp/indus-cpu.lock .venv/bin/python benchmarks/encoder_quality.py > runs/quality.log 2>&1 &

Steps (each skipped when its output exists, so an interrupted run continues; models stay in ``runs/quality/``):

1. INDUSBPE with ``VOCAB`` tokens on the corpus (``indus tokenizer train``);
2. ``tiny`` teacher: ``indus pretrain --config configs/pretrain/cpu-tiny.yaml`` for a ``TEACHER_MINUTES`` training
   budget (the step count is set from the step time measured at the start);
3. ``nano`` student distilled from it (``indus distill --config configs/distill/cpu-nano.yaml``) and the same ``nano``
   trained with plain MLM (``configs/pretrain/cpu-tiny.yaml`` with ``preset=nano``), each for ``STUDENT_MINUTES``;
4. ``indus eval ner`` on BC5CDR for every model, ``random:tiny`` included (random weights, the same tokenizer),
   with one protocol: at each budget (``BUDGETS``: training sentences x epochs) the fine-tuning learning rate is
   chosen per model on the dev split (``LR_GRID``, seed 0, 1,000 dev sentences), then 1,000 test sentences (a
   fixed subset) are scored at that learning rate over ``SEEDS`` seeds.

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
from indus.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text  # noqa: E402
from indus.config import read_yaml  # noqa: E402

RUNS = ROOT / "runs" / "quality-v3"
INDUS = [sys.executable, "-m", "indus"]
VOCAB = 16384  # the previous run (50,265, dropout 0.1, 30 min) is kept in results/encoder_quality_50k_30min.md
TEACHER_MINUTES, STUDENT_MINUTES = 60, 10  # training budgets (max_minutes: step count set from the measured step time)
SEEDS = 2
LR_GRID = (3e-4, 1e-3)
BUDGETS = {"2000x3": (2000, 3), "500x10": (500, 10)}  # (training sentences, epochs): ~190 and ~160 steps
NER_COMMON = ["--data", "bc5cdr", "--batch-size", "32", "--bf16"]


def run(cmd: list[str]) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(
        cmd, check=True, cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    )


def train_models(tokenizer: Path) -> dict[str, Path]:
    teacher, distilled, scratch = RUNS / "tiny-teacher", RUNS / "nano-distilled", RUNS / "nano-scratch"
    if not (teacher / "metrics.json").is_file():
        run(
            [
                *INDUS,
                "pretrain",
                "--config",
                "configs/pretrain/cpu-tiny.yaml",
                "--out",
                str(teacher),
                "--resume",
                "--set",
                f"tokenizer={tokenizer}",
                "--set",
                f"max_minutes={TEACHER_MINUTES}",
            ]
        )
    if not (distilled / "metrics.json").is_file():
        run(
            [
                *INDUS,
                "distill",
                "--teacher",
                str(teacher),
                "--student-preset",
                "nano",
                "--config",
                "configs/distill/cpu-nano.yaml",
                "--out",
                str(distilled),
                "--resume",
                "--set",
                f"max_minutes={STUDENT_MINUTES}",
            ]
        )
    if not (scratch / "metrics.json").is_file():
        run(
            [
                *INDUS,
                "pretrain",
                "--config",
                "configs/pretrain/cpu-tiny.yaml",
                "--out",
                str(scratch),
                "--resume",
                "--set",
                f"tokenizer={tokenizer}",
                "--set",
                "preset=nano",
                "--set",
                f"max_minutes={STUDENT_MINUTES}",
            ]
        )
    return {"teacher": teacher, "distilled": distilled, "scratch": scratch}


def ner_run(model: str, key: str, budget: str, split: str, lr: float, seeds: int, data_root: Path) -> dict:
    """One ``indus eval ner`` call, cached as JSON under ``runs/quality/ner/``."""
    sentences, epochs = BUDGETS[budget]
    out = RUNS / "ner" / f"{key}-{budget}-{split}-lr{lr:g}.json"
    if not out.is_file():
        eval_limit = ["--max-eval-sentences", "1000"]
        run(
            [
                *INDUS,
                "--data-root",
                str(data_root),
                "eval",
                "ner",
                "--model",
                model,
                *NER_COMMON,
                "--max-train-sentences",
                str(sentences),
                "--epochs",
                str(epochs),
                "--split",
                split,
                *eval_limit,
                "--lr",
                f"{lr:g}",
                "--seeds",
                str(seeds),
                "--json",
                str(out),
            ]
        )
    return json.loads(out.read_text())


def ner_protocol(model: str, key: str, data_root: Path) -> dict[str, dict]:
    """Per budget: dev F1 over the lr grid (seed 0), the dev-best lr, test F1 at it over ``SEEDS`` seeds."""
    out = {}
    for budget in BUDGETS:
        dev = {lr: ner_run(model, key, budget, "dev", lr, 1, data_root)["f1"] for lr in LR_GRID}
        best = max(LR_GRID, key=lambda lr: dev[lr])
        test = ner_run(model, key, budget, "test", best, SEEDS, data_root)
        out[budget] = {
            "dev_f1": {f"{lr:g}": f1 for lr, f1 in dev.items()},
            "lr": best,
            "test_f1": test["f1"],
            "test_f1_std": test["f1_std"],
            "test_f1_seeds": [r["f1"] for r in test["per_seed"]],
            "train_steps": test["per_seed"][0]["train_steps"],
            "test_sentences": test["eval_sentences"],
        }
    return out


def initial_valid_loss(run_dir: Path) -> float:
    """The held-out MLM loss at step 0 (random weights), from the run's log."""
    first = next(json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines() if "valid_loss" in line)
    return first["valid_loss"]


def unigram_entropy(tokenizer_dir: Path, files: list[str]) -> float:
    """Entropy (nats) of the token frequencies of ``files`` under the tokenizer: the MLM loss of a model that ignores
    context, the level of the early plateau."""
    import math
    from collections import Counter

    from indus.data.corpus import iter_texts
    from indus.models import load_tokenizer

    backend = load_tokenizer(str(tokenizer_dir)).backend_tokenizer
    counts: Counter[int] = Counter()
    for f in files:
        for enc in backend.encode_batch(list(iter_texts(ROOT / f)), add_special_tokens=False):
            counts.update(enc.ids)
    total = sum(counts.values())
    return -sum(c / total * math.log(c / total) for c in counts.values())


def gap(a: dict, b: dict) -> str:
    """``a - b`` of mean test F1, with the two standard errors combined."""
    diff = a["test_f1"] - b["test_f1"]
    se = (a["test_f1_std"] ** 2 / SEEDS + b["test_f1_std"] ** 2 / SEEDS) ** 0.5
    return f"{diff:+.4f} (± {se:.4f} s.e.)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--tokenizer", type=Path, default=ROOT / "runs" / "tokenizers" / f"indusbpe-{VOCAB}")
    args = parser.parse_args()
    if not (args.tokenizer / "tokenizer.json").is_file():
        run(
            [
                *INDUS,
                "tokenizer",
                "train",
                "--corpus",
                str(args.data / "corpus" / "train.jsonl.gz"),
                "--vocab-size",
                str(VOCAB),
                "--lowercase",
                "--out",
                str(args.tokenizer),
            ]
        )
    models = train_models(args.tokenizer)
    metrics = {k: json.loads((v / "metrics.json").read_text()) for k, v in models.items()}
    teacher = models["teacher"]
    teacher_cfg = read_yaml(teacher / "config.yaml")
    pretrain_dropout = 0.1 if teacher_cfg.get("dropout") is None else teacher_cfg["dropout"]
    rows = [  # (label, key, model spec, training metrics, held-out MLM loss)
        ("random:tiny (same tokenizer)", "random-tiny", f"random:tiny@{teacher}", None, initial_valid_loss(teacher)),
        (
            f"tiny, MLM {TEACHER_MINUTES} min (teacher)",
            "teacher",
            str(teacher),
            metrics["teacher"],
            metrics["teacher"]["valid_loss"],
        ),
        (
            f"nano, MLM {STUDENT_MINUTES} min (scratch)",
            "scratch",
            str(models["scratch"]),
            metrics["scratch"],
            metrics["scratch"]["valid_loss"],
        ),
        (
            f"nano, MiniLMv2 {STUDENT_MINUTES} min (distilled)",
            "distilled",
            str(models["distilled"]),
            metrics["distilled"],
            metrics["distilled"]["valid_loss"],
        ),
    ]
    results = []
    for name, key, spec, m, valid_loss in rows:
        results.append(
            {
                "model": name,
                "key": key,
                "spec": spec,
                "params": (m or {}).get("params"),
                "train_min": round(m["train_s"] / 60, 1) if m else 0.0,
                "steps": (m or {}).get("steps"),
                "tokens_seen": (m or {}).get("tokens_seen"),
                "valid_mlm_loss": valid_loss,
                "valid_distill_loss": (m or {}).get("valid_distill_loss"),
                "ner": ner_protocol(spec, key, args.data),
            }
        )
    by_key = {r["key"]: r for r in results}

    budgets = " and ".join(f"{s:,} training sentences x {e} epochs" for s, e in BUDGETS.values())
    lines = [
        "# Encoder quality on 2 CPU cores",
        "",
        f"Machine: {machine_line()}",
        "",
        "Command: `flock /tmp/indus-cpu.lock .venv/bin/python benchmarks/encoder_quality.py`",
        "",
        f"Pretraining: `corpus/train.jsonl.gz`, INDUSBPE {VOCAB:,} (uncased), `configs/pretrain/cpu-tiny.yaml` "
        f"(sequences of 128, batch 32, peak lr {teacher_cfg['lr']:g}, warm-up {teacher_cfg['warmup_ratio']:g} "
        f"of the run, dropout {pretrain_dropout:g} while pretraining and 0.1 in every fine-tuning), "
        f"the teacher for a {TEACHER_MINUTES}-minute budget, each student for {STUDENT_MINUTES} "
        "minutes. Held-out MLM loss on 256 packed sequences "
        f"of `corpus/valid.jsonl.gz` with fixed masks; the unigram entropy of that file's tokens (the loss of a "
        f"model that ignores context) is {unigram_entropy(args.tokenizer, teacher_cfg['valid_files']):.3f} nats.",
        "",
        f"NER: `indus eval ner --data bc5cdr {' '.join(NER_COMMON[2:])}` at two budgets ({budgets}; the same "
        "fixed training subset for every model). For each model and budget the learning rate is chosen on the "
        f"dev split (1,000 sentences, seed 0) from {', '.join(f'{lr:g}' for lr in LR_GRID)}; test F1 is strict "
        "entity F1 on a fixed 1,000-sentence subset of the BC5CDR test split at that learning rate, mean ± "
        f"sample std over {SEEDS} seeds.",
        "",
        "## Models",
        "",
        "| model | params | training (min) | steps | tokens seen | held-out MLM loss | held-out MiniLMv2 loss |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        params = f"{r['params'] / 1e6:.1f}M" if r["params"] else "-"
        distill_loss = f"{r['valid_distill_loss']:.4f}" if r["valid_distill_loss"] is not None else "-"
        lines.append(
            f"| {r['model']} | {params} | {r['train_min']} | {r['steps'] or '-'} | "
            f"{r['tokens_seen'] or 0:,} | {r['valid_mlm_loss']:.3f} | {distill_loss} |"
        )
    for budget, (sentences, epochs) in BUDGETS.items():
        steps = results[0]["ner"][budget]["train_steps"]
        lines += [
            "",
            f"## BC5CDR, {sentences:,} training sentences x {epochs} epochs ({steps} fine-tuning steps)",
            "",
            "| model | " + " | ".join(f"dev F1, lr {lr:g}" for lr in LR_GRID) + " | chosen lr | test F1 "
            "| test F1 per seed |",
            "|---|" + "---|" * (len(LR_GRID) + 3),
        ]
        for r in results:
            n = r["ner"][budget]
            lines.append(
                f"| {r['model']} | "
                + " | ".join(f"{n['dev_f1'][f'{lr:g}']:.4f}" for lr in LR_GRID)
                + f" | {n['lr']:g} | **{n['test_f1']:.4f} ± {n['test_f1_std']:.4f}** | "
                + ", ".join(f"{x:.4f}" for x in n["test_f1_seeds"])
                + " |"
            )
        b = {k: v["ner"][budget] for k, v in by_key.items()}
        lines += [
            "",
            f"Differences in test F1: teacher - random:tiny {gap(b['teacher'], b['random-tiny'])}; "
            f"distilled - scratch {gap(b['distilled'], b['scratch'])}; "
            f"teacher - distilled {gap(b['teacher'], b['distilled'])}.",
        ]
    d = metrics["distilled"]
    lines += [
        "",
        f"Random rows: held-out MLM loss at step 0 of the corresponding run (random weights). The distilled "
        f"student's MLM loss is measured after fitting its MLM head for {d['head_fit_steps']} steps "
        f"({d['head_fit_s']:.0f} s) with the encoder frozen: MiniLMv2 trains the encoder only. "
        f"Its training time includes the teacher's forward passes (teacher layer {d['teacher_layer']}, "
        f"{d['relation_heads']} relation heads). Training minutes are the measured step time of this run "
        "(evaluation and checkpoints excluded).",
    ]
    results_dir = ROOT / "benchmarks" / "results"
    results_dir.mkdir(parents=True, exist_ok=True)
    curve = results_dir / "encoder_quality_teacher_loss.png"
    atomic_write_bytes(curve, (teacher / "loss_curve.png").read_bytes())
    lines += ["", f"The teacher's loss curve: [{curve.name}]({curve.name})."]
    atomic_write_text(ROOT / "benchmarks" / "results" / "encoder_quality.md", "\n".join(lines) + "\n")
    atomic_write_json(
        ROOT / "benchmarks" / "results" / "encoder_quality.json",
        {
            "machine": machine_line(),
            "vocab": VOCAB,
            "teacher_minutes": TEACHER_MINUTES,
            "student_minutes": STUDENT_MINUTES,
            "lr_grid": LR_GRID,
            "budgets": BUDGETS,
            "seeds": SEEDS,
            "rows": results,
            "metrics": metrics,
        },
    )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
