"""Bi-encoders for retrieval: an encoder, mean pooling and L2 normalisation, as one ``SentenceTransformer``.

A bi-encoder is given by a model spec (:mod:`indus.models`) or by a layer cut of one:

- ``minilm``, a local Hugging Face or SentenceTransformer folder, ``random:<preset>[@<tokenizer model>]``;
- ``layers:N@MODEL``: the first ``N`` transformer layers of ``MODEL`` (embeddings, and pooling, kept);
  ``layers:0,2,4@MODEL`` keeps the listed layers in that order; ``minilm-layers:N`` is ``layers:N@minilm``.
  The lower layers of a trained encoder are a cheap, strong student (DistilBERT-style initialisation).
- ``layers:0,2,4/ffn=384@MODEL``: the same cut with every kept feed-forward block narrowed to its 384 most
  important neurons (:func:`prune_ffn`), for a student that is narrower as well as shallower.

:func:`encode` (:mod:`indus.embedding`, re-exported here) embeds texts with any of these; a few texts (one query at
search time) take its direct path, whose per-query latency the IR evaluator measures.

Example
-------
>>> parse_layer_spec("minilm-layers:3")
('minilm', [0, 1, 2])
>>> parse_layer_spec("layers:0,2,4@runs/teacher")
('runs/teacher', [0, 2, 4])
>>> parse_student_spec("layers:0,2,4/ffn=384@runs/teacher")
('runs/teacher', [0, 2, 4], 384)
>>> parse_layer_spec("minilm") is None
True
"""

from __future__ import annotations

import random
from typing import Any

from indus.embedding import LEAN_MAX_TEXTS, encode, model_inputs  # noqa: F401 - encode is imported from here too
from indus.errors import IndusError
from indus.models import LayerCut, RandomInit, load_sentence_transformer, parse_model


def parse_layer_spec(spec: str) -> tuple[str, list[int]] | None:
    """``(base model, kept layer indices)`` for a ``layers:...`` spec, ``None`` for any other spec."""
    parsed = parse_student_spec(spec)
    return None if parsed is None else parsed[:2]


def parse_student_spec(spec: str) -> tuple[str, list[int], int | None] | None:
    """``(base model, kept layer indices, FFN width or None)`` for a ``layers:...`` spec, else ``None``
    (:func:`indus.models.parse_model` reads it)."""
    cut = parse_model(spec, fused=False)
    return (cut.base, list(cut.layers), cut.ffn) if isinstance(cut, LayerCut) else None


def _encoder_layers(auto_model: Any) -> Any:
    encoder = getattr(auto_model, "encoder", None)
    layers = getattr(encoder, "layer", None)
    if layers is None:
        raise IndusError(
            f"cannot cut layers of a {type(auto_model).__name__} (expected a BERT/RoBERTa-style "
            "encoder with encoder.layer)"
        )
    return encoder


def keep_layers(model: Any, keep: list[int]) -> Any:
    """Keep only the transformer layers ``keep`` of a ``SentenceTransformer``'s encoder (in place)."""
    import torch.nn as nn

    auto_model = model[0].auto_model
    encoder = _encoder_layers(auto_model)
    n = len(encoder.layer)
    if max(keep) >= n:
        raise IndusError(f"layer {max(keep)} requested but the model has {n} layers (0..{n - 1})")
    encoder.layer = nn.ModuleList([encoder.layer[i] for i in keep])
    for new_index, layer in enumerate(encoder.layer):
        for module in layer.modules():
            if hasattr(module, "layer_idx"):
                module.layer_idx = new_index
    auto_model.config.num_hidden_layers = len(keep)
    return model


def _ffn_blocks(layer: Any) -> tuple[Any, Any]:
    """``(up, down)`` linear maps of a BERT/RoBERTa layer's feed-forward block."""
    up = getattr(getattr(layer, "intermediate", None), "dense", None)
    down = getattr(getattr(layer, "output", None), "dense", None)
    if up is None or down is None:
        raise IndusError(
            f"cannot narrow the feed-forward block of a {type(layer).__name__} (expected "
            "intermediate.dense and output.dense)"
        )
    return up, down


