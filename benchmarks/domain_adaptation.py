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

    flock /tmp/indus-bench.lock .venv/bin/python benchmarks/domain_adaptation.py

Writes ``benchmarks/results/domain_adaptation.md`` and ``domain_adaptation.json``; the runs go to
``runs/domain_adaptation/``.
"""

from __future__ import annotations

import argparse
import gzip
import json
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
    n = 0
    with gzip.open(src, "rt", encoding="utf-8") as fin, dst.open("w", encoding="utf-8") as fout:
        for i, line in enumerate(fin):
            if i % every == 0:
                fout.write(line)
                n += 1
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=7.0, help="CPU minutes of continued pretraining per run")
    parser.add_argument("--every", type=int, default=20, help="train on every N-th corpus document")
    parser.add_argument("--pretrain-lr", type=float, default=1e-4)
    parser.add_argument("--data", nargs="+", default=["bc5cdr"], help="NER datasets")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--lr", type=float, default=2e-4, help="NER fine-tuning learning rate")
    parser.add_argument("--max-train-sentences", type=int, default=2000)
    parser.add_argument("--head-warmup-steps", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a loaded machine)")
    parser.add_argument("--work", type=Path, default=REPO / "runs" / "domain_adaptation")
    parser.add_argument("--out", type=Path, default=RESULTS / "domain_adaptation.md")
    args = parser.parse_args(argv)
    data_root = Path(os.environ.get("INDUS_DATA") or REPO.parent.parent / "shared" / "data")
    if not (data_root / "corpus" / "train.jsonl.gz").is_file():
        data_root = Path("/work/shared/data")
    os.environ["INDUS_DATA"] = str(data_root)

    import torch

    from indus.config import build_config
    from indus.encoder.configs import PretrainConfig
    from indus.encoder.pretrain import pretrain
    from indus.encoder.runlog import read_log
    from indus.evaluation.ner import NEREvaluator

    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    corpus = args.work / "corpus" / "train.jsonl"
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
        "cache_dir": str(args.work / "cache"),
    }
    runs: dict[str, dict] = {}
    for masking in ("random", "keyword"):
        out = args.work / f"minilm-{masking}"
        cfg = build_config(PretrainConfig, {**base, "masking": masking})
        metrics = pretrain(cfg, out, overwrite=True)
        curve = [(r["step"], r["valid_loss"]) for r in read_log(out / "log.jsonl") if "valid_loss" in r]
        runs[masking] = {
            "dir": out,
            "cfg": cfg,
            "metrics": metrics,
            "curve": curve,
            "heldout_loss_random_masks": heldout_loss(out, cfg),
        }
        print(
            f"{masking}: {metrics['steps']} steps, {metrics['tokens_seen']:,} tokens, held-out loss "
            f"{curve[0][1]:.3f} -> {runs[masking]['heldout_loss_random_masks']:.3f}",
            flush=True,
        )
    # minilm's own held-out loss: the random run's step-0 evaluation (head fitted, encoder untouched, same masks)
    before = runs["random"]["curve"][0][1]

    evaluator = NEREvaluator(
        seeds=args.seeds,
        epochs=args.epochs,
        lr=args.lr,
        batch_size=16,
        max_train_sentences=args.max_train_sentences,
        split="test",
        progress=False,
    )
    models = {
        "minilm": "minilm",
        "minilm + random masking": str(runs["random"]["dir"]),
        "minilm + keyword masking": str(runs["keyword"]["dir"]),
    }
    ner: dict[str, dict[str, dict]] = {}
    for data in args.data:
        ner[data] = {}
        for name, spec in models.items():
            ner[data][name] = evaluator.evaluate(spec, data)
            r = ner[data][name]
            print(f"{data} {name}: f1 {r['f1']:.4f} ± {r['f1_std']:.4f}", flush=True)
    total = time.perf_counter() - started
    write_results(args, argv, runs, before, ner, n_docs, total)


def write_results(args, argv, runs, before, ner, n_docs, total) -> None:
    extra = " ".join(sys.argv[1:] if argv is None else argv)
    command = "flock /tmp/indus-bench.lock .venv/bin/python benchmarks/domain_adaptation.py" + (
        f" {extra}" if extra else ""
    )
    mr, mk = runs["random"]["metrics"], runs["keyword"]["metrics"]
    lines = [
        "# Domain adaptation: minilm vs minilm continued on the science corpus",
        "",
        f"Machine: {machine_line()}; shared with other agents' jobs (load varied), so the pretraining budget "
        "is in minutes of this machine, the same for both runs.",
        "",
        f"Command: `{command}`",
        "",
        f"Continued pretraining (each run): `indus pretrain --init-from minilm` on every {args.every}th document "
        f"of the corpus ({n_docs} documents), {args.minutes:g} CPU minutes ({args.threads} torch thread), "
        f"seq_len 128, batch 16, lr {args.pretrain_lr:g}, a new MLM head tied to the embeddings fitted alone "
        f"for {args.head_warmup_steps} steps first. Random masking: 15%; keyword masking: 30%, 60% of the "
        "masks on each document's top-25% TF-IDF tokens.",
        "",
        "## Held-out masked-LM loss (same 64 held-out sequences, same random 15% masks)",
        "",
        "| model | steps | tokens | held-out MLM loss |",
        "|---|---|---|---|",
        f"| minilm (head fitted, encoder as released) | 0 | 0 | {before:.3f} |",
        f"| minilm + random masking | {mr['steps']} | {mr['tokens_seen']:,} | "
        f"{runs['random']['heldout_loss_random_masks']:.3f} |",
        f"| minilm + keyword masking | {mk['steps']} | {mk['tokens_seen']:,} | "
        f"{runs['keyword']['heldout_loss_random_masks']:.3f} |",
        "",
        "Held-out loss curve of the random-masking run (step: loss): "
        + ", ".join(f"{s}: {v:.3f}" for s, v in runs["random"]["curve"])
        + ".",
        "",
    ]
    for data, res in ner.items():
        first = next(iter(res.values()))
        lines += [
            f"## NER: {data} ({first['train_sentences']} training sentences, {args.epochs:g} epochs, lr "
            f"{args.lr:g}, {args.seeds} seed(s); full {first['split']} split, {first['eval_sentences']} "
            "sentences, strict entity F1)",
            "",
            "| model | F1 | precision | recall | F1 per seed |",
            "|---|---|---|---|---|",
        ]
        for name, r in res.items():
            seeds = ", ".join(f"{s['f1']:.4f}" for s in r["per_seed"])
            lines.append(
                f"| {name} | {r['f1']:.4f} ± {r['f1_std']:.4f} | {r['precision']:.4f} | {r['recall']:.4f} | {seeds} |"
            )
        lines.append("")
    lines += ["## Answer", "", answer(runs, before, ner, args), "", f"Total wall time {total / 60:.1f} min."]
    atomic_write_text(args.out, "\n".join(lines) + "\n")
    payload = {
        "command": command,
        "machine": machine_line(),
        "wall_s": total,
        "corpus_documents": n_docs,
        "heldout_loss_before": before,
        "runs": {
            k: {
                "metrics": v["metrics"],
                "curve": v["curve"],
                "heldout_loss_random_masks": v["heldout_loss_random_masks"],
            }
            for k, v in runs.items()
        },
        "ner": ner,
    }
    atomic_write_json(args.out.with_suffix(".json"), json.loads(json.dumps(payload, default=str)))
    print(f"wrote {args.out}")


def answer(runs, before, ner, args) -> str:
    """The result in words, computed from the numbers (whatever they are)."""
    parts = []
    after_r, after_k = runs["random"]["heldout_loss_random_masks"], runs["keyword"]["heldout_loss_random_masks"]
    parts.append(
        f"Continued pretraining lowered minilm's held-out MLM loss from {before:.3f} to {after_r:.3f} "
        f"(random masking) and {after_k:.3f} (keyword masking); with a new MLM head fitted for only a few steps, "
        "much of that drop may be the head still fitting rather than the encoder learning the corpus."
    )
    for data, res in ner.items():
        base = res["minilm"]["f1"]
        dr, dk = res["minilm + random masking"]["f1"] - base, res["minilm + keyword masking"]["f1"] - base
        noise = max(r["f1_std"] for r in res.values())
        seeds = f"{args.seeds} seed" + ("s" if args.seeds > 1 else "")
        within = (
            f"(mean of {seeds}; seed std up to {noise:.4f})"
            if args.seeds > 1
            else "(1 seed: no seed-to-seed spread was measured, so a difference smaller than that spread cannot "
            "be told apart from noise)"
        )
        parts.append(
            f"On {data}, continued pretraining changed F1 by {dr:+.4f} with random masking and {dk:+.4f} "
            f"with keyword masking {within}."
        )
    curve = runs["random"]["curve"]
    falling = len(curve) >= 2 and curve[-1][1] < curve[-2][1]
    tokens = runs["random"]["metrics"]["tokens_seen"]
    parts.append(
        f"This is {args.minutes:g} CPU minutes per run ({tokens:,} tokens); the held-out loss was "
        + (
            "still falling at the end of the run, so a longer run would keep adapting the encoder. "
            if falling
            else "flat at the end of the run. "
        )
        + "The issue's 30-minute, 3-seed, two-dataset table is what would settle whether it buys F1."
    )
    return " ".join(parts)


if __name__ == "__main__":
    main()
