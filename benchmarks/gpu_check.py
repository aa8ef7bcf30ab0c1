"""One command for the first GPU: matmul peak, pretraining MFU (ours and the Trainer's), a GradCache retriever step.

Run on a machine with one CUDA GPU (finishes in about 5-8 minutes; no network, no data files needed)::

    python benchmarks/gpu_check.py            # writes benchmarks/results/gpu_check.{md,json}

On a machine without CUDA it prints a message and exits 0 (nothing is written). What it measures:

1. **bf16 matmul peak**: the best TFLOP/s of square ``torch.matmul`` in bf16 (4096 to 16384), the achievable
   ceiling on this card, beside the datasheet's dense bf16 peak (:data:`indus.encoder.hardware.PEAK_BF16_FLOPS`).
2. **``indus pretrain``** (:func:`indus.encoder.pretrain.pretrain`, its real loop: packing, dynamic masking, the
   LM head at masked positions only, fused AdamW, clipping) for the ``base`` and ``small`` presets at sequence 512,
   bf16 autocast, SDPA attention: steady-state tokens/s from its log windows, and MFU against both peaks.
3. **The transformers ``Trainer`` path** on the same model and sequences (``DataCollatorForLanguageModeling``,
   full-vocabulary head, ``bf16=True``, SDPA): tokens/s and MFU.
4. **A retriever training step** at 1,024 pairs through GradCache (:class:`indus.retriever.losses.GTELoss` with
   ``mini_batch_size``), ``small`` encoder, 128 tokens per text: seconds per step and peak memory.
5. **faiss on the GPU**, when the installed faiss has GPU support: building and searching a flat and an IVF-PQ
   index of 10^6 x 384 vectors.

MFU counts the model FLOPs of a training step: ``3 x`` the forward matmuls per token (:func:`flops_per_token`:
the attention projections, the attention scores over the sequence, the feed-forward block, and the LM head where
it runs), so attention and head are included, unlike the ``6 N`` of ``indus pretrain``'s own log.

The corpus is synthetic (Zipf-distributed pseudo-words) and the tokenizer is trained on it (50,265 tokens),
so the check runs anywhere; speed does not depend on what the text says.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT / "src", ROOT):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SEQ_LEN = 512
MASK_FRACTION = 0.15


# --- arithmetic (tested on CPU) ---------------------------------------------------------------------------------


def flops_per_token(
    layers: int, hidden: int, ffn: int, seq_len: int, vocab: int = 0, head_fraction: float = 1.0, training: bool = True
) -> float:
    """Model FLOPs per token of an encoder (multiply-add = 2 FLOPs); ``3x`` the forward for a training step.

    Per layer and token, forward: ``2 * 4 h^2`` (Q, K, V, output projections) + ``2 * 2 * L * h`` (scores
    ``Q K^T`` and ``softmax V`` over the sequence) + ``2 * 2 * h * f`` (feed-forward). The MLM head adds
    ``2 * (h^2 + h V)`` at the ``head_fraction`` of positions where it runs (1 for a full head, 0.15 for ours).
    """
    per_layer = 2 * 4 * hidden**2 + 2 * 2 * seq_len * hidden + 2 * 2 * hidden * ffn
    head = 2 * (hidden**2 + hidden * vocab) * head_fraction
    forward = layers * per_layer + head
    return 3 * forward if training else forward


def mfu(tokens_per_s: float, flops_token: float, peak_flops: float | None) -> float | None:
    """Achieved FLOP/s over ``peak_flops``; ``None`` without a peak."""
    if not peak_flops:
        return None
    return tokens_per_s * flops_token / peak_flops


def matmul_flops(n: int) -> float:
    """FLOPs of one ``(n, n) @ (n, n)`` product."""
    return 2.0 * n**3


# --- measurements (GPU) -----------------------------------------------------------------------------------------


def measure_matmul_peak(sizes: tuple[int, ...] = (4096, 8192, 16384), repeats: int = 30) -> dict[str, Any]:
    """The best bf16 matmul TFLOP/s over ``sizes`` (CUDA events, after warm-up)."""
    import torch

    best, per_size = 0.0, {}
    for n in sizes:
        a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
        b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
        for _ in range(3):
            a @ b
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(repeats):
            a @ b
        end.record()
        torch.cuda.synchronize()
        flops = matmul_flops(n) * repeats / (start.elapsed_time(end) / 1000)
        per_size[n] = round(flops / 1e12, 1)
        best = max(best, flops)
        del a, b
    torch.cuda.empty_cache()
    return {"peak_flops": best, "tflops_by_size": per_size}


def synthetic_corpus(folder: Path, docs: int = 6000, words_per_doc: int = 320, seed: int = 0) -> Path:
    """JSON lines of Zipf-distributed pseudo-words (60,000 types): enough text for 50k BPE merges and the runs."""
    import numpy as np

    rng = np.random.default_rng(seed)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    types = ["".join(rng.choice(letters, size=rng.integers(3, 11))) for _ in range(60_000)]
    ranks = np.minimum(rng.zipf(1.1, size=docs * words_per_doc), len(types)) - 1
    path = folder / "train.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        for d in range(docs):
            words = ranks[d * words_per_doc : (d + 1) * words_per_doc]
            fh.write(json.dumps({"text": " ".join(types[i] for i in words)}) + "\n")
    return path


def model_shape(preset: str) -> dict[str, int]:
    from indus.encoder.presets import get_preset

    p = get_preset(preset)
    return {"layers": p.num_hidden_layers, "hidden": p.hidden_size, "ffn": p.intermediate_size}


def pretrain_run(
    preset: str, tokenizer_dir: Path, train: Path, work: Path, *, batch: int, steps: int, warmup: int
) -> dict[str, Any]:
    """Steady-state tokens/s of ``indus pretrain`` from its log windows (the first window, warm-up, dropped)."""
    from indus.config import build_config
    from indus.encoder.configs import PretrainConfig
    from indus.encoder.pretrain import pretrain
    from indus.encoder.runlog import read_log

    out = work / f"pretrain-{preset}"
    cfg = build_config(
        PretrainConfig,
        {
            "preset": preset,
            "tokenizer": str(tokenizer_dir),
            "train_files": [str(train)],
            "seq_len": SEQ_LEN,
            "batch_size": batch,
            "max_steps": warmup + steps,
            "eval_every": 10**9,
            "checkpoint_every": 10**9,
            "log_every": warmup,
            "bf16": True,
            "cache_dir": str(work / "cache"),
        },
    )
    metrics = pretrain(cfg, out)
    windows = [r for r in read_log(out / "log.jsonl") if "tokens_per_s" in r][1:]
    tokens = warmup * batch * SEQ_LEN
    tok_s = len(windows) * tokens / sum(tokens / r["tokens_per_s"] for r in windows)
    shutil.rmtree(out, ignore_errors=True)
    return {
        "tokens_per_s": tok_s,
        "batch": batch,
        "steps_timed": len(windows) * warmup,
        "params": metrics["params"],
        "loop_mfu_6N": metrics.get("mfu"),
    }


def trainer_run(preset: str, tokenizer, train: Path, *, batch: int, steps: int, warmup: int) -> dict[str, Any]:
    """Tokens/s of ``transformers.Trainer`` + ``DataCollatorForLanguageModeling`` on packed 512-token sequences."""
    import torch
    from datasets import Dataset
    from transformers import (
        AutoModelForMaskedLM,
        DataCollatorForLanguageModeling,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    from indus.data.corpus import iter_texts
    from indus.encoder.data import encode_texts, pack_sequences
    from indus.encoder.presets import config_for_tokenizer

    n_seqs = (warmup + steps + 1) * batch
    texts = list(iter_texts(train))
    packed = list(
        pack_sequences(encode_texts(tokenizer, texts), SEQ_LEN, tokenizer.bos_token_id, tokenizer.eos_token_id)
    )[:n_seqs]  # S x [L]
    if len(packed) < n_seqs:
        raise RuntimeError(f"corpus too small: {len(packed)} sequences for {n_seqs}")

    class Timer(TrainerCallback):
        def __init__(self) -> None:
            self.t0, self.elapsed = 0.0, 0.0

        def on_step_begin(self, args, state, control, **kw):
            torch.cuda.synchronize()
            self.t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            torch.cuda.synchronize()
            if state.global_step > warmup:
                self.elapsed += time.perf_counter() - self.t0

    timer = Timer()
    out = tempfile.mkdtemp(prefix="indus-gpu-trainer-")
    args = TrainingArguments(
        output_dir=out,
        per_device_train_batch_size=batch,
        max_steps=warmup + steps,
        learning_rate=6e-4,
        adam_beta2=0.98,
        adam_epsilon=1e-6,
        weight_decay=0.01,
        bf16=True,
        logging_steps=10**6,
        save_strategy="no",
        report_to=[],
        dataloader_num_workers=2,
        seed=0,
        disable_tqdm=True,
    )
    torch.manual_seed(0)
    model = AutoModelForMaskedLM.from_config(
        config_for_tokenizer(preset, tokenizer, max_length=SEQ_LEN), attn_implementation="sdpa"
    )
    ds = Dataset.from_dict({"input_ids": packed})
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=ds,
        callbacks=[timer],
        data_collator=DataCollatorForLanguageModeling(tokenizer, mlm_probability=MASK_FRACTION),
    )
    trainer.train()
    shutil.rmtree(out, ignore_errors=True)
    del trainer, model
    torch.cuda.empty_cache()
    return {"tokens_per_s": steps * batch * SEQ_LEN / timer.elapsed, "batch": batch, "steps_timed": steps}


def retriever_step(
    tokenizer_dir: Path,
    work: Path,
    *,
    pairs: int = 1024,
    mini_batch: int = 128,
    seq_len: int = 128,
    steps: int = 3,
    preset: str = "small",
    device: str = "cuda",
) -> dict[str, Any]:
    """Seconds per GradCache step of the GTE loss on ``pairs`` pairs with the ``small`` encoder."""
    import torch
    from transformers import AutoModelForMaskedLM

    from indus.encoder.presets import config_for_tokenizer
    from indus.encoder.pretrain import load_pretrain_tokenizer
    from indus.models import load_sentence_transformer
    from indus.retriever.losses import GTELoss

    tokenizer = load_pretrain_tokenizer(str(tokenizer_dir))
    folder = work / "retriever-small"
    torch.manual_seed(0)
    AutoModelForMaskedLM.from_config(config_for_tokenizer(preset, tokenizer, max_length=514)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    model = load_sentence_transformer(folder, device=device, max_seq_length=seq_len)
    model.train()
    loss_fn = GTELoss(model, mini_batch_size=mini_batch)
    cuda = device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-5, fused=cuda)
    words = (work / "words.txt").read_text().split()
    anchors = [" ".join(words[i : i + 40]) for i in range(0, pairs * 40, 40)]
    positives = [" ".join(words[i + 7 : i + 150]) for i in range(0, pairs * 40, 40)]
    features = [
        {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in model.preprocess(col).items()}
        for col in (anchors, positives)
    ]
    times = []
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    for step in range(steps + 1):
        sync()
        t0 = time.perf_counter()
        with torch.autocast(torch.device(device).type, dtype=torch.bfloat16):
            loss = loss_fn(features)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        sync()
        if step:
            times.append(time.perf_counter() - t0)
    step_s = sorted(times)[len(times) // 2]
    return {
        "pairs": pairs,
        "mini_batch_size": mini_batch,
        "seq_len": seq_len,
        "step_s": step_s,
        "pairs_per_s": pairs / step_s,
        "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
        "negatives_per_query": loss_fn.negatives_per_query,
    }


def faiss_gpu(n: int = 1_000_000, dim: int = 384, queries: int = 10_000) -> dict[str, Any]:
    """Build and search flat and IVF-PQ indexes on the GPU, if the installed faiss has GPU support."""
    import faiss
    import numpy as np

    if not hasattr(faiss, "StandardGpuResources") or faiss.get_num_gpus() < 1:
        return {"skipped": f"faiss {faiss.__version__} has no GPU support (install faiss-gpu to measure it)"}
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, dim), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q = x[:queries]
    res = faiss.StandardGpuResources()
    out = {}
    for name, factory in (("flat", "Flat"), ("ivfpq", "IVF1024,PQ48")):
        t0 = time.perf_counter()
        index = faiss.index_cpu_to_gpu(res, 0, faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT))
        index.train(x[:100_000])
        index.add(x)
        build_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        index.search(q, 10)
        out[name] = {"build_s": build_s, "ms_per_query": (time.perf_counter() - t0) * 1000 / queries}
    return out


# --- the run ----------------------------------------------------------------------------------------------------


def run(out: Path, *, steps: int, warmup: int) -> dict[str, Any]:
    import torch

    from benchmarks.machine import machine_info
    from indus.encoder.hardware import peak_flops
    from indus.encoder.pretrain import load_pretrain_tokenizer
    from indus.tokenizer.train import train_bpe

    started = time.perf_counter()
    name = torch.cuda.get_device_name(0)
    results: dict[str, Any] = {
        "machine": machine_info(),
        "device": name,
        "datasheet_peak_flops": peak_flops(name),
        "seq_len": SEQ_LEN,
        "errors": {},
    }

    def attempt(key: str, fn, *args, **kwargs) -> Any:
        try:
            results[key] = fn(*args, **kwargs)
        except Exception:  # one failing part must not lose the others' numbers
            results["errors"][key] = traceback.format_exc(limit=4)
            print(f"[gpu_check] {key} failed:\n{results['errors'][key]}", file=sys.stderr)
        print(f"[gpu_check] {key} done at {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
        return results.get(key)

    attempt("matmul", measure_matmul_peak)
    measured = (results.get("matmul") or {}).get("peak_flops")
    with tempfile.TemporaryDirectory(prefix="indus-gpu-check-") as tmp:
        work = Path(tmp)
        train = synthetic_corpus(work)
        with gzip.open(train, "rt", encoding="utf-8") as fh:
            (work / "words.txt").write_text(" ".join(json.loads(line)["text"] for _, line in zip(range(400), fh)))
        train_bpe([train], 50_265, out_dir=work / "tokenizer", show_progress=False)
        tokenizer = load_pretrain_tokenizer(str(work / "tokenizer"))
        vocab = len(tokenizer)
        results["vocab"] = vocab
        for preset, batch in (("base", 32), ("small", 64)):
            shape = model_shape(preset)
            ours = attempt(
                f"pretrain_{preset}",
                pretrain_run,
                preset,
                work / "tokenizer",
                train,
                work,
                batch=batch,
                steps=steps,
                warmup=warmup,
            )
            theirs = attempt(
                f"trainer_{preset}", trainer_run, preset, tokenizer, train, batch=batch, steps=steps, warmup=warmup
            )
            for key, run_, head in ((f"pretrain_{preset}", ours, MASK_FRACTION), (f"trainer_{preset}", theirs, 1.0)):
                if run_ is not None:
                    f_tok = flops_per_token(**shape, seq_len=SEQ_LEN, vocab=vocab, head_fraction=head)
                    tok_s = run_["tokens_per_s"]
                    run_.update(
                        {
                            "flops_per_token": f_tok,
                            "mfu_vs_measured": mfu(tok_s, f_tok, measured),
                            "mfu_vs_datasheet": mfu(tok_s, f_tok, results["datasheet_peak_flops"]),
                        }
                    )
        attempt("retriever_gradcache", retriever_step, work / "tokenizer", work)
    attempt("faiss_gpu", faiss_gpu)
    results["total_s"] = time.perf_counter() - started
    return results


def render(r: dict[str, Any]) -> str:
    def pct(x: float | None) -> str:
        return "-" if x is None else f"{100 * x:.1f}%"

    m = r.get("matmul") or {}
    sheet = r["datasheet_peak_flops"]
    lines = [
        "# GPU check (`benchmarks/gpu_check.py`)",
        "",
        f"Device: {r['device']}; CPU {r['machine']['cpu']}, torch {r['machine']['torch']}, {r['machine']['date']}.",
        "",
        f"bf16 matmul peak measured: {m.get('peak_flops', 0) / 1e12:.0f} TFLOP/s (by size: "
        f"{m.get('tflops_by_size')}); datasheet dense bf16: {'-' if not sheet else f'{sheet / 1e12:.0f}'} "
        "TFLOP/s.",
        "",
        f"Pretraining at sequence {r['seq_len']}, bf16, SDPA, vocabulary {r.get('vocab')}; MFU from "
        "`flops_per_token` (attention and head included):",
        "",
        "| preset | path | batch | tokens/s | MFU vs measured peak | MFU vs datasheet |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for preset in ("base", "small"):
        for path, key in (("indus pretrain", f"pretrain_{preset}"), ("transformers Trainer", f"trainer_{preset}")):
            x = r.get(key)
            if x:
                lines.append(
                    f"| {preset} | {path} | {x['batch']} | {x['tokens_per_s']:,.0f} | "
                    f"{pct(x['mfu_vs_measured'])} | {pct(x['mfu_vs_datasheet'])} |"
                )
            else:
                lines.append(f"| {preset} | {path} | - | failed | - | - |")
    ret = r.get("retriever_gradcache")
    if ret:
        lines += [
            "",
            f"Retriever step (GTE loss, GradCache mini-batches of {ret['mini_batch_size']}, `small` "
            f"encoder, {ret['seq_len']} tokens): {ret['pairs']:,} pairs in {ret['step_s']:.2f} s "
            f"({ret['pairs_per_s']:,.0f} pairs/s), peak memory {ret['peak_memory_gib']:.1f} GiB.",
        ]
    fg = r.get("faiss_gpu")
    if fg:
        lines += [
            "",
            "faiss GPU: "
            + (
                "; ".join(f"{k}: build {v['build_s']:.1f} s, {v['ms_per_query']:.3f} ms/query" for k, v in fg.items())
                if "skipped" not in fg
                else fg["skipped"]
            ),
        ]
    if r["errors"]:
        lines += ["", "Failed parts: " + ", ".join(r["errors"]) + " (tracebacks in the JSON)."]
    lines += ["", f"Total: {r['total_s']:.0f} s.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "gpu_check")
    parser.add_argument("--steps", type=int, default=30, help="timed steps per training run")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps first (also the log window)")
    args = parser.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device on this machine; nothing measured (run it on a GPU machine).")
        return 0
    from indus.atomic import atomic_write_json, atomic_write_text

    results = run(args.out, steps=args.steps, warmup=args.warmup)
    with contextlib.suppress(KeyError):
        results["machine"]["gpu"] = results["device"]
    atomic_write_json(args.out.with_suffix(".json"), results)
    atomic_write_text(args.out.with_suffix(".md"), render(results))
    print(render(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
