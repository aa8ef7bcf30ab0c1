from __future__ import annotations

import pytest
import torch
from torch import nn

from indus.evaluation.finetune import FinetuneSettings, finetune, param_groups


class Toy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(2, 2)
        self.LayerNorm = nn.LayerNorm(2)

    def forward(self, x, labels):
        return {"loss": nn.functional.cross_entropy(self.lin(self.LayerNorm(x)), labels)}


def _collate(batch):
    return {k: torch.stack([f[k] for f in batch]) for k in batch[0]}


def _features():
    return [{"x": torch.tensor([1.0, -1.0]) * (1 if i % 2 else -1), "labels": torch.tensor(i % 2)} for i in range(16)]


def test_finetune_learns_and_counts_steps():
    torch.manual_seed(0)
    model = Toy()
    stats = finetune(model, _features(), _collate, FinetuneSettings(epochs=20, batch_size=4, lr=5e-2, progress=False))
    assert stats["steps"] == 80 and stats["examples"] == 320
    assert stats["final_loss"] < 0.2


def test_same_seed_same_weights():
    weights = []
    for _ in range(2):
        torch.manual_seed(0)
        model = Toy()
        finetune(model, _features(), _collate, FinetuneSettings(epochs=1, batch_size=3, progress=False), seed=3)
        weights.append(model.lin.weight.detach().clone())
    assert torch.equal(weights[0], weights[1])


def test_max_steps_and_decay_groups():
    model = Toy()
    stats = finetune(model, _features(), _collate, FinetuneSettings(epochs=5, max_steps=3, progress=False))
    assert stats["steps"] == 3
    decay, no_decay = param_groups(model, 0.01)
    assert len(decay["params"]) == 1 and len(no_decay["params"]) == 3  # lin.weight | lin.bias, LN weight, LN bias


def test_bad_settings_and_empty_data():
    with pytest.raises(ValueError):
        FinetuneSettings(epochs=0)
    with pytest.raises(ValueError, match="no training features"):
        finetune(Toy(), [], _collate, FinetuneSettings(progress=False))
