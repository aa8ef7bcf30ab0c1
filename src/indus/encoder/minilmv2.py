"""MiniLMv2 multi-head self-attention relation distillation (Wang et al., 2021, arXiv 2012.15828).

For one teacher layer and the student's last layer, the queries, keys and values (each ``(B, L, H)``) are split
into ``R`` *relation heads* of size ``H / R`` (R is independent of either model's attention heads, so teacher and
student may have different hidden sizes and head counts). For each of Q-Q, K-K and V-V the relation of a head is
``softmax(A A^T / sqrt(H / R))`` (B, R, L, L), and the loss sums the three KL divergences
``KL(teacher || student)``, averaged over batch, relation heads and query positions. INDUS-SMALL was distilled this
way from INDUS-BASE (arXiv 2405.10725).

Q/K/V are captured with forward hooks on the attention's ``query`` / ``key`` / ``value`` Linear modules, which
BERT and RoBERTa (and most of their relatives in transformers) share.

Example
-------
>>> import torch
>>> loss = MiniLMv2Loss(relation_heads=4)
>>> t = [torch.randn(2, 8, 32) for _ in range(3)]
>>> s = [torch.randn(2, 8, 16) for _ in range(3)]
>>> float(loss(t, t)) == 0.0, float(loss(t, s)) > 0
(True, True)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def relation_log_probs(
    states: torch.Tensor, relation_heads: int, attention_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Log of ``softmax(A A^T / sqrt(d_r))`` per relation head: states (B, L, H) -> (B, R, L, L).

    Padded key positions (``attention_mask == 0``) get zero probability.
    """
    b, n, h = states.shape
    if h % relation_heads:
        raise ValueError(f"hidden size {h} is not divisible by relation_heads={relation_heads}")
    d = h // relation_heads
    a = states.float().view(b, n, relation_heads, d).transpose(1, 2)  # (B, R, L, d)
    scores = a @ a.transpose(-1, -2) / math.sqrt(d)  # (B, R, L, L)
    if attention_mask is not None:
        keep = attention_mask[:, None, None, :].bool()  # (B, 1, 1, L)
        scores = scores.masked_fill(~keep, torch.finfo(scores.dtype).min)
    return F.log_softmax(scores, dim=-1)  # (B, R, L, L)


class MiniLMv2Loss(nn.Module):
    """Sum over Q-Q, K-K, V-V of ``KL(teacher relation || student relation)`` (arXiv 2012.15828).

    Parameters
    ----------
    relation_heads
        Number of relation heads ``R``; must divide both the teacher's and the student's hidden size.

    Inputs are ``teacher_qkv`` and ``student_qkv``, each a sequence of three tensors (queries, keys, values) of
    shape (B, L, H_teacher) and (B, L, H_student), plus an optional ``attention_mask`` (B, L). The KL divergence
    is averaged over batch, relation heads and (unpadded) query positions.
    """

    def __init__(self, relation_heads: int) -> None:
        super().__init__()
        if relation_heads < 1:
            raise ValueError(f"relation_heads must be >= 1, got {relation_heads}")
        self.relation_heads = relation_heads

    def forward(
        self,
        teacher_qkv: Sequence[torch.Tensor],
        student_qkv: Sequence[torch.Tensor],
        attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        device = student_qkv[0].device
        # relations in fp32 even inside a bf16 autocast region: bf16 scores would put a noise floor under the KL
        with torch.autocast(device.type, enabled=False):
            return self._kl(teacher_qkv, student_qkv, attention_mask)

    def _kl(
        self,
        teacher_qkv: Sequence[torch.Tensor],
        student_qkv: Sequence[torch.Tensor],
        attention_mask: torch.Tensor | None,
    ) -> torch.Tensor:
        total = torch.zeros((), device=student_qkv[0].device)
        for t_states, s_states in zip(teacher_qkv, student_qkv, strict=True):
            log_t = relation_log_probs(t_states.detach(), self.relation_heads, attention_mask)  # (B, R, L, L)
            log_s = relation_log_probs(s_states, self.relation_heads, attention_mask)  # (B, R, L, L)
            kl_rows = (log_t.exp() * (log_t - log_s)).sum(-1)  # (B, R, L)
            if attention_mask is None:
                total = total + kl_rows.mean()
            else:
                rows = attention_mask[:, None, :].to(kl_rows.dtype).expand_as(kl_rows)  # (B, R, L)
                total = total + (kl_rows * rows).sum() / rows.sum()
        return total


class QKVCapture:
    """Forward hooks that keep the outputs of one attention layer's ``query``, ``key`` and ``value`` Linears.

    Parameters
    ----------
    layer
        An encoder layer whose ``attention.self`` (BERT, RoBERTa) has ``query``, ``key`` and ``value`` modules.
    """

    def __init__(self, layer: nn.Module) -> None:
        attn = getattr(getattr(layer, "attention", None), "self", None)
        if attn is None or not all(hasattr(attn, n) for n in ("query", "key", "value")):
            raise TypeError(f"{type(layer).__name__}: expected .attention.self.query/key/value (BERT / RoBERTa)")
        self.outputs: dict[str, torch.Tensor] = {}
        self._handles = [getattr(attn, n).register_forward_hook(self._hook(n)) for n in ("query", "key", "value")]

    def _hook(self, name: str):
        def hook(module: nn.Module, args, output: torch.Tensor) -> None:
            self.outputs[name] = output  # (B, L, H)

        return hook

    def qkv(self) -> list[torch.Tensor]:
        """The captured queries, keys and values of the last forward, each (B, L, H)."""
        return [self.outputs[n] for n in ("query", "key", "value")]

    def remove(self) -> None:
        """Detach the hooks."""
        for h in self._handles:
            h.remove()