def ffn_importance(model: Any, texts: list[str] | None = None, *, batch_size: int = 32) -> list[Any]:
    """Per kept layer, one score per feed-forward neuron: how much it contributes to the layer's output.

    With ``texts``: the mean absolute activation of the neuron over their tokens times the norm of its output
    weights (a first-order estimate of what removing it changes). Without: the product of its input and output
    weight norms (data-free).
    """
    import torch

    auto_model = model[0].auto_model
    layers = _encoder_layers(auto_model).layer
    blocks = [_ffn_blocks(layer) for layer in layers]
    out_norm = [down.weight.detach().norm(dim=0) for _, down in blocks]  # (I,) per layer
    if not texts:
        return [up.weight.detach().norm(dim=1) * norm for (up, _), norm in zip(blocks, out_norm, strict=True)]
    sums = [torch.zeros_like(norm) for norm in out_norm]
    counts, mask = [0], [None]  # real tokens seen; the current batch's attention mask (padding not counted)
    hooks = []
    for i, layer in enumerate(layers):
        act = layer.intermediate

        def hook(_module, _inputs, output, i=i):
            sums[i] += (output.detach().abs().float() * mask[0][..., None]).sum(dim=(0, 1))

        hooks.append(act.register_forward_hook(hook))
    was_training = model.training
    model.eval()  # no dropout in the statistics
    try:
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                features = model_inputs(model, texts[start : start + batch_size])
                mask[0] = features["attention_mask"].float()  # (B, T)
                counts[0] += int(mask[0].sum())
                model(features)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return [s / max(counts[0], 1) * norm for s, norm in zip(sums, out_norm, strict=True)]


def calibration_sample(texts: list[str], seed: int, n: int = 512) -> list[str]:
    """A fixed random sample of the training texts that ranks feed-forward neurons for ``/ffn=N`` students."""
    return random.Random(seed).sample(texts, min(n, len(texts)))


def prune_ffn(model: Any, width: int, texts: list[str] | None = None) -> Any:
    """Narrow every feed-forward block of a ``SentenceTransformer``'s encoder to its ``width`` most important
    neurons (:func:`ffn_importance`), in place; the config's ``intermediate_size`` follows, so the model saves
    and loads as usual."""
    import torch
    import torch.nn as nn

    auto_model = model[0].auto_model
    current = auto_model.config.intermediate_size
    if width >= current:
        raise IndusError(f"ffn={width}: the model's feed-forward blocks have {current} neurons; ask for fewer")
    scores = ffn_importance(model, texts)
    for layer, score in zip(_encoder_layers(auto_model).layer, scores, strict=True):
        up, down = _ffn_blocks(layer)
        keep = torch.sort(torch.topk(score, width).indices).values
        new_up = nn.Linear(up.in_features, width, bias=up.bias is not None).to(up.weight.device, up.weight.dtype)
        new_down = nn.Linear(width, down.out_features, bias=down.bias is not None).to(
            down.weight.device, down.weight.dtype
        )
        with torch.no_grad():
            new_up.weight.copy_(up.weight[keep])
            new_down.weight.copy_(down.weight[:, keep])
            if up.bias is not None:
                new_up.bias.copy_(up.bias[keep])
            if down.bias is not None:
                new_down.bias.copy_(down.bias)
        layer.intermediate.dense, layer.output.dense = new_up, new_down
    auto_model.config.intermediate_size = width
    return model


def ensure_normalized(model: Any) -> Any:
    """Append a ``Normalize`` module unless the model already ends with one (cosine = inner product)."""
    from sentence_transformers.sentence_transformer.modules import Normalize

    if not isinstance(model[len(model) - 1], Normalize):
        model.append(Normalize())
    return model


def load_bi_encoder(
    spec: str,
    *,
    max_seq_length: int | None = None,
    seed: int = 0,
    tokenizer_of: str | None = None,
    device: str | None = None,
    calibration_texts: list[str] | None = None,
) -> Any:
    """A normalised mean-pooling ``SentenceTransformer`` for ``spec`` (see the module docstring).

    Parameters
    ----------
    spec
        Model spec or layer cut.
    max_seq_length
        Truncation length for every text (``None`` keeps the model's own).
    seed
        Seed of a random initialisation.
    tokenizer_of
        For ``random:<preset>`` without ``@``: take the tokenizer of this model (e.g. the teacher's) instead of
        minilm's.
    device
        ``cpu``, ``cuda``...; default: CUDA when available.
    calibration_texts
        For ``/ffn=N`` specs: texts whose activations rank the neurons (default: weight norms).
    """
    import torch

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    cut = parse_model(spec, fused=False)
    base = parse_model(cut.base, fused=False) if isinstance(cut, LayerCut) else cut
    if tokenizer_of and isinstance(base, RandomInit):
        base = base.with_tokenizer(tokenizer_of)
    model = load_sentence_transformer(base.spec, device=device, max_seq_length=max_seq_length, seed=seed)
    if isinstance(cut, LayerCut):
        keep_layers(model, list(cut.layers))
        if cut.ffn is not None:
            prune_ffn(model, cut.ffn, calibration_texts)
    return ensure_normalized(model)
