"""The training loop shared by masked-LM pretraining and MiniLMv2 distillation.

An *objective* is an ``nn.Module`` holding the model to train as ``.model`` with two methods:
``make_batch(input_ids (B, L), generator) -> dict`` (e.g. dynamic masking, on the CPU) and
``forward(**batch) -> (mean loss, count)``. Wrapping the whole loss in one module gives DDP a single forward per
micro-step. The loop reads top to bottom: setup, data, optimizer, resume, budget, then per step: evaluate and
checkpoint, forward/backward with gradient accumulation, clip, step, log.

It runs unchanged on one CPU and on many GPUs or nodes (``accelerate launch`` or ``torchrun``): batch sizes are
per device, each rank reads its own slice of the seeded order, gradients are averaged by DDP.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from indus.atomic import atomic_write_json
from indus.config import config_to_dict, launcher_rank, save_config
from indus.encoder.checkpoint import (
    check_resume_settings,
    check_world_size,
    load_checkpoint,
    newest_complete_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from indus.encoder.configs import PretrainConfig
from indus.encoder.data import PackedCorpus, StreamingCorpus, build_packed_dataset, corpus_split
from indus.encoder.hardware import bf16_supported, device_name, mfu
from indus.encoder.runlog import RunLog, plot_loss_curve
from indus.errors import IndusError

EVAL_MASK_SEED = 1234  # held-out masks are the same in every run, so losses compare across runs
#: settings that may change between a run and its resume (they do not change the loss curve)
RESUMABLE_KEYS = frozenset({"eval_every", "checkpoint_every", "keep_checkpoints", "log_every", "cache_dir"})


# ----------------------------------------------------------------------------- small pure pieces


def lr_factor(step: int, warmup: int, total: int) -> float:
    """Linear warm-up to 1 over ``warmup`` steps, then linear decay to 0 at ``total`` (step is 0-based)."""
    if step < warmup:
        return (step + 1) / warmup
    return max(0.0, (total - step) / max(1, total - warmup))


@dataclass
class LinearSchedule:
    """``lr_factor`` as a picklable callable for ``LambdaLR`` (its fields are saved with the scheduler)."""

    warmup: int
    total: int

    def __call__(self, step: int) -> float:
        return lr_factor(step, self.warmup, self.total)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: weight decay on matrices (linear and embedding weights), none on biases and LayerNorm."""
    decay, no_decay = [], []
    for p in model.parameters():  # parameters() yields tied weights once
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def resolve_total_steps(cfg: PretrainConfig, tokens_per_step: int, step_seconds: float | None = None) -> int:
    """Optimizer steps of the run from ``max_steps``, ``max_tokens`` or ``max_minutes`` (with a measured step time)."""
    if cfg.max_steps is not None:
        return cfg.max_steps
    if cfg.max_tokens is not None:
        return max(1, math.ceil(cfg.max_tokens / tokens_per_step))
    if cfg.max_minutes is not None:
        if step_seconds is None:
            raise ValueError("a time budget needs a measured step time")
        return max(1, int(cfg.max_minutes * 60 / step_seconds))
    raise IndusError("no run length: set one of max_steps, max_tokens or max_minutes")


def warmup_for(cfg: PretrainConfig, total: int) -> int:
    """Warm-up steps: ``warmup_steps`` if set, else ``warmup_ratio`` of the run (at least one step)."""
    warmup = cfg.warmup_steps if cfg.warmup_steps is not None else round(cfg.warmup_ratio * total)
    return max(1, min(warmup, total))


def micro_batch_position(step: int, micro: int, rank: int, *, grad_accum: int, world: int, batch_size: int) -> int:
    """Global position (in sequences) of the micro-batch ``(step, micro, rank)`` in the seeded data order."""
    return ((step * grad_accum + micro) * world + rank) * batch_size


def mask_seed(seed: int, step: int, micro: int, rank: int) -> int:
    """The masking seed of a micro-batch: a function of (seed, step, micro, rank) only."""
    return int(np.random.SeedSequence([seed, step, micro, rank]).generate_state(1)[0])


def count_params(model: nn.Module) -> tuple[int, int]:
    """``(all parameters, non-embedding parameters)``; tied weights counted once, embeddings = token, position
    and token-type tables (the Kaplan et al. convention used for 6ND FLOPs)."""
    total = sum(p.numel() for p in model.parameters())
    emb = model.base_model.embeddings
    tables = [getattr(emb, n, None) for n in ("word_embeddings", "position_embeddings", "token_type_embeddings")]
    return total, total - sum(t.weight.numel() for t in tables if t is not None)


