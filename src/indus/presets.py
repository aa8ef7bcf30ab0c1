"""RoBERTa-style encoder shapes.

``base`` and ``small`` are the paper's INDUS-BASE and INDUS-SMALL (arXiv 2405.10725); ``tiny`` trains
usefully in minutes on two CPU cores; ``micro`` is for unit tests.
"""

from __future__ import annotations

from dataclasses import dataclass

from indus.errors import IndusError


@dataclass(frozen=True)
class Preset:
    """The shape of an encoder."""

    num_hidden_layers: int
    hidden_size: int
    num_attention_heads: int
    intermediate_size: int
    description: str = ""


PRESETS: dict[str, Preset] = {
    "base": Preset(12, 768, 12, 3072, "INDUS-BASE / RoBERTa-base shape (125M params with a 50k vocabulary)"),
    "small": Preset(4, 576, 12, 768, "INDUS-SMALL shape (38M params with a 50k vocabulary)"),
    "mini": Preset(6, 384, 12, 1536, "all-MiniLM-L6-v2 shape"),
    "tiny": Preset(4, 256, 4, 1024, "trains usefully in minutes on 2 CPU cores"),
    "nano": Preset(2, 128, 2, 512, "a small student for CPU distillation experiments"),
    "micro": Preset(2, 32, 2, 64, "unit tests only"),
}


FINETUNE_DROPOUT = 0.1  # RoBERTa's; what a saved model is fine-tuned with, whatever it was pretrained with


def set_dropout(model, p: float) -> None:
    """Set hidden and attention dropout to ``p`` in ``model``'s modules and in its config (what gets saved)."""
    import torch

    model.config.hidden_dropout_prob = model.config.attention_probs_dropout_prob = p
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):  # attention reads its probability from its Dropout module too
            module.p = p


def get_preset(name: str) -> Preset:
    """The preset called ``name``, or a clear error listing the known ones."""
    try:
        return PRESETS[name]
    except KeyError:
        raise IndusError(f"unknown model preset {name!r}; known: {', '.join(PRESETS)}") from None


def roberta_config(
    preset: str,
    *,
    vocab_size: int,
    pad_token_id: int = 1,
    bos_token_id: int = 0,
    eos_token_id: int = 2,
    max_length: int = 512,
    type_vocab_size: int = 1,
    **overrides,
):
    """A ``RobertaConfig`` for ``preset`` sized to a tokenizer.

    RoBERTa offsets positions by ``pad_token_id + 1``, so the position table holds ``max_length`` plus that.
    """
    from transformers import RobertaConfig

    p = get_preset(preset)
    kwargs = dict(
        vocab_size=vocab_size,
        hidden_size=p.hidden_size,
        num_hidden_layers=p.num_hidden_layers,
        num_attention_heads=p.num_attention_heads,
        intermediate_size=p.intermediate_size,
        max_position_embeddings=max_length + pad_token_id + 1,
        pad_token_id=pad_token_id,
        bos_token_id=bos_token_id,
        eos_token_id=eos_token_id,
        type_vocab_size=type_vocab_size,
        layer_norm_eps=1e-5,
    )
    kwargs.update(overrides)
    return RobertaConfig(**kwargs)


def config_for_tokenizer(preset: str, tokenizer, max_length: int = 512, **overrides):
    """A ``RobertaConfig`` for ``preset`` matching ``tokenizer``'s vocabulary and special tokens."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 1
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.cls_token_id
    eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id
    type_vocab = 2 if "token_type_ids" in tokenizer.model_input_names else 1
    return roberta_config(
        preset,
        vocab_size=len(tokenizer),
        pad_token_id=pad,
        bos_token_id=bos or 0,
        eos_token_id=eos or 2,
        max_length=max_length,
        type_vocab_size=type_vocab,
        **overrides,
    )
