"""Bi-encoders for retrieval: an encoder, mean pooling and L2 normalisation, as one ``SentenceTransformer``.

A bi-encoder is given by a model spec (:mod:`indus.models`) or by a layer cut of one:

- ``minilm``, a local Hugging Face or SentenceTransformer folder, ``random:<preset>[@<tokenizer model>]``;
- ``layers:N@MODEL``: the first ``N`` transformer layers of ``MODEL`` (embeddings, and pooling, kept);
  ``layers:0,2,4@MODEL`` keeps the listed layers in that order; ``minilm-layers:N`` is ``layers:N@minilm``.
  The lower layers of a trained encoder are a cheap, strong student (DistilBERT-style initialisation).

Example
-------
>>> parse_layer_spec("minilm-layers:3")
('minilm', [0, 1, 2])
>>> parse_layer_spec("layers:0,2,4@runs/teacher")
('runs/teacher', [0, 2, 4])
>>> parse_layer_spec("minilm") is None
True
"""

from __future__ import annotations

from typing import Any

from indus.errors import IndusError

LAYERS_PREFIX = "layers:"
MINILM_LAYERS_PREFIX = "minilm-layers:"


def parse_layer_spec(spec: str) -> tuple[str, list[int]] | None:
    """``(base model, kept layer indices)`` for a ``layers:...`` spec, ``None`` for any other spec."""
    if spec.startswith(MINILM_LAYERS_PREFIX):
        layers, base = spec[len(MINILM_LAYERS_PREFIX):], "minilm"
    elif spec.startswith(LAYERS_PREFIX):
        layers, sep, base = spec[len(LAYERS_PREFIX):].partition("@")
        if not sep or not base:
            raise IndusError(f"{spec}: expected layers:N@MODEL or layers:i,j,...@MODEL (e.g. layers:3@minilm)")
    else:
        return None
    try:
        values = [int(x) for x in layers.split(",")]
    except ValueError:
        raise IndusError(f"{spec}: layer count or indices must be integers") from None
    if len(values) == 1:
        if values[0] < 1:
            raise IndusError(f"{spec}: keep at least one layer")
        return base, list(range(values[0]))
    if any(v < 0 for v in values) or len(set(values)) != len(values):
        raise IndusError(f"{spec}: layer indices must be distinct and non-negative")
    return base, values


def _encoder_layers(auto_model: Any) -> Any:
    encoder = getattr(auto_model, "encoder", None)
    layers = getattr(encoder, "layer", None)
    if layers is None:
        raise IndusError(f"cannot cut layers of a {type(auto_model).__name__} (expected a BERT/RoBERTa-style "
                         "encoder with encoder.layer)")
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


def ensure_normalized(model: Any) -> Any:
    """Append a ``Normalize`` module unless the model already ends with one (cosine = inner product)."""
    from sentence_transformers.sentence_transformer.modules import Normalize

    if not isinstance(model[len(model) - 1], Normalize):
        model.append(Normalize())
    return model


def load_bi_encoder(spec: str, *, max_seq_length: int | None = None, seed: int = 0,
                    tokenizer_of: str | None = None, device: str | None = None) -> Any:
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
    """
    import torch

    from indus.models import load_sentence_transformer

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    cut = parse_layer_spec(spec)
    base = cut[0] if cut else spec
    if tokenizer_of and base.startswith("random:") and "@" not in base:
        from indus.encoder.presets import PRESETS

        if base[len("random:"):] in PRESETS:
            base = f"{base}@{tokenizer_of}"
    model = load_sentence_transformer(base, device=device, max_seq_length=max_seq_length, seed=seed)
    if cut:
        keep_layers(model, cut[1])
    return ensure_normalized(model)
