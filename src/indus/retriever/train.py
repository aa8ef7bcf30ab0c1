"""Contrastive bi-encoder training with the GTE loss: ``indus retriever train`` and ``train_retriever``.

The INDUS-RETRIEVER recipe (arXiv 2405.10725, section 1 of docs/REFERENCE.md): a mean-pooling bi-encoder with
normalised embeddings, trained with the GTE improved contrastive loss (tau = 0.02) over in-batch negatives, each
batch drawn from one source; stage 1 on naturally occurring pairs, stage 2 on supervised pairs; batch 1,024, lr 2e-5.
``configs/retriever/stage1.yaml`` and ``configs/retriever/stage2.yaml`` hold the paper's settings (for GPUs),
``configs/retriever/cpu.yaml`` a two-core version with gradient caching.

Example
-------
>>> cfg = RetrieverTrainConfig(model="minilm", pairs=["pairs/scifact-train.jsonl.gz"], max_steps=100)
>>> summary = train_retriever(cfg, "runs/retriever")  # doctest: +SKIP
>>> sorted(summary)[:3]  # doctest: +SKIP
['config', 'epochs_done', 'final_loss']
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from indus.outdir import prepare_output_dir
from indus.retriever.bi_encoder import load_bi_encoder
from indus.retriever.data import pair_datasets
from indus.retriever.losses import GTELoss
from indus.retriever.trainer import TrainSettings, finished_summary, fit


@dataclass
class RetrieverTrainConfig(TrainSettings):
    """``indus retriever train``: the model to start from plus the shared training settings."""

    model: str = field(
        default="minilm",
        metadata={"help": "minilm | a Hugging Face or SentenceTransformer folder | random:<preset> | layers:N@MODEL"},
    )


def train_retriever(
    cfg: RetrieverTrainConfig, out_dir: str | Path, *, resume: bool = False, overwrite: bool = False
) -> dict[str, Any]:
    """Train a bi-encoder with the GTE loss; the output folder loads with ``SentenceTransformer(out_dir)``.

    Parameters
    ----------
    cfg
        The resolved configuration (pairs, model, batching, schedule, budget).
    out_dir
        Run folder (see :mod:`indus.retriever.trainer` for its layout); a non-empty one follows
        :mod:`indus.outdir` (``resume`` or ``overwrite`` needed, except a failed run's leftovers).
    resume
        Continue from the newest complete checkpoint in ``out_dir/checkpoints`` (also a run its time budget
        stopped); a finished run is returned as it is.
    overwrite
        Start again in a non-empty ``out_dir`` (the earlier run's checkpoints and summary go; files indus did not
        write stay).

    Returns
    -------
    dict
        The summary also written to ``out_dir/summary.json``: steps, pairs_seen, wall_s, final_loss, loss_curve,
        stop_reason, sources (pairs per source), config.
    """
    from transformers import set_seed

    done = finished_summary(out_dir) if resume else None
    if done is not None:
        return done
    out = prepare_output_dir(out_dir, command="retriever train", resume=resume, overwrite=overwrite, resumable=True)
    start = time.perf_counter()
    data = cfg.load_training_pairs()
    set_seed(cfg.seed)
    model = load_bi_encoder(
        cfg.model,
        max_seq_length=cfg.max_seq_length,
        seed=cfg.seed,
        calibration_texts=cfg.calibration_texts(data.texts()),
    )
    loss = GTELoss(
        model, temperature=cfg.temperature, mini_batch_size=cfg.mini_batch_size, mask_duplicates=cfg.mask_duplicates
    )
    dataset = pair_datasets(data, one_source_per_batch=cfg.one_source_per_batch)
    extra = {
        "task": "retriever-train",
        "model": cfg.model,
        "n_pairs": data.n_pairs,
        "sources": data.counts,
        "hard_negative_sources": sorted(s for s, v in data.negatives.items() if v),
        "setup_s": round(time.perf_counter() - start, 2),
    }
    summary = fit(model, loss, dataset, cfg, out.path, resume=resume, extra_summary=extra)
    out.complete(stop_reason=summary["stop_reason"])
    return summary
