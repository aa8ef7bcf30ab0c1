"""MiniLMv2 distillation of a small encoder from a pretrained teacher (INDUS-SMALL from INDUS-BASE).

The student (a preset's shape, random weights, the teacher's tokenizer) learns to reproduce the Q-Q, K-K and V-V
self-attention relations of one upper-middle teacher layer in its own last layer (:mod:`indus.encoder.minilmv2`),
through the same loop as pretraining (packing, accelerate, checkpoints, resume, logs, ``metrics.json``).

About the saved MLM head: MiniLMv2 trains the encoder only, so the student's vocabulary head (tied to its
embeddings, plus a dense layer, LayerNorm and bias) is not trained by distillation. To report a held-out MLM loss
that compares with pretrained models, the head's dense layer, LayerNorm and bias are then fitted for
``head_fit_steps`` steps with the encoder (and the tied embedding matrix) frozen; that fitted head is what the
saved folder holds, and ``valid_loss`` in ``metrics.json`` is measured with it (``valid_distill_loss`` is the
held-out MiniLMv2 loss). The student's last layer past its Q/K/V (attention output and FFN) gets no gradient
from the relation loss either, as in the paper; fine-tuning trains it.

Example
-------
>>> cfg = build_config(DistillConfig, {"teacher": "runs/tiny", "preset": "nano", "max_minutes": 10})  # doctest: +SKIP
>>> distill(cfg, "runs/nano-distilled")["valid_loss"]  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from indus.cards import encoder_card
from indus.encoder.configs import DistillConfig
from indus.encoder.loop import evaluate, save_final, train_loop
from indus.encoder.masking import MaskingSpec
from indus.encoder.minilmv2 import MiniLMv2Loss, QKVCapture
from indus.encoder.mlm import MaskedLM, fit_head
from indus.encoder.presets import FINETUNE_DROPOUT, config_for_tokenizer, set_dropout
from indus.errors import IndusError
from indus.models import check_weight_files, load_tokenizer
from indus.outdir import is_complete, prepare_output_dir


def default_teacher_layer(num_layers: int) -> int:
    """The upper-middle layer (1-based): ``L - max(1, L // 8)``; 24 -> 21 as MiniLMv2 for large teachers, 12 -> 11."""
    return max(1, num_layers - max(1, num_layers // 8))


class MiniLMv2Objective(nn.Module):
    """The distillation objective for the shared loop: ``forward(input_ids) -> (MiniLMv2 loss, batch size)``.

    Parameters
    ----------
    student
        The ``*ForMaskedLM`` student (trained; saved as ``.model``).
    teacher
        The teacher encoder (frozen, always in eval mode); only its first ``teacher_layer`` layers are run.
    teacher_layer
        1-based teacher layer whose relations the student's last layer mimics.
    relation_heads
        Relation heads; must divide both hidden sizes.
    """

    def __init__(self, student: nn.Module, teacher: nn.Module, teacher_layer: int, relation_heads: int) -> None:
        super().__init__()
        self.model = student
        base = teacher.base_model
        base.encoder.layer = base.encoder.layer[:teacher_layer]  # layers above the target never influence it
        self.teacher = teacher.requires_grad_(False).eval()
        self.loss_fn = MiniLMv2Loss(relation_heads)
        self._teacher_qkv = QKVCapture(base.encoder.layer[teacher_layer - 1])
        self._student_qkv = QKVCapture(student.base_model.encoder.layer[-1])

    def train(self, mode: bool = True) -> MiniLMv2Objective:
        super().train(mode)
        self.teacher.eval()  # no teacher dropout, ever
        return self

    def make_batch(self, input_ids: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """MiniLMv2 feeds the same unmasked text to teacher and student."""
        return {"input_ids": input_ids}

    def forward(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            self.teacher.base_model(input_ids=input_ids)
        self.model.base_model(input_ids=input_ids)
        loss = self.loss_fn(self._teacher_qkv.qkv(), self._student_qkv.qkv())
        return loss, torch.tensor(input_ids.shape[0], device=input_ids.device)


def check_relation_heads(relation_heads: int, teacher_hidden: int, student_hidden: int) -> None:
    """Raise a clear error unless ``relation_heads`` divides both hidden sizes."""
    bad = [
        f"{who} hidden size {h}"
        for who, h in (("teacher", teacher_hidden), ("student", student_hidden))
        if h % relation_heads
    ]
    if bad:
        raise IndusError(
            f"relation_heads={relation_heads} must divide both hidden sizes ({', '.join(bad)} "
            f"is not divisible); set relation_heads to a common divisor of {teacher_hidden} "
            f"and {student_hidden}"
        )


def fit_mlm_head(
    student: nn.Module, masking, train_data, valid, cfg: DistillConfig, device: torch.device, autocast
) -> tuple[float | None, float | None, float]:
    """Fit the student's MLM head (dense, LayerNorm, bias; encoder and tied embeddings frozen) and score it.

    Returns ``(held-out MLM loss, perplexity, seconds)``; losses are ``None`` without a validation set.
    """
    start = time.perf_counter()
    objective = MaskedLM(student, masking).to(device)
    fit_head(
        objective,
        train_data,
        steps=cfg.head_fit_steps,
        lr=cfg.head_fit_lr,
        batch_size=cfg.batch_size,
        seed=cfg.seed + 1,
        device=device,
        autocast=autocast,
    )
    if valid is None:
        return None, None, time.perf_counter() - start
    s, n = evaluate(objective, valid, cfg.batch_size, device, autocast)
    loss = s / max(n, 1.0)
    return loss, math.exp(min(loss, 50.0)), time.perf_counter() - start


def distill(
    cfg: DistillConfig, out_dir: str | Path, *, resume: bool = False, overwrite: bool = False
) -> dict[str, Any]:
    """Distil ``cfg.teacher`` into a ``cfg.preset`` student with MiniLMv2; returns (and writes) ``metrics.json``.

    The student takes the teacher's tokenizer. Metrics are those of pretraining plus ``teacher``,
    ``teacher_layer``, ``relation_heads``, ``valid_distill_loss`` and ``head_fit_steps`` (see the module
    docstring for what ``valid_loss`` means here). ``resume`` and ``overwrite`` as for
    :func:`indus.encoder.pretrain.pretrain`.
    """
    from transformers import AutoModel, AutoModelForMaskedLM

    out_dir = Path(out_dir)
    if resume and is_complete(out_dir, "metrics.json"):
        return json.loads((out_dir / "metrics.json").read_text())
    if not cfg.teacher:
        raise IndusError("no teacher: pass --teacher DIR (a model folder, e.g. from indus pretrain)")
    if not (Path(cfg.teacher) / "config.json").is_file():
        raise IndusError(f"{cfg.teacher}: not a model folder (no config.json)")
    check_weight_files(Path(cfg.teacher))  # an empty or truncated weights file: one clear line, not a traceback
    if not cfg.budget_set:
        raise IndusError("no run length: set one of max_steps, max_tokens or max_minutes")
    cfg = dataclasses.replace(cfg, tokenizer=str(cfg.teacher))  # the student takes the teacher's tokenizer
    try:
        tokenizer = load_tokenizer(cfg.teacher)
        teacher = AutoModel.from_pretrained(cfg.teacher, attn_implementation="sdpa")
    except (OSError, ValueError) as exc:
        raise IndusError(f"{cfg.teacher}: could not load the teacher ({exc})") from None
    n_layers = teacher.config.num_hidden_layers
    layer = cfg.teacher_layer or default_teacher_layer(n_layers)
    if not 1 <= layer <= n_layers:
        raise IndusError(f"teacher_layer={layer}: the teacher has layers 1..{n_layers}")
    out = prepare_output_dir(out_dir, command="distill", resume=resume, overwrite=overwrite, resumable=True)
    torch.manual_seed(cfg.seed)
    student = AutoModelForMaskedLM.from_config(
        config_for_tokenizer(cfg.preset, tokenizer, max_length=max(512, cfg.seq_len)), attn_implementation="sdpa"
    )
    if cfg.dropout is not None:
        set_dropout(student, cfg.dropout)
    heads = cfg.relation_heads or teacher.config.num_attention_heads
    check_relation_heads(heads, teacher.config.hidden_size, student.config.hidden_size)
    objective = MiniLMv2Objective(student, teacher, layer, heads)
    result = train_loop(
        cfg,
        objective,
        out_dir,
        tokenizer,
        resume=resume,
        find_unused_parameters=True,
        title=f"distill {cfg.preset} <- {Path(cfg.teacher).name}",
        loss_label="MiniLMv2 loss (self-attention relation KL)",
    )
    metrics = {
        "kind": "distill",
        "preset": cfg.preset,
        "teacher": str(cfg.teacher),
        "teacher_layer": layer,
        "relation_heads": heads,
        **result.metrics,
    }
    metrics["valid_distill_loss"] = metrics.pop("valid_loss")
    metrics.pop("valid_ppl")
    masking = MaskingSpec.from_tokenizer(tokenizer, cfg.mask_prob, cfg.mask_replace_prob, cfg.mask_random_prob)
    device = result.accelerator.device
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=metrics["bf16"])
    valid_loss = valid_ppl = None
    head_s = 0.0
    if cfg.head_fit_steps:
        valid_loss, valid_ppl, head_s = fit_mlm_head(
            student, masking, result.train_data, result.valid_sequences, cfg, device, autocast
        )
    metrics.update(
        {
            "valid_loss": valid_loss,
            "valid_ppl": valid_ppl,
            "valid_loss_note": f"MLM loss with the head fitted for {cfg.head_fit_steps} steps, encoder frozen",
            "head_fit_steps": cfg.head_fit_steps,
            "head_fit_s": head_s,
        }
    )
    if cfg.dropout is not None:
        set_dropout(student, FINETUNE_DROPOUT)
    save_final(
        out_dir,
        student,
        tokenizer,
        metrics,
        result.accelerator,
        card=lambda folder: encoder_card(folder, cfg, metrics, kind="distilled-encoder", location=out_dir),
    )
    out.complete()
    return metrics
