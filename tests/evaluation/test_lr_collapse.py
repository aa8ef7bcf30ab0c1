"""Issue 18: the learning rate chosen on dev, early stopping, collapse as a state, class-weighted loss."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import indus.evaluation.finetune as ft
import indus.models
from indus.evaluation import evaluate
from indus.evaluation.cls import ClassificationEvaluator, majority_baseline, weighted_loss
from indus.evaluation.finetune import FinetuneSettings, finetune

NER_TRAIN = "Aspirin\tB-Chemical\ncures\tO\npain\tB-Disease\n\nThe\tO\ndrug\tO\nworks\tO\n\n"


@pytest.fixture()
def ner_dir(tmp_path):
    d = tmp_path / "ner"
    d.mkdir()
    (d / "train.tsv").write_text(NER_TRAIN * 4)
    (d / "test.tsv").write_text("Aspirin\tB-Chemical\nhelps\tO\n\nPain\tB-Disease\nstops\tO\n")
    return d


@pytest.fixture()
def cls_dir(tmp_path):
    d = tmp_path / "cls"
    d.mkdir()
    rows = [
        ("inhibits the enzyme", "a"),
        ("blocks the kinase", "a"),
        ("binds weakly", "a"),
        ("activates the receptor", "b"),
    ]
    (d / "train.jsonl").write_text("".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in rows * 2))
    (d / "test.jsonl").write_text("".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in rows))
    return d


def _forced_to_predict_o(monkeypatch):
    """Every model the NER evaluator loads predicts O: its classifier bias for O (label 0) is +1e4."""
    real = indus.models.load_model

    def load(*args, **kwargs):
        net = real(*args, **kwargs)
        with torch.no_grad():
            net.classifier.bias[0] = 1e4
        return net

    monkeypatch.setattr(ft, "load_model", load)  # the name the evaluator calls


def test_a_model_forced_to_predict_o_is_collapsed_retried_and_left_out(monkeypatch, micro_model_dir, ner_dir):
    _forced_to_predict_o(monkeypatch)
    result = evaluate("ner", str(micro_model_dir), ner_dir, seeds=2, epochs=1, batch_size=4, lr=1e-3, progress=False)
    runs = result.per_seed
    assert [r["collapsed"] for r in runs] == [True, True]
    assert [r["retried_lr"] for r in runs] == pytest.approx([1e-3 / 3] * 2)  # retried once, lower
    assert result.collapsed and result.counts["collapsed_seeds"] == 2
    assert result.value is None and result.to_json()["f1"] is None  # never averaged in as F1 0
    kept = evaluate(
        "ner",
        str(micro_model_dir),
        ner_dir,
        seeds=1,
        epochs=1,
        batch_size=4,
        lr=1e-3,
        on_collapse="keep",
        progress=False,
    )
    assert kept.per_seed[0]["collapsed"] and "retried_lr" not in kept.per_seed[0]
    assert kept.value == 0.0 and not kept.collapsed and kept.counts["collapsed_seeds"] == 1


def test_a_healthy_run_is_not_collapsed(micro_model_dir, ner_dir):
    from indus.evaluation.finetune import single_label

    assert not single_label(["B-Chemical", "O"], ["B-Chemical", "O"])
    assert not single_label(["O", "O"], ["O", "O"])  # all O is right when the gold is all O


def test_the_lr_grid_picks_the_planted_best_on_dev(monkeypatch, micro_model_dir, ner_dir):
    planted = {1e-4: 0.2, 1e-3: 0.7, 1e-2: 0.4}
    real = ft.finetune
    tried = []

    def fake(model, features, collate, settings, **kw):
        stats = real(
            model,
            features,
            collate,
            FinetuneSettings(epochs=1, max_steps=1, lr=settings.lr, progress=False),
            **{**kw, "dev_score": None},
        )
        tried.append(settings.lr)
        return {**stats, "best_dev": planted[settings.lr], "best_epoch": 1.0}

    monkeypatch.setattr(ft, "finetune", fake)
    result = evaluate(
        "ner", str(micro_model_dir), ner_dir, seeds=2, lr="auto", lr_grid=[1e-4, 1e-3, 1e-2], progress=False
    )
    choice = result.info["lr_choice"]
    assert choice["mode"] == "auto" and choice["lr"] == 1e-3 and choice["dev_score"] == 0.7
    assert {k: v["dev"] for k, v in choice["grid"].items()} == {"0.0001": 0.2, "0.001": 0.7, "0.01": 0.4}
    # no dev split: a held-out tenth of train (1 of the 8 sentences), not trained on
    assert choice["dev"] == "0.1 of train" and choice["dev_examples"] == 1 and result.counts["train_sentences"] == 7
    # the seeds train at the choice; the first seed's run is the grid's own run at 1e-3 (same seed), not redone
    assert tried == [1e-4, 1e-3, 1e-2, 1e-3]
    assert [r["lr"] for r in result.per_seed] == [1e-3, 1e-3]
    assert json.loads(json.dumps(result.to_json()))["lr_choice"]["lr"] == 1e-3


def test_lr_auto_end_to_end_uses_the_dev_split(micro_model_dir, ner_dir):
    (ner_dir / "dev.tsv").write_text(NER_TRAIN)
    result = evaluate(
        "ner", str(micro_model_dir), ner_dir, seeds=1, epochs=2, batch_size=4, progress=False, on_collapse="keep"
    )
    choice = result.info["lr_choice"]
    assert result.settings["lr"] == "auto" and choice["dev"] == "dev" and choice["dev_examples"] == 2
    assert [float(k) for k in choice["grid"]] == list(ft.SMALL_LR_GRID)  # random:micro is a small encoder
    assert choice["lr"] in ft.SMALL_LR_GRID and result.counts["train_sentences"] == 8
    run = result.per_seed[0]
    assert run["lr"] == choice["lr"] and run["best_epoch"] in (1.0, 2.0) and len(run["dev_curve"]) >= 1


def test_bad_lr_settings_are_refused():
    from indus.errors import IndusError

    assert ClassificationEvaluator(lr="2e-5").lr == 2e-5  # YAML and --set give text
    for bad in ({"lr": "fast"}, {"lr_grid": []}, {"on_collapse": "ignore"}, {"class_weights": "inverse"}):
        with pytest.raises(IndusError):
            ClassificationEvaluator(**bad)


class _Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(2, 2)

    def forward(self, x, labels):
        return {"loss": nn.functional.cross_entropy(self.lin(x), labels)}


def test_early_stopping_restores_the_best_epoch_and_stops_on_patience():
    torch.manual_seed(0)
    model = _Toy()
    feats = [{"x": torch.tensor([1.0, float(i % 2)]), "labels": torch.tensor(i % 2)} for i in range(8)]
    collate = lambda b: {k: torch.stack([f[k] for f in b]) for k in b[0]}  # noqa: E731
    planted = iter([0.1, 0.9, 0.2, 0.3, 0.95, 0.99])
    snapshots = []

    def dev_score(m):
        snapshots.append({k: v.clone() for k, v in m.state_dict().items()})
        return next(planted)

    stats = finetune(
        model,
        feats,
        collate,
        FinetuneSettings(epochs=6, batch_size=4, lr=0.5, progress=False),
        dev_score=dev_score,
        patience=2,
    )
    # epoch 2 scored best; epochs 3 and 4 did not beat it: stopped there, epochs 5 and 6 never ran
    assert [s for _, s in stats["dev_curve"]] == [0.1, 0.9, 0.2, 0.3] and stats["steps"] == 8
    assert stats["best_epoch"] == 2.0 and stats["best_dev"] == 0.9
    assert not torch.equal(snapshots[1]["lin.weight"], snapshots[3]["lin.weight"])
    for key, value in model.state_dict().items():
        assert torch.equal(value, snapshots[1][key]), key


class _FixedLogits(nn.Module):
    def __init__(self, logits):
        super().__init__()
        self.p = nn.Parameter(torch.zeros(1))
        self.logits = logits

    def forward(self, **batch):
        return type("Out", (), {"logits": self.logits + self.p})()


def test_class_weights_change_the_loss_as_computed_by_hand(micro_model_dir, cls_dir):
    logits = torch.tensor([[2.0, 0.0], [0.5, 1.5], [1.0, 1.0]])
    labels = torch.tensor([0, 1, 1])
    w = [0.5, 3.0]
    loss = weighted_loss(_FixedLogits(logits), w)(labels=labels)["loss"].item()
    ce = [-torch.log_softmax(logits[i], -1)[labels[i]].item() for i in range(3)]
    by_hand = (w[0] * ce[0] + w[1] * ce[1] + w[1] * ce[2]) / (w[0] + w[1] + w[1])
    assert loss == pytest.approx(by_hand, rel=1e-6) and loss != pytest.approx(sum(ce) / 3, rel=1e-3)
    # balanced: n / (classes x count), here 8 examples, a: 6, b: 2
    result = evaluate(
        "cls",
        str(micro_model_dir),
        cls_dir,
        seeds=1,
        epochs=1,
        batch_size=4,
        lr=1e-3,
        class_weights="balanced",
        on_collapse="keep",
        progress=False,
    )
    assert result.info["class_weights"] == pytest.approx([8 / (2 * 6), 8 / (2 * 2)])
    # always "a" on the 4 test texts (3 a, 1 b): F1 of a = 2 * 0.75 * 1 / 1.75 = 6/7, of b 0
    assert result.info["majority_baseline"] == {
        "label": "a",
        "macro_f1": pytest.approx(3 / 7),
        "micro_f1": 0.75,
        "accuracy": 0.75,
    }


def test_majority_baseline_by_hand():
    base = majority_baseline(["x", "y", "y"], ["x", "y", "z", "y"])
    assert base["label"] == "y" and base["accuracy"] == 0.5
    assert base["macro_f1"] == pytest.approx((0 + 2 / 3 + 0) / 3)  # F1 of y: P 1/2, R 1


def test_lr_auto_grid_by_width_and_task(monkeypatch):
    """Small encoders get the small grid; a BERT-size checkpoint gets its task's grid (QA's reaches higher)."""
    from types import SimpleNamespace

    from indus.evaluation.ner import NEREvaluator
    from indus.evaluation.qa import QA_LR_GRID, QAEvaluator

    width = {"hidden_size": 128}
    monkeypatch.setattr(ft, "load_model", lambda ref, seed=0: SimpleNamespace(config=SimpleNamespace(**width)))
    ctx = SimpleNamespace(ref=None)
    assert NEREvaluator().lr_candidates(ctx) == QAEvaluator().lr_candidates(ctx) == list(ft.SMALL_LR_GRID)
    width["hidden_size"] = 384
    assert NEREvaluator().lr_candidates(ctx) == list(ft.BASE_LR_GRID)
    assert QAEvaluator().lr_candidates(ctx) == list(QA_LR_GRID) and max(QA_LR_GRID) > max(ft.BASE_LR_GRID)
    assert QAEvaluator(lr_grid=[1e-5]).lr_candidates(ctx) == [1e-5]
