"""Pretraining throughput: our MLM step against the transformers Trainer path, side by side in one run.

Run (one heavy job at a time on shared machines)::

    flock /tmp/indus-cpu.lock .venv/bin/python benchmarks/pretrain_throughput.py [--steps 12]

The baseline is what users do today: ``Trainer`` + ``DataCollatorForLanguageModeling`` on padded, unpacked chunks
(each paragraph tokenised with truncation to the sequence length, padded to the longest in its batch; the
``run_mlm.py --line_by_line`` path) with the full-vocabulary head in fp32. Every configuration trains the same
model shape (``tiny`` 4x256 and ``mini`` 6x384, INDUSBPE 50,265 tokens, sequences of 128, 32 per batch) on the same
documents of ``corpus/train.jsonl.gz``, AdamW, and counts real (non-pad) tokens per second over timed steps after
warm-up steps. Each optimisation's contribution is the ratio of neighbouring rows:

- packing: Trainer on packed sequences / Trainer on padded chunks;
- masked-only head: our step with the head at masked positions / our step with the full head (both packed, fp32);
- bf16 autocast, torch.compile: each added on top of the previous row;
- end to end: ``indus pretrain`` (its real loop: data, masking, clipping, logging) / the Trainer baseline.

Writes ``benchmarks/results/pretrain_throughput.{md,json}``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.machine import machine_line  # noqa: E402
from indus.atomic import atomic_write_json, atomic_write_text  # noqa: E402
from indus.data.corpus import iter_texts  # noqa: E402
from indus.encoder.data import encode_texts, pack_sequences  # noqa: E402
from indus.encoder.masking import MaskingSpec, mask_tokens  # noqa: E402
from indus.encoder.mlm import masked_lm_loss, masked_lm_loss_reference  # noqa: E402
from indus.encoder.presets import config_for_tokenizer  # noqa: E402

SEQ_LEN, BATCH = 128, 32


def make_model(preset: str, tokenizer):
    from transformers import AutoModelForMaskedLM

    torch.manual_seed(0)
    return AutoModelForMaskedLM.from_config(
        config_for_tokenizer(preset, tokenizer, max_length=512), attn_implementation="sdpa"
    )


def trainer_tokens_per_s(preset: str, tokenizer, examples: list[list[int]], steps: int, warmup: int) -> float:
    """Real tokens/s of ``Trainer`` + ``DataCollatorForLanguageModeling`` (fp32, full head) on ``examples``."""
    from datasets import Dataset
    from transformers import DataCollatorForLanguageModeling, Trainer, TrainerCallback, TrainingArguments

    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15)
    counts: list[int] = []

    def collate(features):
        batch = collator(features)
        counts.append(int(batch["attention_mask"].sum()))
        return batch

    class Timer(TrainerCallback):
        def __init__(self) -> None:
            self.t0 = 0.0
            self.elapsed = 0.0

        def on_step_begin(self, args, state, control, **kw):
            self.t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            if state.global_step > warmup:
                self.elapsed += time.perf_counter() - self.t0

    timer = Timer()
    out = tempfile.mkdtemp(prefix="indus-bench-")
    args = TrainingArguments(
        output_dir=out,
        per_device_train_batch_size=BATCH,
        max_steps=warmup + steps,
        learning_rate=6e-4,
        adam_beta2=0.98,
        adam_epsilon=1e-6,
        weight_decay=0.01,
        warmup_steps=0,
        logging_steps=10_000,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        dataloader_num_workers=0,
        seed=0,
        disable_tqdm=True,
    )
    ds = Dataset.from_dict({"input_ids": examples})
    trainer = Trainer(
        model=make_model(preset, tokenizer), args=args, train_dataset=ds, data_collator=collate, callbacks=[timer]
    )
    trainer.train()
    shutil.rmtree(out, ignore_errors=True)
    # the dataloader prefetches one batch ahead; step i trains on the i-th collated batch
    return sum(counts[warmup : warmup + steps]) / timer.elapsed


def our_step_tokens_per_s(
    preset: str, tokenizer, packed: np.ndarray, steps: int, warmup: int, *, masked_only: bool, bf16: bool, compile: bool
) -> float:
    """Tokens/s of our step (packed batches, dynamic masking, AdamW, clipping) with the chosen optimisations."""
    from indus.encoder.loop import param_groups

    model = make_model(preset, tokenizer)
    if compile:
        model.base_model.compile()
    spec = MaskingSpec.from_tokenizer(tokenizer)
    opt = torch.optim.AdamW(param_groups(model, 0.01), lr=6e-4, betas=(0.9, 0.98), eps=1e-6)
    loss_fn = masked_lm_loss if masked_only else (lambda m, i, lab: (masked_lm_loss_reference(m, i, lab), None))
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    model.train()
    elapsed = 0.0
    for step in range(warmup + steps):
        ids = torch.from_numpy(packed[(step * BATCH) % (len(packed) - BATCH) :][:BATCH])  # (B, L)
        t0 = time.perf_counter()
        inputs, labels = mask_tokens(ids, spec, torch.Generator().manual_seed(step))
        with autocast:
            loss, _ = loss_fn(model, inputs, labels)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if step >= warmup:
            elapsed += time.perf_counter() - t0
    return steps * BATCH * SEQ_LEN / elapsed


def indus_pretrain_tokens_per_s(preset: str, tokenizer_dir: Path, train: Path, steps: int, warmup: int) -> float:
    """Steady-state tokens/s of ``indus pretrain``'s own loop, from its log windows after the first ``warmup`` steps."""
    from indus.config import build_config
    from indus.encoder.configs import PretrainConfig
    from indus.encoder.pretrain import pretrain
    from indus.encoder.runlog import read_log

    out = Path(tempfile.mkdtemp(prefix="indus-bench-"))
    cfg = build_config(
        PretrainConfig,
        {
            "preset": preset,
            "tokenizer": str(tokenizer_dir),
            "train_files": [str(train)],
            "max_docs": 2000,
            "seq_len": SEQ_LEN,
            "batch_size": BATCH,
            "max_steps": warmup + steps,
            "eval_every": 10**9,
            "checkpoint_every": 10**9,
            "log_every": warmup,
            "bf16": True,
            "cache_dir": str(out / "cache"),
        },
    )
    pretrain(cfg, out / "run")
    windows = [r for r in read_log(out / "run" / "log.jsonl") if "tokens_per_s" in r][1:]  # (warm-up dropped)
    shutil.rmtree(out, ignore_errors=True)
    tokens = warmup * BATCH * SEQ_LEN
    return len(windows) * tokens / sum(tokens / r["tokens_per_s"] for r in windows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--tokenizer", type=Path, default=ROOT / "runs" / "tokenizers" / "indusbpe-50265")
    parser.add_argument("--steps", type=int, default=12, help="timed steps per configuration (a multiple of warmup)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--presets", nargs="+", default=["tiny", "mini"])
    args = parser.parse_args()
    from transformers import AutoTokenizer

    from indus.encoder.hardware import cpu_supports_bf16

    tok = AutoTokenizer.from_pretrained(str(args.tokenizer))
    train = args.data / "corpus" / "train.jsonl.gz"
    docs = list(iter_texts(train, limit=2000))
    paragraphs = [p for d in docs for p in d.split("\n\n") if p.strip()]
    chunks = [ids[: SEQ_LEN - 2] for ids in encode_texts(tok, paragraphs)]
    padded = [[tok.bos_token_id, *c, tok.eos_token_id] for c in chunks if c]
    packed = np.asarray(list(pack_sequences(encode_texts(tok, docs), SEQ_LEN, tok.bos_token_id, tok.eos_token_id)))
    rng = np.random.default_rng(0)
    padded = [padded[i] for i in rng.permutation(len(padded))]
    packed = packed[rng.permutation(len(packed))]
    fill = float(np.mean([len(p) for p in padded]))
    n_needed = (args.steps + args.warmup + 2) * BATCH

    results = {}
    for preset in args.presets:
        r: dict[str, float] = {}
        r["trainer_padded"] = trainer_tokens_per_s(preset, tok, padded[:n_needed], args.steps, args.warmup)
        r["trainer_packed"] = trainer_tokens_per_s(preset, tok, packed[:n_needed].tolist(), args.steps, args.warmup)
        common = (preset, tok, packed, args.steps, args.warmup)
        r["ours_full_fp32"] = our_step_tokens_per_s(*common, masked_only=False, bf16=False, compile=False)
        r["ours_masked_fp32"] = our_step_tokens_per_s(*common, masked_only=True, bf16=False, compile=False)
        r["ours_masked_bf16"] = our_step_tokens_per_s(*common, masked_only=True, bf16=True, compile=False)
        r["ours_masked_bf16_compile"] = our_step_tokens_per_s(*common, masked_only=True, bf16=True, compile=True)
        r["indus_pretrain"] = indus_pretrain_tokens_per_s(preset, args.tokenizer, train, args.steps, args.warmup)
        results[preset] = r
        print(preset, {k: round(v) for k, v in r.items()}, flush=True)

    labels = [
        ("trainer_padded", "Trainer + DataCollatorForLanguageModeling, padded paragraphs, full head, fp32", None),
        ("trainer_packed", "same, on packed sequences", "packing"),
        ("ours_full_fp32", "our step: packed, full-vocabulary head, fp32", None),
        ("ours_masked_fp32", "our step: head at masked positions only, fp32", "masked-only head"),
        ("ours_masked_bf16", "+ bf16 autocast", "bf16"),
        ("ours_masked_bf16_compile", "+ torch.compile (encoder)", "compile"),
        ("indus_pretrain", "`indus pretrain` end to end (masked-only head, bf16; compile off)", None),
    ]
    cols = " | ".join(f"{p} tokens/s | vs baseline" for p in args.presets)
    lines = [
        "# Pretraining throughput: our MLM step vs the transformers Trainer path",
        "",
        f"Machine: {machine_line()}",
        "",
        f"Command: `flock /tmp/indus-cpu.lock .venv/bin/python benchmarks/pretrain_throughput.py --steps {args.steps}`",
        "",
        f"Same model shapes and documents, INDUSBPE {len(tok):,} tokens, sequences of {SEQ_LEN}, batch {BATCH}, "
        f"AdamW; real (non-pad) tokens per second over {args.steps} timed steps after {args.warmup} warm-up "
        f"steps. Padded paragraphs hold {fill:.1f} real tokens on average (of {SEQ_LEN}). CPU bf16 support "
        f"(AVX-512 BF16 / AMX): {cpu_supports_bf16()}.",
        "",
        f"| configuration | {cols} |",
        "|---|" + "---|---|" * len(args.presets),
    ]
    for key, label, _ in labels:
        cells = " | ".join(
            f"{results[p][key]:,.0f} | {results[p][key] / results[p]['trainer_padded']:.2f}x" for p in args.presets
        )
        lines.append(f"| {label} | {cells} |")
    lines += [
        "",
        "Each optimisation's contribution (ratio to the row before it):",
        "",
        "| optimisation | " + " | ".join(args.presets) + " |",
        "|---|" + "---|" * len(args.presets),
    ]
    prev = {
        "packing": "trainer_padded",
        "masked-only head": "ours_full_fp32",
        "bf16": "ours_masked_fp32",
        "compile": "ours_masked_bf16",
    }
    for key, _, name in labels:
        if name:
            lines.append(
                f"| {name} | "
                + " | ".join(f"{results[p][key] / results[p][prev[name]]:.2f}x" for p in args.presets)
                + " |"
            )
    lines.append(
        "| end to end (`indus pretrain` / Trainer baseline) | "
        + " | ".join(f"{results[p]['indus_pretrain'] / results[p]['trainer_padded']:.2f}x" for p in args.presets)
        + " |"
    )
    (ROOT / "benchmarks" / "results").mkdir(parents=True, exist_ok=True)
    atomic_write_text(ROOT / "benchmarks" / "results" / "pretrain_throughput.md", "\n".join(lines) + "\n")
    atomic_write_json(
        ROOT / "benchmarks" / "results" / "pretrain_throughput.json",
        {"machine": machine_line(), "steps": args.steps, "padded_fill": fill, "results": results},
    )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