# ----------------------------------------------------------------------------- evaluation


@torch.no_grad()
def evaluate(
    objective: nn.Module,
    sequences: np.ndarray,
    batch_size: int,
    device: torch.device,
    autocast: contextlib.AbstractContextManager,
    rank: int = 0,
    world: int = 1,
) -> tuple[float, float]:
    """Held-out ``(sum of losses weighted by count, total count)`` of this rank's share of ``sequences`` (N, L).

    Batch ``i`` is masked with seed ``EVAL_MASK_SEED + i`` whatever the run, so values compare across runs.
    """
    was_training = objective.training
    objective.eval()
    total, count = 0.0, 0.0
    for i, start in enumerate(range(0, len(sequences), batch_size)):
        if i % world != rank:
            continue
        ids = torch.from_numpy(sequences[start : start + batch_size])  # (b, L)
        batch = objective.make_batch(ids, torch.Generator().manual_seed(EVAL_MASK_SEED + i))
        with autocast:
            loss, n = objective(**{k: v.to(device) for k, v in batch.items()})
        total += float(loss) * float(n)
        count += float(n)
    objective.train(was_training)
    return total, count


# ----------------------------------------------------------------------------- the loop


@dataclass
class TrainResult:
    """What a finished run reports (the caller adds model-specific entries and writes ``metrics.json``)."""

    metrics: dict[str, Any]
    accelerator: Any
    train_data: Any = None
    valid_sequences: np.ndarray | None = None


def load_corpora(cfg: PretrainConfig, tokenizer, accelerator) -> tuple[Any, np.ndarray | None]:
    """The training corpus (packed, or streaming) and the fixed held-out sequences (N, L) or ``None``."""
    train_files, valid_files = corpus_split(cfg.train_files, cfg.valid_files)  # held-out text never trains
    with accelerator.main_process_first():  # the main process tokenises; the others then read its cache
        if cfg.streaming:
            train = StreamingCorpus(train_files, tokenizer, cfg.seq_len, cfg.seed, cfg.shuffle_buffer, cfg.max_docs)
        else:
            train = PackedCorpus(
                build_packed_dataset(
                    train_files,
                    tokenizer,
                    cfg.seq_len,
                    max_docs=cfg.max_docs,
                    cache_dir=cfg.cache_dir,
                    progress=accelerator.is_main_process,
                ),
                cfg.seed,
            )
        valid = None
        if valid_files:
            valid_ds = build_packed_dataset(
                valid_files, tokenizer, cfg.seq_len, cache_dir=cfg.cache_dir, progress=False, split="heldout"
            )
            valid = PackedCorpus(valid_ds, cfg.seed).head(cfg.valid_max_seqs)
    return train, valid


