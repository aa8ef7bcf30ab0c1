"""Text classification: sequence-classification fine-tuning scored by micro and macro F1.

The objective is cross-entropy over the classes of a ``{"text", "label"}`` dataset, computed on the encoder's
sequence representation (the model class's own head: BERT's pooled ``[CLS]``, RoBERTa's ``<s>`` projection).
Texts longer than ``max_length`` subwords are truncated at the end, as in the standard recipe, and counted
(``train_truncated``, ``eval_truncated``). Scores: ``accuracy``, ``micro_f1`` (equal to accuracy for single-label
data) and ``macro_f1`` (unweighted mean over the classes present in the evaluation split, so that a class the
split lacks cannot score 0 for never being predicted), each the mean over ``seeds`` runs with its sample std;
``per_label`` holds each class's F1. The primary metric is ``macro_f1`` unless set (SciBERT reports micro F1 for
ChemProt and macro F1 for ACL-ARC / SciCite).

The recipe is BERT's sentence classification fine-tuning (arXiv 1810.04805), with the budgets and seeding of
:mod:`indus.evaluation.ner`.

Example
-------
>>> result = ClassificationEvaluator(seeds=1, epochs=1).evaluate("minilm", "citation_intent")  # doctest: +SKIP
>>> sorted(k for k in result if k.endswith("_f1"))  # doctest: +SKIP
['macro_f1', 'micro_f1']
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from indus.data.classification import Example, load_classification_dataset
from indus.errors import IndusError
from indus.evaluation.finetune import Context, FinetuneEvaluator, Part, autocast, mean_std, pad_batch, single_label

PRIMARY_METRICS = ("macro_f1", "micro_f1", "accuracy")


def encode_texts(
    tokenizer: Any, examples: Sequence[Example], label2id: dict[str, int], max_length: int
) -> tuple[list[dict[str, Any]], int]:
    """Features ``{"input_ids", "label"}`` truncated to ``max_length`` subwords, and how many were truncated."""
    texts = [e.text for e in examples]
    full = tokenizer(texts, truncation=False)["input_ids"]
    cut = tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
    truncated = sum(len(f) > max_length for f in full)
    return [{"input_ids": ids, "label": label2id[e.label]} for ids, e in zip(cut, examples, strict=True)], truncated


def _collate(pad_id: int, device: Any, labels: bool):
    import torch

    def collate(batch: list[dict[str, Any]]) -> dict[str, Any]:
        ids, mask = pad_batch([f["input_ids"] for f in batch], pad_id)  # (B, L), (B, L)
        out = {"input_ids": ids, "attention_mask": mask}
        if labels:
            out["labels"] = torch.tensor([f["label"] for f in batch], dtype=torch.long)  # (B,)
        return {k: v.to(device) for k, v in out.items()}

    return collate


def predict_labels(
    model: Any,
    features: Sequence[dict[str, Any]],
    *,
    batch_size: int = 64,
    pad_id: int = 0,
    device: Any = "cpu",
    bf16: bool = False,
    progress: bool = False,
) -> list[int]:
    """The argmax class of every feature (scored in order of length, under ``torch.inference_mode``)."""
    import torch
    from tqdm.auto import tqdm

    order = sorted(range(len(features)), key=lambda i: len(features[i]["input_ids"]))
    preds = [0] * len(features)
    collate = _collate(pad_id, device, labels=False)
    model.eval()
    with torch.inference_mode(), autocast(device, bf16):
        for start in tqdm(range(0, len(order), batch_size), desc="cls predict", disable=not progress, leave=False):
            idx = order[start : start + batch_size]
            best = model(**collate([features[i] for i in idx])).logits.argmax(-1).cpu().tolist()  # (B,)
            for i, p in zip(idx, best, strict=True):
                preds[i] = p
    return preds


def majority_baseline(train_labels: Sequence[str], gold: Sequence[str]) -> dict[str, Any]:
    """The scores of always predicting the most frequent training label (ties: the first in sorted order)."""
    counts = Counter(train_labels)
    label = min(counts, key=lambda c: (-counts[c], c))
    scores = classification_metrics(gold, [label] * len(gold))
    return {"label": label, **{k: scores[k] for k in PRIMARY_METRICS}}


def weighted_loss(net: Any, weights: Sequence[float]) -> Any:
    """``net`` (a sequence classifier) wrapped so that its forward returns ``{"loss", "logits"}`` with the loss a
    class-weighted cross-entropy, mean over the batch weighted as in ``torch.nn.CrossEntropyLoss(weight=...)``:
    sum_i w[y_i] * CE_i / sum_i w[y_i] (the model's own head computes the unweighted loss only)."""
    import torch
    from torch import nn

    class WeightedLoss(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net
            self.register_buffer("weight", torch.tensor(list(weights), dtype=torch.float32))

        def forward(self, labels: Any, **batch: Any) -> dict[str, Any]:
            logits = self.net(**batch).logits  # (B, C)
            return {"loss": nn.functional.cross_entropy(logits.float(), labels, weight=self.weight), "logits": logits}

    return WeightedLoss().to(next(net.parameters()).device)


def classification_metrics(y_true: Sequence[str], y_pred: Sequence[str]) -> dict[str, Any]:
    """``accuracy``, ``micro_f1``, ``macro_f1`` (over the classes in ``y_true``) and ``per_label`` F1."""
    from sklearn.metrics import accuracy_score, f1_score

    present = sorted(set(y_true))
    per_label = f1_score(y_true, y_pred, labels=present, average=None, zero_division=0)
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "micro_f1": float(f1_score(y_true, y_pred, average="micro", zero_division=0)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0)),
        "per_label": {label: float(f) for label, f in zip(present, per_label, strict=True)},
    }


