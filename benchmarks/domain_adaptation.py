"""Domain adaptation of a general encoder: minilm against minilm continued on the science corpus with random and
with keyword masking (INDUS-SDE), scored on science NER with a small training set.

Each continued run starts from minilm (``indus pretrain --init-from minilm``: a fresh MLM head tied to the input
embeddings is fitted alone first, then everything trains) for the same CPU-minute budget on the same corpus
sample; the only difference is the masking (``random``: RoBERTa's 15%; ``keyword``: 30%, 60% of the masks on
each document's TF-IDF keywords). The three encoders are then fine-tuned on the same subset of NER training
sentences with the same settings and seeds and scored on the full test split (strict entity-level F1). The
held-out MLM loss before and after continued training is measured on the same held-out sequences under the same
random 15% masks (the loop's fixed evaluation masks) for every model.

Run (one heavy job at a time on shared machines)::

    flock /tmp/indus-bench.lock .venv/bin/python benchmarks/domain_adaptation.py --minutes 30 --seeds 3 \
        --data bc5cdr ncbi-disease --bf16

or phase by phase, one phase per core (each pretraining run and each NER set is its own phase; ``render``
writes the results from what the phases left in ``--work``)::

    .venv/bin/python benchmarks/domain_adaptation.py pretrain --masking random --minutes 30 &
    .venv/bin/python benchmarks/domain_adaptation.py pretrain --masking keyword --minutes 30; wait
    .venv/bin/python benchmarks/domain_adaptation.py ner --data bc5cdr --seeds 3 --bf16 &
    .venv/bin/python benchmarks/domain_adaptation.py ner --data ncbi-disease --seeds 3 --bf16; wait
    .venv/bin/python benchmarks/domain_adaptation.py render --data bc5cdr ncbi-disease

Writes ``benchmarks/results/domain_adaptation.md`` and ``domain_adaptation.json``; the runs go to
``runs/domain_adaptation/``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
from benchmarks.machine import machine_line  # noqa: E402
from indus.atomic import atomic_write_json, atomic_write_text  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parents[1]


def sample_corpus(src: Path, dst: Path, every: int) -> int:
    """Every ``every``-th document of ``src`` (the corpus is ordered by source, so this spans all sources)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f"{dst.name}.{os.getpid()}.tmp")  # two phases may sample at once: each renames its own
    n = 0
    with gzip.open(src, "rt", encoding="utf-8") as fin, tmp.open("w", encoding="utf-8") as fout:
        for i, line in enumerate(fin):
            if i % every == 0:
                fout.write(line)
                n += 1
    os.replace(tmp, dst)
    return n


def heldout_loss(model_dir: Path, cfg) -> float:
    """Held-out MLM loss of a saved model under random 15% masks: the loop's fixed evaluation masks."""
    import torch
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    from indus.encoder.data import PackedCorpus, build_packed_dataset, corpus_split
    from indus.encoder.loop import evaluate
    from indus.encoder.masking import MaskingSpec
    from indus.encoder.mlm import MaskedLM

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForMaskedLM.from_pretrained(model_dir)
    _, valid_files = corpus_split(cfg.train_files, cfg.valid_files)
    valid = PackedCorpus(
        build_packed_dataset(valid_files, tok, cfg.seq_len, cache_dir=cfg.cache_dir, progress=False, split="heldout"),
        cfg.seed,
    ).head(cfg.valid_max_seqs)
    objective = MaskedLM(model, MaskingSpec.from_tokenizer(tok, 0.15))
    s, n = evaluate(
        objective,
        valid,
        cfg.batch_size,
        torch.device("cpu"),
        torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16),
    )
    return s / n


