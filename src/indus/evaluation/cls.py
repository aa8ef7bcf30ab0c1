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

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from indus.data.classification import Example, load_classification_dataset
from indus.errors import IndusError
from indus.evaluation.finetune import (
    FinetuneEvaluator,
    autocast,
    finetune,
    fixed_subset,
    mean_std,
    pad_batch,
    seed_everything,
)

PRIMARY_METRICS = ("macro_f1", "micro_f1", "accuracy")


def encode_texts(tokenizer: Any, examples: Sequence[Example], label2id: dict[str, int],
                 max_length: int) -> tuple[list[dict[str, Any]], int]:
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


def predict_labels(model: Any, features: Sequence[dict[str, Any]], *, batch_size: int = 64, pad_id: int = 0,
                   device: Any = "cpu", bf16: bool = False, progress: bool = False) -> list[int]:
    """The argmax class of every feature (scored in order of length, under ``torch.inference_mode``)."""
    import torch
    from tqdm.auto import tqdm

    order = sorted(range(len(features)), key=lambda i: len(features[i]["input_ids"]))
    preds = [0] * len(features)
    collate = _collate(pad_id, device, labels=False)
    model.eval()
    with torch.inference_mode(), autocast(device, bf16):
        for start in tqdm(range(0, len(order), batch_size), desc="cls predict", disable=not progress, leave=False):
            idx = order[start:start + batch_size]
            best = model(**collate([features[i] for i in idx])).logits.argmax(-1).cpu().tolist()  # (B,)
            for i, p in zip(idx, best, strict=True):
                preds[i] = p
    return preds


def classification_metrics(y_true: Sequence[str], y_pred: Sequence[str]) -> dict[str, Any]:
    """``accuracy``, ``micro_f1``, ``macro_f1`` (over the classes in ``y_true``) and ``per_label`` F1."""
    from sklearn.metrics import accuracy_score, f1_score

    present = sorted(set(y_true))
    per_label = f1_score(y_true, y_pred, labels=present, average=None, zero_division=0)
    return {"accuracy": float(accuracy_score(y_true, y_pred)),
            "micro_f1": float(f1_score(y_true, y_pred, average="micro", zero_division=0)),
            "macro_f1": float(f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0)),
            "per_label": {label: float(f) for label, f in zip(present, per_label, strict=True)}}


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
    limits = ("max_train_examples", "max_eval_examples")

    max_length: int = 128
    max_train_examples: int | None = None
    max_eval_examples: int | None = None
    primary_metric: str = "macro_f1"

    def __post_init__(self) -> None:
        problems = []
        if self.max_length < 4:
            problems.append(f"max_length must be >= 4, got {self.max_length}")
        if self.primary_metric not in PRIMARY_METRICS:
            problems.append(f"primary_metric must be one of {', '.join(PRIMARY_METRICS)}, got {self.primary_metric!r}")
        self.check(problems)

    def evaluate(self, model: Any, data: str | Path) -> dict[str, Any]:
        """Fine-tune ``model`` on the training split of ``data`` and score the evaluation split.

        Parameters
        ----------
        model
            A model spec (``minilm``, ``random:<preset>``, ``random:<model>``, a local folder) or a
            :class:`~indus.models.ModelRef`.
        data
            A classification folder (train/dev/test JSON lines) or a ``classification`` dataset name.
        """
        from transformers import AutoModelForSequenceClassification

        from indus.data.registry import resolve_dataset
        from indus.models import load_model, load_tokenizer, resolve_model

        started = time.perf_counter()
        ref = resolve_model(model)
        path = resolve_dataset(data, kind="classification")
        dataset = load_classification_dataset(path)
        train_all, eval_all = dataset.split(self.train_split), dataset.split(self.split)
        train = fixed_subset(train_all, self.max_train_examples)
        evals = fixed_subset(eval_all, self.max_eval_examples)
        labels = dataset.labels
        if len(labels) < 2:
            raise IndusError(f"{path}: classification needs at least 2 labels, found {labels}")
        label2id = {label: i for i, label in enumerate(labels)}
        id2label = dict(enumerate(labels))
        device = self.torch_device()

        tokenizer = load_tokenizer(ref)
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        train_features, train_truncated = encode_texts(tokenizer, train, label2id, self.max_length)
        eval_features, eval_truncated = encode_texts(tokenizer, evals, label2id, self.max_length)
        gold = [e.label for e in evals]

        # a checkpoint that already has a head for other labels gets a fresh one
        reinit_head = {} if ref.random_init else {"ignore_mismatched_sizes": True}
        runs: list[dict[str, Any]] = []
        for seed in range(self.seed, self.seed + self.seeds):
            seed_everything(seed)
            net = load_model(ref, AutoModelForSequenceClassification, seed=seed, num_labels=len(labels),
                             id2label=id2label, label2id=label2id, **reinit_head).to(device)
            stats = finetune(net, train_features, _collate(pad_id, device, labels=True), self.finetune_settings(),
                             seed=seed,
                             desc=f"cls fine-tune (seed {seed})",
                             lengths=[len(f["input_ids"]) for f in train_features])
            t0 = time.perf_counter()
            pred = predict_labels(net, eval_features, batch_size=self.eval_batch_size, pad_id=pad_id,
                                  device=device, bf16=self.bf16, progress=self.progress)
            scores = classification_metrics(gold, [id2label[p] for p in pred])
            runs.append({"seed": seed, **scores, "train_steps": stats["steps"], "final_loss": stats["final_loss"],
                         "train_s": stats["train_s"], "eval_s": time.perf_counter() - t0})
            del net

        result: dict[str, Any] = {"task": self.task, "primary_metric": self.primary_metric, "model": ref.name,
                                  "data": str(path), "split": self.split, "train_split": self.train_split}
        for key in ("macro_f1", "micro_f1", "accuracy"):
            result[key], result[f"{key}_std"] = mean_std([r[key] for r in runs])
        result["per_label"] = {label: mean_std([r["per_label"][label] for r in runs])[0]
                               for label in runs[0]["per_label"]}
        result.update({
            "labels": labels,
            "train_examples": len(train),
            "train_examples_total": len(train_all),
            "eval_examples": len(evals),
            "eval_examples_total": len(eval_all),
            "train_truncated": train_truncated,
            "eval_truncated": eval_truncated,
            "per_seed": runs,
            "settings": self.settings(),
            "seeds": self.seeds,
            "epochs": self.epochs,
            "max_length": self.max_length,
            "device": str(device),
            "wall_s": time.perf_counter() - started,
        })
        return result
