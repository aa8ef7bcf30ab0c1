"""Masked-LM pretraining of a RoBERTa-style encoder: INDUS-BASE's recipe at any scale.

``pretrain(cfg, out_dir)`` builds the model from a preset sized to the tokenizer (or loads ``init_from``), trains
it with :class:`~indus.encoder.mlm.MaskedLM` through the shared loop, and writes a folder that loads with
``AutoModelForMaskedLM.from_pretrained`` and ``AutoTokenizer.from_pretrained``, plus ``metrics.json``,
``log.jsonl``, ``loss_curve.png``, ``config.yaml`` and ``checkpoints/``.

Domain adaptation (``init_from``): a general encoder (``minilm``, or any BERT/RoBERTa folder, with its own
tokenizer) continues masked-LM training on the corpus. An encoder shipped without its MLM head (a
sentence-transformers model) gets a fresh one, tied to the input embeddings, which is fitted alone for
``head_warmup_steps`` steps before everything trains. ``masking="keyword"`` is INDUS-SDE's weighted dynamic
masking (:mod:`indus.encoder.keywords`).

Example
-------
>>> from indus.config import load_config
>>> cfg = load_config(PretrainConfig, "configs/pretrain/cpu-tiny.yaml", ["max_minutes=1"])  # doctest: +SKIP
>>> pretrain(cfg, "runs/tiny")["valid_loss"]  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

from indus.cards import encoder_card
from indus.data.corpus import corpus_files
from indus.encoder.checkpoint import newest_complete_checkpoint
from indus.encoder.configs import PretrainConfig
from indus.encoder.data import PackedCorpus, StreamingCorpus, build_packed_dataset, corpus_split
from indus.encoder.hardware import bf16_supported
from indus.encoder.keywords import corpus_idf
from indus.encoder.loop import save_final, train_loop
from indus.encoder.masking import MaskingSpec
from indus.encoder.mlm import MaskedLM, fit_head
from indus.encoder.presets import FINETUNE_DROPOUT, config_for_tokenizer, set_dropout
from indus.errors import IndusError
from indus.models import load_tokenizer, resolve_model
from indus.outdir import is_complete, prepare_output_dir


def build_model(cfg: PretrainConfig, tokenizer):
    """A ``RobertaForMaskedLM`` of ``cfg.preset``'s shape sized to ``tokenizer`` (seeded), or ``init_from``.

    ``cfg.dropout``, when set, replaces the hidden and attention dropout for pretraining (a single pass over a
    corpus under a small budget learns faster without it, as in Geiping & Goldstein's "Cramming").
    """
    model, _ = load_model(cfg, tokenizer)
    return model


def load_model(cfg: PretrainConfig, tokenizer):
    """``(model, head_is_new)``: :func:`build_model`'s model, and whether its MLM head was freshly initialised."""
    model, head_is_new = _build_model(cfg, tokenizer)
    if cfg.dropout is not None:
        set_dropout(model, cfg.dropout)
    return model, head_is_new


def init_path(spec: str) -> Path:
    """The folder of an ``init_from`` spec: ``minilm`` or a Hugging Face model folder (checked, not loaded)."""
    if spec.startswith("random:"):
        raise IndusError(f"init_from={spec}: expected 'minilm' or a model folder (a random model is a preset)")
    return resolve_model(spec).path


def _build_model(cfg: PretrainConfig, tokenizer):
    import torch
    from transformers import AutoModelForMaskedLM

    if cfg.init_from:
        path = init_path(cfg.init_from)
        torch.manual_seed(cfg.seed)  # a missing head is initialised from the seed
        try:
            model, info = AutoModelForMaskedLM.from_pretrained(
                path, attn_implementation="sdpa", output_loading_info=True
            )
        except (OSError, ValueError) as exc:
            raise IndusError(f"{cfg.init_from}: could not load a masked-LM model ({exc})") from None
        if len(tokenizer) > model.get_input_embeddings().num_embeddings:
            raise IndusError(
                f"{cfg.tokenizer}: {len(tokenizer)} tokens, but {cfg.init_from} has embeddings for "
                f"{model.get_input_embeddings().num_embeddings}; use the model's own tokenizer"
            )
        model.tie_weights()  # the decoder is the input embedding matrix (BERT, RoBERTa)
        head_names = ("cls.", "lm_head.")
        head_is_new = any(k.startswith(head_names) for k in info["missing_keys"])
        return model, head_is_new
    torch.manual_seed(cfg.seed)
    config = config_for_tokenizer(cfg.preset, tokenizer, max_length=max(512, cfg.seq_len))
    return AutoModelForMaskedLM.from_config(config, attn_implementation="sdpa"), False


def load_pretrain_tokenizer(spec: str):
    """The tokenizer named by a config (``indus tokenizer train`` folder or model spec); it must have ``<mask>``."""
    if not spec:
        raise IndusError("no tokenizer: set tokenizer (a folder from `indus tokenizer train`, or a model) or init_from")
    tok = load_tokenizer(spec)
    if tok.mask_token_id is None:
        raise IndusError(f"{spec}: the tokenizer has no mask token")
    return tok


def pretrain(
    cfg: PretrainConfig, out_dir: str | Path, *, resume: bool = False, overwrite: bool = False
) -> dict[str, Any]:
    """Pretrain with masked LM; returns the metrics also written to ``out_dir/metrics.json``.

    Keys include ``steps``, ``tokens_seen``, ``train_flops`` (6 x non-embedding params x tokens),
    ``train_flops_with_embeddings``, ``valid_loss``, ``valid_ppl``, ``tokens_per_s``, ``wall_s``, ``params``.
    With ``resume``, training continues from the newest complete checkpoint in ``out_dir`` (from the start when
    there is none; a finished run is returned as it is). ``out_dir`` follows :mod:`indus.outdir`: a non-empty
    folder needs ``resume`` or ``overwrite``, except the leftovers of a failed run without checkpoints.
    """
    out_dir = Path(out_dir)
    if resume and is_complete(out_dir, "metrics.json"):
        return json.loads((out_dir / "metrics.json").read_text())
    if not cfg.budget_set:
        raise IndusError("no run length: set one of max_steps, max_tokens or max_minutes")
    out = prepare_output_dir(out_dir, command="pretrain", resume=resume, overwrite=overwrite, resumable=True)
    tokenizer = load_pretrain_tokenizer(cfg.tokenizer or (str(init_path(cfg.init_from)) if cfg.init_from else ""))
    model, head_is_new = load_model(cfg, tokenizer)
    objective = build_objective(cfg, model, tokenizer)
    warmup = {}
    if head_is_new and cfg.head_warmup_steps and not _has_checkpoint(out_dir, resume):
        warmup = warm_up_head(cfg, objective, tokenizer)
    result = train_loop(
        cfg,
        objective,
        out_dir,
        tokenizer,
        resume=resume,
        title=f"pretrain {cfg.preset if not cfg.init_from else Path(cfg.init_from).name}",
    )
    metrics = {
        "kind": "pretrain",
        "preset": None if cfg.init_from else cfg.preset,
        "init_from": cfg.init_from,
        "masking": cfg.masking,
        "mask_prob": cfg.mask_prob,
        "head_is_new": head_is_new,
        **warmup,
        **result.metrics,
    }
    if cfg.dropout is not None:
        set_dropout(model, FINETUNE_DROPOUT)
    save_final(
        out_dir,
        model,
        tokenizer,
        metrics,
        result.accelerator,
        card=lambda folder: encoder_card(folder, cfg, metrics, kind="encoder", location=out_dir),
    )
    out.complete()
    return metrics


def build_objective(cfg: PretrainConfig, model, tokenizer):
    """The :class:`~indus.encoder.mlm.MaskedLM` objective of ``cfg`` (random or keyword masking)."""
    masking = MaskingSpec.from_tokenizer(tokenizer, cfg.mask_prob, cfg.mask_replace_prob, cfg.mask_random_prob)
    if cfg.masking != "keyword":
        return MaskedLM(model, masking)
    masking = dataclasses.replace(masking, keyword_share=cfg.keyword_share)
    train_files, _ = corpus_split(cfg.train_files, cfg.valid_files)
    files = [f for p in train_files for f in _corpus_files(p)]
    max_docs = min(cfg.keyword_idf_docs, cfg.max_docs or cfg.keyword_idf_docs)
    return MaskedLM(model, masking, keyword_idf=corpus_idf(files, tokenizer, max_docs), keyword_top=cfg.keyword_top)


def _corpus_files(path) -> list[Path]:

    return corpus_files(path, "train", from_config=True)


def _has_checkpoint(out_dir: Path, resume: bool) -> bool:

    return resume and newest_complete_checkpoint(out_dir / "checkpoints") is not None


def warm_up_head(cfg: PretrainConfig, objective, tokenizer) -> dict[str, Any]:
    """Fit the new MLM head alone (:func:`~indus.encoder.mlm.fit_head`) on the training corpus; its record."""
    import torch

    start = time.perf_counter()
    train_files, _ = corpus_split(cfg.train_files, cfg.valid_files)
    if cfg.streaming:
        data = StreamingCorpus(train_files, tokenizer, cfg.seq_len, cfg.seed, cfg.shuffle_buffer, cfg.max_docs)
    else:  # the same cached packing the loop then reads
        data = PackedCorpus(
            build_packed_dataset(
                train_files, tokenizer, cfg.seq_len, max_docs=cfg.max_docs, cache_dir=cfg.cache_dir, progress=False
            ),
            cfg.seed,
        )
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.bf16 and bf16_supported(device))
    objective.to(device)
    losses = fit_head(
        objective,
        data,
        steps=cfg.head_warmup_steps,
        lr=cfg.head_warmup_lr,
        batch_size=cfg.batch_size,
        seed=cfg.seed + 1,
        device=device,
        autocast=autocast,
    )
    return {
        "head_warmup_steps": len(losses),
        "head_warmup_first_loss": losses[0],
        "head_warmup_last_loss": losses[-1],
        "head_warmup_s": time.perf_counter() - start,
    }