def train_loop(
    cfg: PretrainConfig,
    objective: nn.Module,
    out_dir: Path,
    tokenizer,
    *,
    resume: bool = False,
    find_unused_parameters: bool = False,
    title: str = "",
    loss_label: str = "masked-LM loss (cross-entropy)",
) -> TrainResult:
    """Train ``objective.model`` on ``cfg``'s corpus; checkpoints, logs and the loss curve go to ``out_dir``."""
    from accelerate import Accelerator, DistributedDataParallelKwargs
    from tqdm.auto import tqdm

    wall_start = time.perf_counter()
    # --- setup: one process per device; bf16 by autocast (no grad scaler is needed for bf16). Several processes
    # on a machine without CUDA (torchrun on CPUs) train together over gloo: accelerate needs cpu=True for that.
    multi_cpu = launcher_rank()[1] > 1 and not torch.cuda.is_available()
    accelerator = Accelerator(
        cpu=multi_cpu, kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=find_unused_parameters)]
    )
    device, rank, world = accelerator.device, accelerator.process_index, accelerator.num_processes
    use_bf16 = cfg.bf16 and bf16_supported(device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16)
    main = accelerator.is_main_process
    ckpt_root = out_dir / "checkpoints"
    resume_from = newest_complete_checkpoint(ckpt_root) if resume else None
    if resume_from is not None:
        check_resume_settings(resume_from / "config.yaml", config_to_dict(cfg), RESUMABLE_KEYS)
        saved_state = json.loads((resume_from / "state.json").read_text(encoding="utf-8"))
        check_world_size(resume_from, saved_state.get("world_size"), world)
    elif resume and main:
        tqdm.write(f"{ckpt_root}: no complete checkpoint to resume from; training from the start")
    if main:
        save_config(cfg, out_dir / "config.yaml")
    config_yaml = (out_dir / "config.yaml").read_text() if main else ""

    # --- data
    train_data, valid = load_corpora(cfg, tokenizer, accelerator)
    seq_len = cfg.seq_len
    tokens_per_step = cfg.batch_size * seq_len * cfg.grad_accum * world

    # --- model and optimizer
    objective.to(device)
    if cfg.compile:
        objective.model.base_model.compile()
    optimizer = torch.optim.AdamW(
        param_groups(objective, cfg.weight_decay),
        lr=cfg.lr,
        betas=(cfg.beta1, cfg.beta2),
        eps=cfg.eps,
        fused=device.type == "cuda",
    )
    model, optimizer = accelerator.prepare(objective, optimizer)
    raw = accelerator.unwrap_model(model)

    def micro_batch(step: int, micro: int) -> dict[str, torch.Tensor]:
        pos = micro_batch_position(step, micro, rank, grad_accum=cfg.grad_accum, world=world, batch_size=cfg.batch_size)
        ids = torch.from_numpy(train_data.batch(pos, cfg.batch_size))  # (B, L)
        batch = raw.make_batch(ids, torch.Generator().manual_seed(mask_seed(cfg.seed, step, micro, rank)))
        return {k: v.to(device, non_blocking=True) for k, v in batch.items()}

    def forward_backward(step: int) -> torch.Tensor:
        total = torch.zeros((), device=device)
        for micro in range(cfg.grad_accum):
            batch = micro_batch(step, micro)
            # gradients are all-reduced once per optimizer step, on the last micro-step
            sync = contextlib.nullcontext() if micro == cfg.grad_accum - 1 else accelerator.no_sync(model)
            with sync:
                with autocast:
                    loss, _ = model(**batch)
                accelerator.backward(loss / cfg.grad_accum)
            total += loss.detach().float() / cfg.grad_accum  # kept on the device: no sync per micro-step
        return total

    # --- resume, or measure the step time for a time budget
    step, tokens, train_s, state = 0, 0, 0.0, None
    if resume_from is not None:
        state = load_checkpoint(resume_from, model=raw.model, optimizer=optimizer)
        check_world_size(resume_from, state.get("world_size", len(state["rng"])), world)
        step, tokens, train_s, total_steps = state["step"], state["tokens"], state["train_s"], state["total_steps"]
        warmup = state["warmup_steps"]
        set_rng_state(state["rng"][rank])
        if main:
            tqdm.write(f"resumed from {resume_from} (step {step:,} of {total_steps:,})")
    else:
        step_s = measure_step_seconds(forward_backward, model) if cfg.max_minutes is not None else None
        if step_s is not None and world > 1:  # every process must plan the same number of steps: the slowest's
            step_s = float(accelerator.gather(torch.tensor([step_s], device=device)).max())
        total_steps = resolve_total_steps(cfg, tokens_per_step, step_s)
        warmup = warmup_for(cfg, total_steps)
    schedule = LinearSchedule(warmup, total_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    if state is not None:
        scheduler.load_state_dict(state["scheduler"])
        for group, lr in zip(optimizer.param_groups, scheduler.get_last_lr(), strict=True):
            group["lr"] = lr  # building LambdaLR re-applied step 0's factor to the restored optimizer
    n_params, n_non_embedding = count_params(raw.model)
    log = RunLog(out_dir / "log.jsonl", resume_step=step if resume_from is not None else None, enabled=main)

    def run_eval() -> tuple[float, float] | tuple[None, None]:
        if valid is None:
            return None, None
        s, n = evaluate(raw, valid, cfg.batch_size, device, autocast, rank, world)
        s, n = (float(x) for x in accelerator.reduce(torch.tensor([s, n], device=device), reduction="sum"))
        loss = s / max(n, 1.0)
        log.write({"step": step, "tokens": tokens, "valid_loss": loss, "valid_ppl": math.exp(min(loss, 50.0))})
        return loss, math.exp(min(loss, 50.0))

    def save() -> None:
        rngs = [rng_state()]
        if world > 1:
            from accelerate.utils import gather_object

            rngs = gather_object(rngs)
        if main:
            state = {
                "step": step,
                "tokens": tokens,
                "train_s": train_s,
                "total_steps": total_steps,
                "warmup_steps": schedule.warmup,
                "world_size": world,
                "scheduler": scheduler.state_dict(),
            }
            save_checkpoint(
                ckpt_root,
                step,
                model=raw.model,
                optimizer=optimizer,
                state=state,
                config_yaml=config_yaml,
                rng_states=rngs,
                keep=cfg.keep_checkpoints,
            )
        accelerator.wait_for_everyone()

    # --- the loop
    valid_loss = valid_ppl = None
    if step == 0:
        valid_loss, valid_ppl = run_eval()
    bar = tqdm(
        total=total_steps, initial=step, disable=not main, desc=title or "training", unit="step", dynamic_ncols=True
    )
    model.train()
    window_s, window_tokens = 0.0, 0  # training time and tokens since the last log record
    while step < total_steps:
        t0 = time.perf_counter()
        loss = forward_backward(step)
        grad_norm = None
        if cfg.grad_clip > 0:
            grad_norm = accelerator.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        lr = scheduler.get_last_lr()[0]
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        tokens += tokens_per_step
        window_tokens += tokens_per_step
        log_step = step % cfg.log_every == 0 or step == total_steps
        if log_step:  # the only host sync of the loop; before the clock stops, so the window counts the device's time
            loss = float(accelerator.reduce(loss, reduction="mean"))  # the mean over ranks
        train_s += time.perf_counter() - t0
        window_s += time.perf_counter() - t0
        bar.update(1)

        if log_step:
            tok_s = window_tokens / max(window_s, 1e-9)
            record = {
                "step": step,
                "tokens": tokens,
                "loss": loss,
                "lr": lr,
                "grad_norm": None if grad_norm is None else float(grad_norm),
                "tokens_per_s": tok_s,
                "train_s": train_s,
            }
            util = mfu(n_non_embedding, tok_s, device, world)
            if util is not None:
                record["mfu"] = util
            log.write(record)
            bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{tok_s:,.0f}", refresh=False)
            window_s, window_tokens = 0.0, 0
        if step % cfg.eval_every == 0 or step == total_steps:
            valid_loss, valid_ppl = run_eval()
        if step % cfg.checkpoint_every == 0 or step == total_steps:
            save()
    bar.close()
    if valid_loss is None and valid is not None:
        valid_loss, valid_ppl = run_eval()
    if main:
        plot_loss_curve(out_dir / "log.jsonl", out_dir / "loss_curve.png", title=title, ylabel=loss_label)

    tokens_per_s = tokens / max(train_s, 1e-9)
    metrics = {
        "steps": step,
        "tokens_seen": tokens,
        "params": n_params,
        "params_non_embedding": n_non_embedding,
        "train_flops": 6.0 * n_non_embedding * tokens,
        "train_flops_with_embeddings": 6.0 * n_params * tokens,
        "valid_loss": valid_loss,
        "valid_ppl": valid_ppl,
        "tokens_per_s": tokens_per_s,
        "mfu": mfu(n_non_embedding, tokens_per_s, device, world),
        "train_s": train_s,
        "wall_s": time.perf_counter() - wall_start,
        "seq_len": seq_len,
        "tokens_per_step": tokens_per_step,
        "world_size": world,
        "device": device_name(device),
        "bf16": use_bf16,
    }
    return TrainResult(metrics, accelerator, train_data, valid)


def measure_step_seconds(forward_backward, model: nn.Module, repeats: int = 3) -> float:
    """Seconds per optimizer step, from forward/backward passes on the first batches (one warm-up pass first).

    Gradients are discarded and the RNG restored, so the run itself is the same as without the measurement.
    """
    state = torch.get_rng_state()
    forward_backward(0)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        forward_backward(0)
        times.append(time.perf_counter() - t0)
    for p in model.parameters():
        p.grad = None
    torch.set_rng_state(state)
    return 1.05 * float(np.median(times))  # + ~5% for the optimizer step


def save_final(
    out_dir: Path, model: nn.Module, tokenizer, metrics: dict[str, Any], accelerator, card: Any = None
) -> None:
    """Write the trained model (safetensors), tokenizer and model card into ``out_dir``, then ``metrics.json``
    last; ``card(folder)`` writes the card into the folder being built."""
    if accelerator.is_main_process:
        tmp = out_dir / ".final.tmp"
        if tmp.exists():
            shutil.rmtree(tmp)
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if card is not None:
            card(tmp)
        for f in tmp.iterdir():
            os.replace(f, out_dir / f.name)
        tmp.rmdir()
        atomic_write_json(out_dir / "metrics.json", metrics)
    accelerator.wait_for_everyone()
