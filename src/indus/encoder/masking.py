"""RoBERTa's dynamic masking (arXiv 1907.11692): a fresh 15% of tokens each time a sequence is seen.

Of the selected tokens, 80% become ``<mask>``, 10% a random token and 10% stay; special tokens are never selected.
Randomness comes from an explicit ``torch.Generator`` so that masking is a function of (seed, step), which makes
resumed runs repeat the same masks.

Keyword masking (INDUS-SDE's weighted dynamic masking; keywords from :mod:`indus.encoder.keywords`): the same
expected number of tokens per sequence is selected, ``mask_prob`` of the maskable ones, but ``keyword_share`` of
them on keyword positions (each keyword is selected with probability ``min(1, share * n_mask / n_keywords)``) and
the rest spread evenly over the other tokens; the 80/10/10 replacement is the same.

Example
-------
>>> import torch
>>> ids = torch.tensor([[0, 10, 11, 12, 2, 13, 14, 2]])
>>> spec = MaskingSpec(mask_id=4, vocab_size=50, special_ids=(0, 1, 2, 3, 4))
>>> inputs, labels = mask_tokens(ids, spec, torch.Generator().manual_seed(0))
>>> bool(((labels == -100) | (inputs != ids) | (labels == ids)).all())
True
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

IGNORE_INDEX = -100


@dataclass(frozen=True)
class MaskingSpec:
    """What to mask with: the ``<mask>`` id, the vocabulary, the ids never masked, and the proportions."""

    mask_id: int
    vocab_size: int
    special_ids: tuple[int, ...]
    mask_prob: float = 0.15
    replace_prob: float = 0.8
    random_prob: float = 0.1
    keyword_share: float = 0.6

    @classmethod
    def from_tokenizer(
        cls, tokenizer, mask_prob: float = 0.15, replace_prob: float = 0.8, random_prob: float = 0.1
    ) -> MaskingSpec:
        """The spec for a transformers tokenizer (``<mask>`` id, ``len(tokenizer)``, all special ids)."""
        if tokenizer.mask_token_id is None:
            raise ValueError("the tokenizer has no mask token")
        return cls(
            tokenizer.mask_token_id,
            len(tokenizer),
            tuple(sorted(set(tokenizer.all_special_ids))),
            mask_prob,
            replace_prob,
            random_prob,
        )


def selection_probability(
    maskable: torch.Tensor, keywords: torch.Tensor, mask_prob: float, keyword_share: float
) -> torch.Tensor:
    """Per-position selection probability (B, L) putting ``keyword_share`` of each row's masks on keywords.

    A row's expected count stays ``mask_prob * n_maskable``; what keywords cannot take (probability capped at 1)
    goes to the other tokens, and a row without keywords is masked uniformly.
    """
    kw = keywords & maskable  # (B, L)
    other = maskable & ~kw  # (B, L)
    n_mask = mask_prob * maskable.sum(1, keepdim=True).float()  # (B, 1)
    n_kw = kw.sum(1, keepdim=True).float()  # (B, 1)
    n_other = other.sum(1, keepdim=True).float()  # (B, 1)
    share = torch.where(n_other > 0, torch.full_like(n_kw, keyword_share), torch.ones_like(n_kw))
    p_kw = torch.clamp(share * n_mask / n_kw.clamp(min=1), max=1.0) * (n_kw > 0)  # (B, 1)
    p_other = torch.clamp((n_mask - p_kw * n_kw) / n_other.clamp(min=1), min=0.0, max=1.0)  # (B, 1)
    return torch.where(kw, p_kw, torch.where(other, p_other, torch.zeros_like(p_other)))  # (B, L)


def mask_tokens(
    input_ids: torch.Tensor, spec: MaskingSpec, generator: torch.Generator, keywords: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mask ``input_ids`` (B, L) for MLM; returns ``(inputs, labels)``, labels ``-100`` where nothing is predicted.

    ``keywords`` (bool, B x L) switches to keyword masking (see the module docstring). Random replacements are
    drawn uniformly from the non-special ids, so a special token never appears where the text had none.
    """
    device = input_ids.device
    special = torch.tensor(spec.special_ids, device=device)
    maskable = ~torch.isin(input_ids, special)  # (B, L)
    u = torch.rand(input_ids.shape, generator=generator, device=device)  # (B, L)
    if keywords is None:
        selected = (u < spec.mask_prob) & maskable  # (B, L)
    else:
        selected = (u < selection_probability(maskable, keywords, spec.mask_prob, spec.keyword_share)) & maskable
    labels = torch.where(selected, input_ids, torch.full_like(input_ids, IGNORE_INDEX))  # (B, L)
    # one draw decides mask / random / keep for every selected token
    v = torch.rand(input_ids.shape, generator=generator, device=device)  # (B, L)
    to_mask = selected & (v < spec.replace_prob)
    to_random = selected & (v >= spec.replace_prob) & (v < spec.replace_prob + spec.random_prob)
    allowed = torch.ones(spec.vocab_size, dtype=torch.bool, device=device)
    allowed[special[special < spec.vocab_size]] = False
    pool = allowed.nonzero().squeeze(1)  # (V - n_special,)
    random_ids = pool[torch.randint(len(pool), input_ids.shape, generator=generator, device=device)]  # (B, L)
    inputs = torch.where(to_mask, torch.full_like(input_ids, spec.mask_id), input_ids)
    inputs = torch.where(to_random, random_ids.to(input_ids.dtype), inputs)
    return inputs, labels
