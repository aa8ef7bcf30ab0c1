"""The training loop shared by retriever training and distillation: ``SentenceTransformerTrainer`` on accelerate.

The trainer runs the loop (AdamW, linear warm-up and decay, progress bar, checkpoints with optimizer, scheduler and
RNG states) on one CPU or on many GPUs through ``accelerate launch`` / ``torchrun`` with no code change. What is ours:
one source per batch (:mod:`indus.retriever.data`), the losses, a wall-clock budget, the run folder layout, and the
summary.

Run folder::

    OUT/                      loads with sentence_transformers.SentenceTransformer(OUT)
      README.md               the model card (indus.cards; no training text in it)
      config.yaml             the resolved config (also written into every checkpoint)
      summary.json            steps, pairs seen, wall time, final loss, loss curve; written last = run complete
      checkpoints/checkpoint-N/   resumable trainer state (removed at the end unless keep_checkpoints, or unless
                                  the time budget stopped the run: then --resume continues it)

Every checkpoint gets a ``manifest.json`` (each file's size and SHA-256, the world size) written after the Trainer
has written everything else; older checkpoints are rotated away only after that. ``--resume`` takes the newest
checkpoint whose manifest matches, so a SIGKILL in the middle of a save costs the steps since the previous one,
never the run. Resuming refuses another number of processes and settings that change the loss curve
(everything but :data:`RESUMABLE_KEYS`), naming them.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from indus.atomic import atomic_write_json
from indus.cards import retriever_card
from indus.config import config_to_dict, save_config
from indus.encoder.checkpoint import (
    MANIFEST,
    check_resume_settings,
    check_world_size,
    newest_complete_checkpoint,
    write_manifest,
)
from indus.outdir import is_complete
from indus.retriever.bi_encoder import calibration_sample
from indus.retriever.data import load_pairs

logger = logging.getLogger(__name__)

SOURCE_SAMPLERS = ("proportional", "round_robin")
PROGRESS_FILE = "indus_progress.json"
#: settings that may change between a run and its resume (they do not change the loss curve)
RESUMABLE_KEYS = frozenset(
    {"logging_steps", "save_steps", "keep_checkpoints", "time_budget_s", "teacher_cache", "teacher_batch_size"}
)


@dataclass
class TrainSettings:
    """Batching, optimisation and budget settings shared by ``retriever train`` and ``retriever distill``."""

    pairs: list[str] = field(default_factory=list, metadata={"help": "pair files or folders (JSON lines)"})
    max_pairs_per_source: int | None = field(default=None, metadata={"help": "random sample per source (seeded)"})
    max_seq_length: int = field(default=256, metadata={"help": "truncate every text to this many tokens"})
    batch_size: int = field(default=64, metadata={"help": "pairs per batch (in-batch negatives); paper: 1024"})
    mini_batch_size: int | None = field(
        default=None, metadata={"help": "gradient caching: encode this many texts at a time (same gradients)"}
    )
    temperature: float = field(default=0.02, metadata={"help": "tau of the contrastive logits cos / tau"})
    hard_negatives: bool = field(default=True, metadata={"help": "use a source's 'negative' column when complete"})
    mask_duplicates: bool = field(default=True, metadata={"help": "drop duplicated texts from the partition"})
    no_duplicates: bool = field(default=True, metadata={"help": "batch sampler that keeps repeated texts apart"})
    one_source_per_batch: bool = field(default=True, metadata={"help": "every batch from a single source"})
    source_sampling: str = field(default="proportional", metadata={"help": "proportional | round_robin"})
    lr: float = field(default=2e-5, metadata={"help": "peak learning rate (AdamW)"})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay"})
    warmup: float = field(default=0.1, metadata={"help": "linear warm-up: a fraction of the steps (<1) or steps"})
    epochs: float = field(default=1.0, metadata={"help": "passes over the pairs (max_steps wins when set)"})
    max_steps: int | None = field(default=None, metadata={"help": "stop after this many optimizer steps"})
    time_budget_s: float | None = field(
        default=None, metadata={"help": "stop after this many seconds (the schedule still follows epochs/steps)"}
    )
    bf16: bool = field(default=False, metadata={"help": "bfloat16 autocast (CPU with AVX-512 BF16/AMX, or GPU)"})
    seed: int = field(default=0, metadata={"help": "seed of sampling, initialisation and dropout"})
    logging_steps: int = field(default=10, metadata={"help": "log the loss every this many steps"})
    save_steps: int = field(default=500, metadata={"help": "checkpoint every this many steps"})
    keep_checkpoints: bool = field(default=False, metadata={"help": "keep checkpoints/ after a completed run"})

    def __post_init__(self) -> None:
        for name in ("max_seq_length", "batch_size", "logging_steps", "save_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.mini_batch_size is not None and self.mini_batch_size < 1:
            raise ValueError(f"mini_batch_size must be at least 1 or null, got {self.mini_batch_size}")
        if self.max_pairs_per_source is not None and self.max_pairs_per_source < 1:
            raise ValueError("max_pairs_per_source must be at least 1 or null")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be positive, got {self.temperature}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if self.warmup < 0:
            raise ValueError(f"warmup must be non-negative, got {self.warmup}")
        if not self.epochs > 0:
            raise ValueError(f"epochs must be positive, got {self.epochs}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be at least 1 or null, got {self.max_steps}")
        if self.time_budget_s is not None and not self.time_budget_s > 0:
            raise ValueError(f"time_budget_s must be positive or null, got {self.time_budget_s}")
        if self.source_sampling not in SOURCE_SAMPLERS:
            raise ValueError(
                f"source_sampling must be one of {', '.join(SOURCE_SAMPLERS)}, got {self.source_sampling!r}"
            )

    def load_training_pairs(self) -> Any:
        """The pairs this run trains on (:func:`indus.retriever.data.load_pairs` with these settings)."""
        return load_pairs(
            self.pairs,
            max_pairs_per_source=self.max_pairs_per_source,
            hard_negatives=self.hard_negatives,
            seed=self.seed,
        )

    def calibration_texts(self, texts: list[str] | None = None) -> list[str]:
        """The fixed sample of the training texts (``texts``, or read from ``pairs``) that ranks feed-forward
        neurons for ``/ffn=N`` students."""
        return calibration_sample(texts if texts is not None else self.load_training_pairs().texts(), self.seed)


def _callbacks(cfg: Any, budget_s: float | None, counter: dict[str, int]) -> tuple[list[Any], dict[str, Any]]:
    from transformers import TrainerCallback

    state: dict[str, Any] = {"stopped_by_time": False}

    class TimeBudget(TrainerCallback):
        """Stop once the wall-clock budget is spent; with several processes, all stop at the same step (the
        decision is shared, else one process would wait forever for the others' gradients)."""

        def on_train_begin(self, args, st, control, **kwargs):
            state["start"] = time.monotonic()

        def on_step_end(self, args, st, control, **kwargs):
            if budget_s is None:
                return
            spent = time.monotonic() - state["start"] > budget_s
            if args.world_size > 1:
                import torch
                import torch.distributed as dist

                flag = torch.tensor([float(spent)], device=args.device)
                dist.all_reduce(flag, op=dist.ReduceOp.MAX)
                spent = bool(flag.item())
            if spent:
                state["stopped_by_time"] = True
                control.should_training_stop = True
                control.should_save = True  # a checkpoint at the stopping step: --resume continues from it

    class CompleteCheckpoint(TrainerCallback):
        """Every checkpoint carries the resolved config, the pairs seen so far and the world size next to the
        trainer state, then its manifest (last: its presence means complete); older ones are rotated away only
        after that, so a kill mid-save always leaves a complete checkpoint behind."""

        def on_save(self, args, st, control, **kwargs):
            root = Path(args.output_dir)
            ckpt = root / f"checkpoint-{st.global_step}"
            if ckpt.is_dir() and st.is_world_process_zero:
                save_config(cfg, ckpt / "config.yaml")
                atomic_write_json(ckpt / PROGRESS_FILE, {**counter, "world_size": args.world_size})
                write_manifest(ckpt, fsync=True, world_size=args.world_size)
                if not cfg.keep_checkpoints:
                    for old in checkpoint_folders(root):
                        if old != ckpt:
                            shutil.rmtree(old, ignore_errors=True)

    return [TimeBudget(), CompleteCheckpoint()], state


def build_trainer(
    model: Any,
    loss: Any,
    train_dataset: Any,
    cfg: TrainSettings,
    checkpoint_dir: Path,
    callbacks: list[Any] | None = None,
    counter: dict[str, int] | None = None,
) -> Any:
    """A ``SentenceTransformerTrainer`` for ``cfg``; it counts the pairs it trains on in ``counter["pairs_seen"]``."""
    import torch
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.base.sampler import BatchSamplers, MultiDatasetBatchSamplers

    seen = counter if counter is not None else {"pairs_seen": 0}

    class Trainer(SentenceTransformerTrainer):
        pairs = seen

        def add_model_card_callback(self, default_args_dict):
            """No sentence-transformers card data: it collects training pairs verbatim (indus writes its own)."""

        def _save(self, output_dir=None, state_dict=None):

            from transformers.trainer import TRAINING_ARGS_NAME

            output_dir = output_dir if output_dir is not None else self.args.output_dir
            os.makedirs(output_dir, exist_ok=True)
            self.model.save_pretrained(output_dir, create_model_card=False)
            if self.processing_class is not None:
                self.processing_class.save_pretrained(output_dir)
            torch.save(self.args, os.path.join(output_dir, TRAINING_ARGS_NAME))

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if model.training:
                key = next(k for k in inputs if k.endswith("input_ids"))
                self.pairs["pairs_seen"] += int(inputs[key].shape[0]) * self.args.world_size
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

    args = SentenceTransformerTrainingArguments(
        output_dir=str(checkpoint_dir),
        per_device_train_batch_size=cfg.batch_size,
        learning_rate=cfg.lr,
        weight_decay=cfg.weight_decay,
        warmup_steps=cfg.warmup if cfg.warmup < 1 else int(cfg.warmup),
        lr_scheduler_type="linear",
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps or -1,
        seed=cfg.seed,
        data_seed=cfg.seed,
        bf16=cfg.bf16,
        use_cpu=not torch.cuda.is_available(),  # bf16 autocast on CPU needs it; accelerate still spreads over GPUs
        logging_steps=cfg.logging_steps,
        logging_first_step=True,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=None,  # rotation happens after the manifest is written (CompleteCheckpoint)
        batch_sampler=BatchSamplers.NO_DUPLICATES if cfg.no_duplicates else BatchSamplers.BATCH_SAMPLER,
        multi_dataset_batch_sampler=MultiDatasetBatchSamplers(cfg.source_sampling),
        report_to="none",
        disable_tqdm=False,
        dataloader_drop_last=False,
        dataloader_pin_memory=torch.cuda.is_available(),
    )
    return Trainer(model=model, args=args, train_dataset=train_dataset, loss=loss, callbacks=callbacks or [])


def finished_summary(out_dir: str | Path) -> dict[str, Any] | None:
    """The summary of a finished run in ``out_dir`` that ``--resume`` returns as it is; ``None`` when the run is
    unfinished or its time budget stopped it (then it resumes from its checkpoint)."""
    out_dir = Path(out_dir)
    if not is_complete(out_dir, "summary.json"):
        return None
    summary = json.loads((out_dir / "summary.json").read_text(encoding="utf-8"))
    if summary.get("stop_reason") == "time_budget" and last_checkpoint(out_dir / "checkpoints") is not None:
        return None
    return summary


def checkpoint_folders(checkpoint_dir: Path) -> list[Path]:
    """The ``checkpoint-N`` folders, oldest (smallest N) first, complete or not."""
    ckpts = [p for p in checkpoint_dir.glob("checkpoint-*") if p.is_dir() and p.name.split("-")[-1].isdigit()]
    return sorted(ckpts, key=lambda p: int(p.name.split("-")[-1]))


def last_checkpoint(checkpoint_dir: Path) -> Path | None:
    """The newest complete ``checkpoint-N`` folder (manifest present and matching), if any."""
    return newest_complete_checkpoint(checkpoint_dir, checkpoint_folders(checkpoint_dir))


def check_resume(resume_from: Path, cfg: Any, world_size: int) -> None:
    """Refuse to resume ``resume_from`` on another number of processes or with settings that change the curve."""
    saved_world = json.loads((resume_from / MANIFEST).read_text(encoding="utf-8")).get("world_size")
    check_world_size(resume_from, saved_world, world_size)
    check_resume_settings(resume_from / "config.yaml", config_to_dict(cfg), RESUMABLE_KEYS)


def fit(
    model: Any,
    loss: Any,
    train_dataset: Any,
    cfg: Any,
    out_dir: Path,
    *,
    resume: bool = False,
    extra_summary: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train ``model`` with ``loss``, save it to ``out_dir`` with config and summary, and return the summary.

    ``cfg`` is a :class:`TrainSettings` (or a subclass holding the model fields too); it is saved as given.
    With ``resume``, training continues from the newest complete checkpoint (see the module docstring).
    """
    out_dir = Path(out_dir)
    checkpoint_dir = out_dir / "checkpoints"
    resume_from = last_checkpoint(checkpoint_dir) if resume else None
    if resume and resume_from is None:
        # nothing saved yet (a run stopped before its first checkpoint): the same run, from the start
        logger.warning("%s: no complete checkpoint to resume from; training from the start", checkpoint_dir)
    counter = {"pairs_seen": 0}
    if resume_from is not None and (resume_from / PROGRESS_FILE).is_file():
        progress = json.loads((resume_from / PROGRESS_FILE).read_text(encoding="utf-8"))
        counter["pairs_seen"] = int(progress.get("pairs_seen", 0))
    callbacks, budget = _callbacks(cfg, cfg.time_budget_s, counter)
    trainer = build_trainer(model, loss, train_dataset, cfg, checkpoint_dir, callbacks, counter)
    if resume_from is not None:
        check_resume(resume_from, cfg, trainer.args.world_size)
    if trainer.is_world_process_zero():
        save_config(cfg, out_dir / "config.yaml")
        # saves cut short (no manifest) are removed: the Trainer would write the same step into them again
        for folder in checkpoint_folders(checkpoint_dir):
            if not (folder / MANIFEST).is_file():
                shutil.rmtree(folder, ignore_errors=True)
    start = time.perf_counter()
    output = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    wall_s = time.perf_counter() - start
    state = trainer.state
    curve = [[h["step"], h["loss"]] for h in state.log_history if "loss" in h]
    if state.max_steps and state.global_step >= state.max_steps:
        stop = "max_steps" if cfg.max_steps else "epochs"
    else:
        stop = "time_budget" if budget["stopped_by_time"] else "epochs"
    summary = {
        "steps": state.global_step,
        "pairs_seen": counter["pairs_seen"],
        "epochs_done": round(float(state.epoch or 0.0), 4),
        "wall_s": round(wall_s, 2),
        "final_loss": curve[-1][1] if curve else None,
        "train_loss_mean": output.training_loss,
        "stop_reason": stop,
        "resumed_from": str(resume_from) if resume_from else None,
        "loss_curve": curve,
        # the in-batch negatives each query saw (with cross-device gathering: every process's texts)
        "world_size": trainer.args.world_size,
        **getattr(loss, "batch_stats", {}),
        **(extra_summary or {}),
        "config": config_to_dict(cfg),
    }
    if trainer.is_world_process_zero():
        _save_model(trainer.model, out_dir, cfg, summary)
        if not cfg.keep_checkpoints and stop != "time_budget":  # a budget-stopped run keeps what resumes it
            shutil.rmtree(checkpoint_dir, ignore_errors=True)
        atomic_write_json(out_dir / "summary.json", summary)
    return summary


def _save_model(model: Any, out_dir: Path, cfg: Any, summary: dict[str, Any]) -> None:
    """Save into a hidden folder with indus's model card, then move each entry into place (no half-written model
    files)."""
    tmp = out_dir / ".model.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save(str(tmp), create_model_card=False)
    retriever_card(tmp, cfg, summary, location=out_dir)
    for entry in tmp.iterdir():
        target = out_dir / entry.name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        os.replace(entry, target)
    tmp.rmdir()
