"""Retriever losses, one per module: the GTE improved contrastive loss, DistillCSE distillation and query-encoder
distillation (a student query encoder in a teacher's space)."""

from __future__ import annotations

from indus.retriever.losses.distillcse import DistillCSELoss
from indus.retriever.losses.gte import GTELoss, gte_loss
from indus.retriever.losses.query_distill import QueryDistillLoss

__all__ = ["DistillCSELoss", "GTELoss", "QueryDistillLoss", "gte_loss"]
