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


def test_length_grouped_batches_are_homogeneous_and_seeded():
    lengths = [1, 9, 2, 8, 3, 7, 4, 6] * 8
    feats = [{"x": torch.tensor([float(n), 0.0]), "labels": torch.tensor(n % 2)} for n in lengths]
    seen: list[list[int]] = []

    class Spy(Toy):
        def forward(self, x, labels):
            seen.append(sorted(int(v) for v in x[:, 0]))
            return super().forward(x, labels)

    def batches(grouped: bool) -> list[list[int]]:
        seen.clear()
        torch.manual_seed(0)
        finetune(
            Spy(),
            feats,
            _collate,
            FinetuneSettings(epochs=1, batch_size=4, progress=False),
            seed=1,
            lengths=lengths if grouped else None,
        )
        return list(seen)

    grouped, again, shuffled = batches(True), batches(True), batches(False)
    assert grouped == again  # same seed, same batches
    assert sorted(v for b in grouped for v in b) == sorted(lengths)  # every feature once per epoch

    def spread(bs):
        return sum(max(b) - min(b) for b in bs) / len(bs)

    assert spread(grouped) < 0.5 * spread(shuffled)
    with pytest.raises(ValueError, match="lengths"):
        finetune(Toy(), feats, _collate, FinetuneSettings(progress=False), lengths=[1, 2])


def test_bf16_autocast_in_forward_only():
    seen = []

    class Spy(Toy):
        def forward(self, x, labels):
            seen.append(torch.is_autocast_enabled("cpu"))
            return super().forward(x, labels)

    model = Spy()
    finetune(model, _features(), _collate, FinetuneSettings(epochs=1, batch_size=8, bf16=True, progress=False))
    assert seen == [True, True]
    assert model.lin.weight.dtype == torch.float32  # weights stay fp32
    seen.clear()
    finetune(model, _features(), _collate, FinetuneSettings(epochs=1, batch_size=8, progress=False))
    assert seen == [False, False]