@dataclass(kw_only=True)
class ClassificationEvaluator(FinetuneEvaluator):
    """Sequence-classification fine-tuning and micro / macro F1 (see the module docstring).

    Parameters
    ----------
    seeds
        Fine-tuning runs (seeds ``seed .. seed + seeds - 1``); metrics are the mean, ``*_std`` the sample std.
    seed
        First seed.
    epochs, batch_size, lr, weight_decay, warmup_ratio, max_steps
        Optimisation (:class:`~indus.evaluation.finetune.FinetuneSettings`); batches group texts of similar
        length.
    max_length
        Subwords per text, special tokens included; longer texts are truncated and counted.
    max_train_examples, max_eval_examples
        Use a fixed random subset (seed 0, the same for every model and run) of this many examples.
    split, train_split
        Evaluation and training splits.
    primary_metric
        ``macro_f1`` (default), ``micro_f1`` or ``accuracy``.
    eval_batch_size
        Texts per forward pass when predicting.
    bf16
        Run forward passes (training and prediction) under bfloat16 autocast; about twice as fast on CPUs with
        AVX-512 BF16 or AMX (weights and optimiser state stay fp32).
    device
        ``cpu``, ``cuda``, ...; ``None``: CUDA when available.
    progress
        Show progress bars.
    """

    task = "cls"
    data_kind = "classification"
    head = "AutoModelForSequenceClassification"
    metrics = PRIMARY_METRICS
    limits = ("max_train_examples", "max_eval_examples")

    max_length: int = 128
    max_train_examples: int | None = None
    max_eval_examples: int | None = None
    primary_metric: str = "macro_f1"
    class_weights: str | None = None

    def __post_init__(self) -> None:
        problems = []
        if self.max_length < 4:
            problems.append(f"max_length must be >= 4, got {self.max_length}")
        if self.class_weights not in (None, "balanced"):
            problems.append(f"class_weights must be 'balanced' or unset, got {self.class_weights!r}")
        if self.primary_metric not in PRIMARY_METRICS:
            problems.append(f"primary_metric must be one of {', '.join(PRIMARY_METRICS)}, got {self.primary_metric!r}")
        self.check(problems)

    def load_data(self, path: Path) -> Any:
        dataset = load_classification_dataset(path)
        if len(dataset.labels) < 2:
            raise IndusError(f"{path}: classification needs at least 2 labels, found {dataset.labels}")
        return dataset

    def encode(self, tokenizer: Any, items: list[Any], data: Any) -> Part:
        label2id = {label: i for i, label in enumerate(data.labels)}
        features, truncated = encode_texts(tokenizer, items, label2id, self.max_length)
        return Part(items, features, {"truncated": truncated})

    def collate(self, ctx: Context, labels: bool):
        return _collate(ctx.pad_id, ctx.device, labels=labels)

    def training_features(self, ctx: Context, seed: int) -> tuple[list[dict[str, Any]], list[int]]:
        features = ctx.train.features
        return features, [len(f["input_ids"]) for f in features]

    def predict(self, net: Any, ctx: Context, part: Part) -> list[str]:
        pred = predict_labels(
            net,
            part.features,
            batch_size=self.eval_batch_size,
            pad_id=ctx.pad_id,
            device=ctx.device,
            bf16=self.bf16,
            progress=self.progress,
        )
        return [ctx.data.labels[p] for p in pred]

    def score(self, ctx: Context, part: Part, preds: list[str]) -> dict[str, Any]:
        return classification_metrics([e.label for e in part.items], preds)

    def collapsed(self, ctx: Context, part: Part, preds: list[str]) -> bool:
        return single_label(preds, [e.label for e in part.items])

    def loss_weights(self, ctx: Context) -> list[float] | None:
        """Per-class loss weights: ``None``, or with ``class_weights: balanced`` n / (classes x count) over the
        training subset (scikit-learn's ``compute_class_weight``); a class absent from training gets weight 1."""
        if self.class_weights is None:
            return None
        from sklearn.utils.class_weight import compute_class_weight

        y = np.array([f["label"] for f in ctx.train.features])
        present = np.unique(y)
        weights = np.ones(len(ctx.data.labels))
        weights[present] = compute_class_weight("balanced", classes=present, y=y)
        return [float(w) for w in weights]

    def trainable(self, net: Any, ctx: Context) -> Any:
        weights = self.loss_weights(ctx)
        return net if weights is None else weighted_loss(net, weights)

    def aggregate(self, runs: list[dict[str, Any]], ctx: Context) -> dict[str, Any]:
        result = super().aggregate(runs, ctx)
        result["per_label"] = {
            label: mean_std([r["per_label"][label] for r in runs])[0] for label in runs[0]["per_label"]
        }
        return result

    def describe(self, ctx: Context, runs: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "labels": ctx.data.labels,
            "majority_baseline": majority_baseline(
                [e.label for e in ctx.train.items], [e.label for e in ctx.eval.items]
            ),
            "class_weights": self.loss_weights(ctx),
            "train_examples": len(ctx.train.items),
            "train_examples_total": ctx.train_total,
            "eval_examples": len(ctx.eval.items),
            "eval_examples_total": ctx.eval_total,
            "train_truncated": ctx.train.stats["truncated"],
            "eval_truncated": ctx.eval.stats["truncated"],
        }
