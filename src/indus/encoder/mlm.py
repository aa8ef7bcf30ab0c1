"""Masked-LM loss with the vocabulary head applied at the masked positions only.

The head of a 50k-vocabulary model is most of an encoder's compute on short sequences; RoBERTa predicts only the
~15% masked positions, so we run the encoder, gather the hidden states at those positions and apply the head
there: the same loss as the full ``(B, L, V)`` logits (``masked_lm_loss_reference``), at a fraction of the cost.

Example
-------
>>> from transformers import RobertaConfig, RobertaForMaskedLM
>>> _ = torch.manual_seed(0)
>>> model = RobertaForMaskedLM(RobertaConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1,
...                                          num_attention_heads=2, intermediate_size=32)).eval()
>>> objective = MaskedLM(model, MaskingSpec(mask_id=4, vocab_size=50, special_ids=(0, 1, 2, 3, 4)))
>>> input_ids = torch.randint(5, 50, (2, 16), generator=torch.Generator().manual_seed(0))
>>> batch = objective.make_batch(input_ids, torch.Generator().manual_seed(0))
>>> loss, n_masked = objective(**batch)
>>> bool(torch.isclose(loss, masked_lm_loss_reference(model, **batch))), int(n_masked) > 0
(True, True)
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from indus.encoder.keywords import keyword_positions
from indus.encoder.loop import mask_seed
from indus.encoder.masking import IGNORE_INDEX, MaskingSpec, mask_tokens


def mlm_head(model: nn.Module) -> nn.Module:
    """The vocabulary head of a transformers masked-LM model (RoBERTa ``lm_head``, BERT ``cls``)."""
    for name in ("lm_head", "cls"):
        head = getattr(model, name, None)
        if head is not None:
            return head
    raise TypeError(f"{type(model).__name__}: no masked-LM head found (expected .lm_head or .cls)")


def masked_lm_loss(
    model: nn.Module, input_ids: torch.Tensor, labels: torch.Tensor, attention_mask: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean cross-entropy over the masked positions and their count; the head runs at those positions only."""
    hidden = model.base_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (B, L, H)
    selected = labels != IGNORE_INDEX  # (B, L)
    if not selected.any():  # nothing to predict: a zero that still reaches every parameter's graph
        return hidden.sum() * 0.0, selected.sum()
    logits = mlm_head(model)(hidden[selected])  # (M, V)
    targets = labels[selected]  # (M,)
    return F.cross_entropy(logits.float(), targets), selected.sum()


def masked_lm_loss_reference(
    model: nn.Module, input_ids: torch.Tensor, labels: torch.Tensor, attention_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """The plain way: full ``(B, L, V)`` logits from the model's own forward, loss ignoring ``-100``."""
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits  # (B, L, V)
    return F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX)


class MaskedLM(nn.Module):
    """Masked-LM objective around a transformers ``*ForMaskedLM`` model (RoBERTa recipe, arXiv 1907.11692).

    ``make_batch`` masks a packed batch dynamically; ``forward`` returns ``(mean loss, number of predictions)``.
    Wrapping the whole loss in one module lets DDP see a single forward per micro-step.

    Parameters
    ----------
    model
        A ``RobertaForMaskedLM`` (or BERT) model; its head is applied at masked positions only.
    masking
        The masking specification (``<mask>`` id, vocabulary, special ids, proportions).
    keyword_idf
        Token IDF (V,) from :func:`indus.encoder.keywords.fit_idf`: keyword masking (INDUS-SDE) instead of random.
    keyword_top
        With ``keyword_idf``: the top fraction of each document piece's distinct tokens that are its keywords.
    """

    def __init__(
        self, model: nn.Module, masking: MaskingSpec, keyword_idf: np.ndarray | None = None, keyword_top: float = 0.25
    ) -> None:
        super().__init__()
        self.model = model
        self.masking = masking
        self.keyword_idf = keyword_idf
        self.keyword_top = keyword_top

    def make_batch(self, input_ids: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """``input_ids`` (B, L) -> ``{"input_ids", "labels"}`` with fresh masks drawn from ``generator``."""
        keywords = None
        if self.keyword_idf is not None:
            keywords = keyword_positions(input_ids, self.keyword_idf, self.masking.special_ids, self.keyword_top)
        inputs, labels = mask_tokens(input_ids, self.masking, generator, keywords)
        return {"input_ids": inputs, "labels": labels}

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return masked_lm_loss(self.model, input_ids, labels)


def fit_head(
    objective: MaskedLM,
    train_data,
    *,
    steps: int,
    lr: float,
    batch_size: int,
    seed: int,
    device: torch.device,
    autocast,
) -> list[float]:
    """Train only the MLM head of ``objective.model`` for ``steps`` steps (encoder and tied embeddings frozen).

    A head that is new (a general encoder shipped without one) or untrained (a distilled student) first learns to
    read the encoder, so that the encoder's own updates are not spent undoing the head's random start. The dense
    layer, LayerNorm and output bias train; the decoder matrix is the input embeddings and stays frozen. Batch
    ``i`` is ``train_data.batch(i * batch_size, batch_size)``, masked with a seed of ``(seed, i)``. Returns the loss
    of every step; ``requires_grad`` flags are restored afterwards.
    """
    model = objective.model
    tied = model.get_input_embeddings().weight
    head = [p for p in mlm_head(model).parameters() if p is not tied]
    flags = {p: p.requires_grad for p in model.parameters()}
    model.requires_grad_(False)
    for p in head:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(head, lr=lr, weight_decay=0.0)
    was_training = objective.training
    objective.train()
    losses = []
    try:
        for step in range(steps):
            ids = torch.from_numpy(train_data.batch(step * batch_size, batch_size))  # (B, L)
            batch = objective.make_batch(ids, torch.Generator().manual_seed(mask_seed(seed, step, 0, 0)))
            with autocast:
                loss, _ = objective(**{k: v.to(device) for k, v in batch.items()})
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            losses.append(float(loss.detach()))
    finally:
        for p, flag in flags.items():
            p.requires_grad_(flag)
        objective.train(was_training)
    return losses
