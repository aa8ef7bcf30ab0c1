"""Masked-LM pretraining of a RoBERTa-style encoder: INDUS-BASE's recipe at any scale.

``pretrain(cfg, out_dir)`` builds the model from a preset sized to the tokenizer (or loads ``init_from``), trains
it with :class:`~indus.encoder.mlm.MaskedLM` through the shared loop, and writes a folder that loads with
``AutoModelForMaskedLM.from_pretrained`` and ``AutoTokenizer.from_pretrained``, plus ``metrics.json``,
``log.jsonl``, ``loss_curve.png``, ``config.yaml`` and ``checkpoints/``.

Example
-------
>>> from indus.config import load_config
>>> cfg = load_config(PretrainConfig, "configs/pretrain/cpu-tiny.yaml", ["max_minutes=1"])  # doctest: +SKIP
>>> pretrain(cfg, "runs/tiny")["valid_loss"]  # doctest: +SKIP
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from indus.encoder.configs import PretrainConfig
from indus.encoder.masking import MaskingSpec
from indus.encoder.presets import FINETUNE_DROPOUT, set_dropout
from indus.errors import IndusError
from indus.models import check_weight_files
from indus.outdir import is_complete, prepare_output_dir


def build_model(cfg: PretrainConfig, tokenizer):
    """A ``RobertaForMaskedLM`` of ``cfg.preset``'s shape sized to ``tokenizer`` (seeded), or ``init_from``.

    ``cfg.dropout``, when set, replaces the hidden and attention dropout for pretraining (a single pass over a
    corpus under a small budget learns faster without it, as in Geiping & Goldstein's "Cramming").
    """
    model = _build_model(cfg, tokenizer)
    if cfg.dropout is not None:
        set_dropout(model, cfg.dropout)
    return model


def _build_model(cfg: PretrainConfig, tokenizer):
    import torch
    from transformers import AutoModelForMaskedLM

    from indus.encoder.presets import config_for_tokenizer

    if cfg.init_from:
        check_weight_files(Path(cfg.init_from))
        try:
            return AutoModelForMaskedLM.from_pretrained(cfg.init_from, attn_implementation="sdpa")
        except (OSError, ValueError) as exc:
            raise IndusError(f"{cfg.init_from}: could not load a masked-LM model ({exc})") from None
    torch.manual_seed(cfg.seed)
    config = config_for_tokenizer(cfg.preset, tokenizer, max_length=max(512, cfg.seq_len))
    return AutoModelForMaskedLM.from_config(config, attn_implementation="sdpa")


def load_pretrain_tokenizer(spec: str):
    """The tokenizer named by a config (``indus tokenizer train`` folder or model spec); it must have ``<mask>``."""
    from indus.tokenizer.resolve import resolve_tokenizer

    if not spec:
        raise IndusError("no tokenizer: set tokenizer (a folder from `indus tokenizer train`, or a model)")
    tok = resolve_tokenizer(spec)
    if tok.mask_token_id is None:
        raise IndusError(f"{spec}: the tokenizer has no mask token")
    return tok


def pretrain(cfg: PretrainConfig, out_dir: str | Path, *, resume: bool = False,
             overwrite: bool = False) -> dict[str, Any]:
    """Pretrain with masked LM; returns the metrics also written to ``out_dir/metrics.json``.

    Keys include ``steps``, ``tokens_seen``, ``train_flops`` (6 x non-embedding params x tokens),
    ``train_flops_with_embeddings``, ``valid_loss``, ``valid_ppl``, ``tokens_per_s``, ``wall_s``, ``params``.
    With ``resume``, training continues from the newest complete checkpoint in ``out_dir`` (from the start when
    there is none; a finished run is returned as it is). ``out_dir`` follows :mod:`indus.outdir`: a non-empty
    folder needs ``resume`` or ``overwrite``, except the leftovers of a failed run without checkpoints.
    """
    from indus.cards import encoder_card
    from indus.encoder.loop import save_final, train_loop
    from indus.encoder.mlm import MaskedLM

    out_dir = Path(out_dir)
    if resume and is_complete(out_dir, "metrics.json"):
        return json.loads((out_dir / "metrics.json").read_text())
    if not cfg.budget_set:
        raise IndusError("no run length: set one of max_steps, max_tokens or max_minutes")
    out = prepare_output_dir(out_dir, command="pretrain", resume=resume, overwrite=overwrite, resumable=True)
    tokenizer = load_pretrain_tokenizer(cfg.tokenizer)
    model = build_model(cfg, tokenizer)
    masking = MaskingSpec.from_tokenizer(tokenizer, cfg.mask_prob, cfg.mask_replace_prob, cfg.mask_random_prob)
    result = train_loop(cfg, MaskedLM(model, masking), out_dir, tokenizer, resume=resume,
                        title=f"pretrain {cfg.preset if not cfg.init_from else Path(cfg.init_from).name}")
    metrics = {"kind": "pretrain", "preset": cfg.preset, **result.metrics}
    if cfg.dropout is not None:
        set_dropout(model, FINETUNE_DROPOUT)
    save_final(out_dir, model, tokenizer, metrics, result.accelerator,
               card=lambda folder: encoder_card(folder, cfg, metrics, kind="encoder", location=out_dir))
    out.complete()
    return metrics
