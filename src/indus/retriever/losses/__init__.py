"""Retriever losses, one per module: the GTE improved contrastive loss and DistillCSE distillation."""

from __future__ import annotations

from indus.retriever.losses.distillcse import DistillCSELoss
from indus.retriever.losses.gte import GTELoss, gte_loss

__all__ = ["DistillCSELoss", "GTELoss", "gte_loss"]
