"""Encoder shapes: kept importable here; they live in :mod:`indus.presets`, beside :mod:`indus.models`."""

from __future__ import annotations

from indus.presets import (
    FINETUNE_DROPOUT,
    PRESETS,
    Preset,
    config_for_tokenizer,
    get_preset,
    roberta_config,
    set_dropout,
)

__all__ = [
    "FINETUNE_DROPOUT",
    "PRESETS",
    "Preset",
    "config_for_tokenizer",
    "get_preset",
    "roberta_config",
    "set_dropout",
]