PHASES = ("all", "pretrain", "ner", "render")
MASKINGS = ("random", "keyword")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "phase",
        nargs="?",
        default="all",
        choices=PHASES,
        help="all (default): every step in turn; or one step, so that runs can share a machine's cores: "
        "pretrain (one --masking), ner (one or more --data), render (the results files from what is done)",
    )
    parser.add_argument("--masking", choices=MASKINGS, nargs="+", default=list(MASKINGS), help="pretrain phase")
    parser.add_argument("--minutes", type=float, default=7.0, help="CPU minutes of continued pretraining per run")
    parser.add_argument("--every", type=int, default=20, help="train on every N-th corpus document")
    parser.add_argument("--pretrain-lr", type=float, default=1e-4)
    parser.add_argument("--data", nargs="+", default=["bc5cdr"], help="NER datasets")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument(
        "--lr", default="auto", help="NER fine-tuning learning rate, or auto (chosen on dev per model, default)"
    )
    parser.add_argument("--bf16", action="store_true", help="NER fine-tuning under bf16 autocast")
    parser.add_argument("--max-train-sentences", type=int, default=2000)
    parser.add_argument("--head-warmup-steps", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a loaded machine)")
    parser.add_argument("--work", type=Path, default=REPO / "runs" / "domain_adaptation")
    parser.add_argument("--out", type=Path, default=RESULTS / "domain_adaptation.md")
    args = parser.parse_args(argv)
    if args.lr != "auto":
        try:
            args.lr = float(args.lr)
        except ValueError:
            parser.error(f"--lr: expected a number or auto, got {args.lr!r}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    data_root = Path(os.environ.get("INDUS_DATA") or REPO.parent.parent / "shared" / "data")
    if not (data_root / "corpus" / "train.jsonl.gz").is_file():
        data_root = Path("/work/shared/data")
    os.environ["INDUS_DATA"] = str(data_root)

    import torch

    torch.set_num_threads(args.threads)
    if args.phase in ("all", "pretrain"):
        for masking in args.masking:
            run_pretrain(args, data_root, masking)
    if args.phase in ("all", "ner"):
        for data in args.data:
            run_ner(args, data)
    if args.phase in ("all", "render"):
        render(args)


def run_pretrain(args: argparse.Namespace, data_root: Path, masking: str) -> None:
    """Continue minilm on the corpus sample with ``masking``; the run's summary goes to ``pretrain-MASKING.json``."""
    from indus.config import build_config
    from indus.encoder.configs import PretrainConfig
    from indus.encoder.pretrain import pretrain
    from indus.encoder.runlog import read_log

    started = time.perf_counter()
    corpus = args.work / "corpus" / f"train-every{args.every}.jsonl"
    n_docs = sample_corpus(data_root / "corpus" / "train.jsonl.gz", corpus, args.every)
    base = {
        "init_from": "minilm",
        "train_files": [str(corpus)],
        "valid_files": [str(data_root / "corpus" / "valid.jsonl.gz")],
        "seq_len": 128,
        "batch_size": 16,
        "lr": args.pretrain_lr,
        "max_minutes": args.minutes,
        "eval_every": 20,
        "checkpoint_every": 10_000,
        "log_every": 5,
        "valid_max_seqs": 64,
        "head_warmup_steps": args.head_warmup_steps,
        "cache_dir": str(args.work / "cache" / masking),
    }
    out = args.work / f"minilm-{masking}"
    cfg = build_config(PretrainConfig, {**base, "masking": masking})
    metrics = pretrain(cfg, out, overwrite=True)
    curve = [(r["step"], r["valid_loss"]) for r in read_log(out / "log.jsonl") if "valid_loss" in r]
    summary = {
        "dir": str(out),
        "minutes": args.minutes,
        "every": args.every,
        "pretrain_lr": args.pretrain_lr,
        "head_warmup_steps": args.head_warmup_steps,
        "threads": args.threads,
        "corpus_documents": n_docs,
        "metrics": metrics,
        "curve": curve,
        "heldout_loss_random_masks": heldout_loss(out, cfg),
        "wall_s": time.perf_counter() - started,
    }
    atomic_write_json(args.work / f"pretrain-{masking}.json", json.loads(json.dumps(summary, default=str)))
    print(
        f"{masking}: {metrics['steps']} steps, {metrics['tokens_seen']:,} tokens, held-out loss "
        f"{curve[0][1]:.3f} -> {summary['heldout_loss_random_masks']:.3f}",
        flush=True,
    )


def run_ner(args: argparse.Namespace, data: str) -> None:
    """Fine-tune minilm and the continued encoders on ``data``; the results go to ``ner-DATA.json``."""
    from indus.evaluation.ner import NEREvaluator

    started = time.perf_counter()
    evaluator = NEREvaluator(
        seeds=args.seeds,
        epochs=args.epochs,
        lr=args.lr,
        batch_size=16,
        max_train_sentences=args.max_train_sentences,
        split="test",
        bf16=args.bf16,
        progress=False,
    )
    models = {"minilm": "minilm"} | {f"minilm + {m} masking": str(args.work / f"minilm-{m}") for m in MASKINGS}
    results: dict[str, dict] = {}
    for name, spec in models.items():
        results[name] = evaluator.evaluate(spec, data).to_json()
        r = results[name]
        print(
            f"{data} {name}: lr {(r.get('lr_choice') or {}).get('lr')} f1 {r['f1']:.4f} ± {r['f1_std']:.4f}", flush=True
        )
    summary = {
        "data": data,
        "seeds": args.seeds,
        "epochs": args.epochs,
        "lr": args.lr,
        "bf16": args.bf16,
        "max_train_sentences": args.max_train_sentences,
        "threads": args.threads,
        "results": results,
        "wall_s": time.perf_counter() - started,
    }
    atomic_write_json(args.work / f"ner-{data}.json", json.loads(json.dumps(summary, default=str)))


def render(args: argparse.Namespace) -> None:
    """The results files from the phases' summaries in ``--work`` (every masking, the ``--data`` sets)."""
    missing = [
        p
        for p in [args.work / f"pretrain-{m}.json" for m in MASKINGS] + [args.work / f"ner-{d}.json" for d in args.data]
        if not p.is_file()
    ]
    if missing:
        sys.exit(f"render: not run yet: {', '.join(str(p) for p in missing)}")
    runs = {m: json.loads((args.work / f"pretrain-{m}.json").read_text()) for m in MASKINGS}
    ner = {d: json.loads((args.work / f"ner-{d}.json").read_text()) for d in args.data}
    # minilm's own held-out loss: the random run's step-0 evaluation (head fitted, encoder untouched, same masks)
    before = runs["random"]["curve"][0][1]
    write_results(args.out, runs, before, ner)


def lr_text(r: dict) -> str:
    """The learning rate a model trained at and how it was chosen (``auto``: the dev grid)."""
    choice = r.get("lr_choice") or {}
    if choice.get("mode") != "auto":
        return f"{choice.get('lr', r.get('lr'))}"
    grid = ", ".join(f"{lr}: {v['dev']:.3f}" for lr, v in (choice.get("grid") or {}).items())
    return f"{choice['lr']:g} (dev F1 {grid})"


def thin(curve: list, every: int = 5) -> list:
    """Every ``every``-th point of a curve, and its last."""
    return [p for i, p in enumerate(curve) if i % every == 0 or i == len(curve) - 1]


def plot_curves(runs: dict, path: Path) -> Path:
    """The held-out MLM loss of each continued run against its step, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    for masking, r in runs.items():
        steps, losses = zip(*r["curve"], strict=True)
        ax.plot(steps, losses, label=f"{masking} masking (its own masks)")
    ax.set_xlabel("optimizer step (batch 16 x 128 tokens)")
    ax.set_ylabel("held-out MLM loss")
    ax.set_title("minilm continued on the science corpus")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)
    return path


def at_grid_edge(choice: dict) -> bool:
    """Whether a dev-chosen learning rate is the grid's smallest or largest value."""
    grid = [float(k) for k in choice.get("grid") or {}]
    return choice.get("mode") == "auto" and len(grid) > 1 and choice["lr"] in (min(grid), max(grid))


def write_results(out: Path, runs: dict, before: float, ner: dict) -> None:
    mr = runs["random"]
    pre = ".venv/bin/python benchmarks/domain_adaptation.py"
    commands = (
        [
            f"{pre} pretrain --masking {m} --minutes {r['minutes']:g} --every {r['every']} "
            f"--head-warmup-steps {r['head_warmup_steps']} --threads {r['threads']}"
            for m, r in runs.items()
        ]
        + [
            f"{pre} ner --data {d} --seeds {r['seeds']} --epochs {r['epochs']:g} --lr {r['lr']}"
            + (" --bf16" if r["bf16"] else "")
            + f" --max-train-sentences {r['max_train_sentences']} --threads {r['threads']}"
            for d, r in ner.items()
        ]
        + [f"{pre} render --data {' '.join(ner)}"]
    )
    lines = [
        "# Domain adaptation: minilm vs minilm continued on the science corpus",
        "",
        f"Machine: {machine_line()}; shared with other agents' jobs (load varied), so the pretraining budget "
        "is in minutes of this machine, the same for both runs. The two pretraining runs ran side by side, one "
        "torch thread each.",
        "",
        "Commands (one phase per core at a time; `all` runs them in turn):",
        "",
        *[f"    {c}" for c in commands],
        "",
        f"Continued pretraining (each run): `indus pretrain --init-from minilm` on every {mr['every']}th document "
        f"of the corpus ({mr['corpus_documents']} documents), a step budget of {mr['minutes']:g} minutes at the "
        f"step time measured when the run starts ({mr['threads']} torch thread; the training time each run took is "
        f"in the table), seq_len 128, batch 16, lr {mr['pretrain_lr']:g}, bf16 autocast, a new MLM head tied to "
        f"the embeddings fitted alone for {mr['head_warmup_steps']} steps first. Random masking: 15%; keyword "
        "masking: 30%, 60% of the masks on each document's top-25% TF-IDF tokens.",
        "",
        "## Held-out masked-LM loss (same 64 held-out sequences, same random 15% masks)",
        "",
        "| model | steps | tokens | training min | held-out MLM loss |",
        "|---|---|---|---|---|",
        f"| minilm (head fitted, encoder as released) | 0 | 0 | 0 | {before:.3f} |",
        *[
            f"| minilm + {m} masking | {r['metrics']['steps']} | {r['metrics']['tokens_seen']:,} | "
            f"{r['metrics']['train_s'] / 60:.1f} | {r['heldout_loss_random_masks']:.3f} |"
            for m, r in runs.items()
        ],
        "",
        "Held-out loss during the runs (each run's own masks: the keyword run's are harder, 30% mostly on "
        "keywords, so its curve sits higher): "
        f"![held-out loss]({plot_curves(runs, out.with_name(out.stem + '_loss.png')).name}). "
        "Random-masking run (step: loss): " + ", ".join(f"{s}: {v:.3f}" for s, v in thin(mr["curve"])) + ".",
        "",
    ]
    for data, summary in ner.items():
        res = summary["results"]
        first = next(iter(res.values()))
        lines += [
            f"## NER: {data} ({first['train_sentences']} training sentences, up to {summary['epochs']:g} epochs "
            f"with early stopping on dev when the lr is chosen on dev, {summary['seeds']} seed(s); full "
            f"{first['split']} split, {first['eval_sentences']} sentences, strict entity F1)",
            "",
            "| model | F1 | precision | recall | F1 per seed | collapsed seeds | lr (dev grid) |",
            "|---|---|---|---|---|---|---|",
        ]
        for name, r in res.items():
            seeds = ", ".join(f"{s['f1']:.4f}" for s in r["per_seed"])
            lines.append(
                f"| {name} | {r['f1']:.4f} ± {r['f1_std']:.4f} | {r['precision']:.4f} | {r['recall']:.4f} | "
                f"{seeds} | {r.get('collapsed_seeds', 0)} | {lr_text(r)} |"
            )
        lines.append("")
    total = sum(r["wall_s"] for r in runs.values()) + sum(r["wall_s"] for r in ner.values())
    lines += [
        "## Answer",
        "",
        answer(runs, before, ner),
        "",
        f"Wall time of the phases, summed: {total / 60:.1f} min.",
    ]
    atomic_write_text(out, "\n".join(lines) + "\n")
    payload = {
        "commands": commands,
        "machine": machine_line(),
        "wall_s_summed": total,
        "heldout_loss_before": before,
        "runs": runs,
        "ner": ner,
    }
    atomic_write_json(out.with_suffix(".json"), payload)
    print(f"wrote {out}")


def answer(runs, before, ner) -> str:
    """The result in words, computed from the numbers (whatever they are)."""
    parts, gains, keyword_minus_random = [], [], []
    after_r, after_k = runs["random"]["heldout_loss_random_masks"], runs["keyword"]["heldout_loss_random_masks"]
    parts.append(
        f"Continued pretraining lowered minilm's held-out MLM loss from {before:.3f} to {after_r:.3f} "
        f"(random masking) and {after_k:.3f} (keyword masking)."
    )
    for data, summary in ner.items():
        res = summary["results"]
        base = res["minilm"]
        seeds = summary["seeds"]
        for label, key in (("random", "minilm + random masking"), ("keyword", "minilm + keyword masking")):
            r = res[key]
            delta = r["f1"] - base["f1"]
            se = math.sqrt((r["f1_std"] ** 2 + base["f1_std"] ** 2) / seeds) if seeds > 1 else None
            if se is None:
                verdict = "1 seed: no spread measured, so a small difference cannot be told from noise"
            elif abs(delta) <= 2 * se:
                verdict = f"± {se:.4f} s.e. over seeds: within two standard errors, no measurable difference"
            else:
                verdict = f"± {se:.4f} s.e. over seeds: beyond two standard errors"
                gains.append(delta > 0)
            parts.append(
                f"On {data}, continued pretraining with {label} masking changed F1 by {delta:+.4f} ({verdict})."
            )
        dk = res["minilm + keyword masking"]["f1"] - res["minilm + random masking"]["f1"]
        keyword_minus_random.append(dk)
        parts.append(f"Keyword masking minus random masking on {data}: {dk:+.4f} F1.")
    if any(gains):
        parts.append("At this budget continued pretraining bought measurable F1 where marked above.")
    else:
        parts.append(
            "So at this budget continued pretraining bought no measurable NER F1 on any set (no gain beyond two "
            "standard errors; a loss where marked)"
            + (
                ", and keyword masking scored below random masking on every set."
                if all(d < 0 for d in keyword_minus_random)
                else "."
            )
        )
    edge = sorted(
        {
            f"{name} on {data}"
            for data, summary in ner.items()
            for name, r in summary["results"].items()
            if at_grid_edge(r.get("lr_choice") or {})
        }
    )
    if edge:
        parts.append(
            f"The dev-chosen learning rate is at the edge of the grid for {', '.join(edge)}: a wider grid may "
            "fine-tune each of them better (the same grid for every encoder, so the comparison stands)."
        )
    curve = runs["random"]["curve"]
    tail = [v for step, v in curve if step >= 0.8 * curve[-1][0]]
    tokens = runs["random"]["metrics"]["tokens_seen"]
    parts.append(
        f"The random-masking run trained {runs['random']['metrics']['train_s'] / 60:.0f} minutes ({tokens:,} "
        f"tokens); over its last fifth the held-out loss moved by {tail[-1] - tail[0]:+.3f} (the learning rate "
        "decays to zero by the last step, so a flat end is partly the schedule)."
    )
    return " ".join(parts)


if __name__ == "__main__":
    main()
