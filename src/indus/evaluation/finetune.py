"""The fine-tuning loop shared by the NER, QA and classification evaluators.

A plain PyTorch loop that reads top to bottom: AdamW with weight decay on all but biases and LayerNorm weights,
linear warm-up then linear decay, gradient clipping, one progress bar. Each evaluator builds its features and its
collate function; this module only trains.

Example
-------
>>> import torch
>>> from torch import nn
>>> class Toy(nn.Module):
...     def __init__(self):
...         super().__init__()
...         self.lin = nn.Linear(2, 2)
...     def forward(self, x, labels):
...         return {"loss": nn.functional.cross_entropy(self.lin(x), labels)}
>>> feats = [{"x": torch.tensor([1.0, 0.0]), "labels": torch.tensor(0)}] * 8
>>> collate = lambda b: {k: torch.stack([f[k] for f in b]) for k in b[0]}
>>> settings = FinetuneSettings(epochs=2, batch_size=4, lr=1e-2, progress=False)
>>> stats = finetune(Toy(), feats, collate, settings, seed=0)
>>> stats["steps"]
4
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from indus.data.registry import resolve_dataset
from indus.errors import IndusError
from indus.evaluation.result import EvalResult
from indus.models import load_model, load_tokenizer, resolve_model

#: ``lr`` value that chooses the learning rate on dev
LR_AUTO = "auto"
#: what a collapsed run does: fine-tune once more at a lower rate (and drop it from the mean if it collapses again),
#: drop it from the mean, or keep it in the mean (flagged only)
ON_COLLAPSE = ("retry", "exclude", "keep")
#: a collapsed run is retried at this share of its learning rate
COLLAPSE_LR_FACTOR = 1 / 3
#: ``lr: auto`` candidates for the small encoders trained here (hidden size < 384; benchmarks/encoder_quality.py:
#: every one chose 1e-3 on dev) and for BERT-size checkpoints (MiniLM fine-tunes best near 1e-4 to 2e-4); a task may
#: bring its own BERT-size grid (:attr:`FinetuneEvaluator.base_lr_grid`)
SMALL_LR_GRID = (3e-4, 1e-3, 3e-3)
BASE_LR_GRID = (5e-5, 1e-4, 2e-4)
#: the keys of a per-seed run that are not metrics
RUN_FIELDS = frozenset(
    {
        "seed",
        "train_steps",
        "final_loss",
        "train_s",
        "eval_s",
        "lr",
        "collapsed",
        "retried_lr",
        "best_epoch",
        "best_dev",
        "dev_curve",
    }
)


@dataclass
class Part:
    """One encoded split of a fine-tuning task: its items (sentences, examples, questions), the task's features
    for them (windows, token ids) and the task's counts (``stats``)."""

    items: list[Any]
    features: Any
    stats: dict[str, Any] = field(default_factory=dict)


@dataclass
class Context:
    """What one :meth:`FinetuneEvaluator.evaluate` call resolved once and shares with every seed's run."""

    ref: Any
    path: Path
    data: Any
    tokenizer: Any
    pad_id: int
    device: Any
    train_total: int
    eval_total: int
    train: Part
    eval: Part
    dev: Part | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(kw_only=True)
class FinetuneEvaluator:
    """The settings every fine-tuning evaluator shares (NER, QA, classification), their checks, and the one
    evaluation sequence they all run (:meth:`evaluate`).

    :meth:`evaluate` resolves the model and the data, draws the fixed train and evaluation subsets, loads the
    tokenizer, encodes both splits, then for each seed re-initialises and fine-tunes the model, predicts and
    scores, and finally averages the seeds (mean and sample std). A task supplies only what differs, as hooks:
    ``data_kind`` and ``head`` (the transformers auto class), :meth:`load_data`, :meth:`split_items`,
    :meth:`encode`, :meth:`model_kwargs`, :meth:`collate`, :meth:`training_features`, :meth:`predict`,
    :meth:`score`, :meth:`aggregate` and :meth:`describe`.

    A subclass adds its own fields (lengths, subset sizes, ...), may redeclare a field to change its default,
    and calls :meth:`check` from ``__post_init__`` with its own problems. The shared fields are documented in the
    subclasses' docstrings, next to their own.
    """

    task: ClassVar[str] = "finetune"
    #: dataset kind in the data-root layout (:func:`indus.data.registry.resolve_dataset`)
    data_kind: ClassVar[str] = ""
    #: name of the transformers auto class that adds the task head
    head: ClassVar[str] = ""
    #: the subclass's optional settings that must be >= 1 when set: the train and the evaluation subset sizes
    limits: ClassVar[tuple[str, ...]] = ()
    #: ``lr: auto`` candidates for BERT-size checkpoints (hidden size >= 384)
    base_lr_grid: ClassVar[tuple[float, ...]] = BASE_LR_GRID

    seeds: int = 3
    seed: int = 0
    epochs: float = 3.0
    batch_size: int = 16
    lr: float | str = "auto"
    lr_grid: list[float] | None = None
    early_stopping: bool | None = None
    patience: int = 2
    dev_split: str = "dev"
    dev_fraction: float = 0.1
    max_dev_examples: int | None = 1000
    on_collapse: str = "retry"
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    max_steps: int | None = None
    split: str = "test"
    train_split: str = "train"
    eval_batch_size: int = 64
    bf16: bool = False
    device: str | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        self.check([])

    @property
    def auto_lr(self) -> bool:
        """Whether the learning rate is chosen on dev (``lr: auto``)."""
        return self.lr == LR_AUTO

    @property
    def stops_early(self) -> bool:
        """Whether fine-tuning stops early on dev (``early_stopping``, by default with ``lr: auto``)."""
        return self.auto_lr if self.early_stopping is None else self.early_stopping

    @property
    def wants_dev(self) -> bool:
        """Whether a dev split is prepared: to choose the learning rate or stop early (a task may add its own
        dev-chosen settings)."""
        return self.auto_lr or self.stops_early

    def check(self, problems: list[str]) -> None:
        """Raise one :class:`~indus.errors.IndusError` naming every problem: ``problems`` (the subclass's) and
        those of the shared settings."""
        shared = []
        if isinstance(self.lr, str) and self.lr != LR_AUTO:
            try:  # YAML and --set give numbers as text
                self.lr = float(self.lr)
            except ValueError:
                shared.append(f"lr must be a number or 'auto', got {self.lr!r}")
        if self.lr_grid is not None and (not self.lr_grid or min(self.lr_grid) <= 0):
            shared.append(f"lr_grid must hold positive learning rates, got {self.lr_grid}")
        if self.patience < 1 or not 0 < self.dev_fraction < 1:
            shared.append("patience must be >= 1 and dev_fraction in (0, 1)")
        if self.on_collapse not in ON_COLLAPSE:
            shared.append(f"on_collapse must be one of {', '.join(ON_COLLAPSE)}, got {self.on_collapse!r}")
        if self.seeds < 1:
            shared.append(f"seeds must be >= 1, got {self.seeds}")
        if self.epochs <= 0:
            shared.append(f"epochs must be > 0, got {self.epochs}")
        if self.batch_size < 1 or self.eval_batch_size < 1:
            shared.append("batch sizes must be >= 1")
        if not isinstance(self.lr, str) and self.lr <= 0:
            shared.append(f"lr must be > 0, got {self.lr}")
        for name in (*self.limits, "max_steps", "max_dev_examples"):
            value = getattr(self, name)
            if value is not None and value < 1:
                shared.append(f"{name} must be >= 1, got {value}")
        if shared or problems:
            raise IndusError(f"{self.task}: " + "; ".join(shared + problems))

    def settings(self) -> dict[str, Any]:
        """The settings as a JSON-able dict."""
        return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()}

    def finetune_settings(self, lr: float | None = None) -> FinetuneSettings:
        """The optimisation part, for :func:`finetune` (at ``lr``, default the fixed ``lr`` setting)."""
        return FinetuneSettings(
            epochs=self.epochs,
            batch_size=self.batch_size,
            lr=self.lr if lr is None else lr,
            weight_decay=self.weight_decay,
            warmup_ratio=self.warmup_ratio,
            max_steps=self.max_steps,
            bf16=self.bf16,
            progress=self.progress,
        )

    def torch_device(self):
        """``device``, or CUDA when available, else the CPU."""
        import torch

        return torch.device(self.device or ("cuda" if torch.cuda.is_available() else "cpu"))

    # ------------------------------------------------------------------------------------ the shared sequence

    def evaluate(self, model: Any, data: str | Path) -> EvalResult:
        """Fine-tune ``model`` on the training split of ``data`` and score the evaluation split.

        Parameters
        ----------
        model
            A model spec (``minilm``, ``random:<preset>``, ``random:<model>``, a local folder) or a
            :class:`~indus.models.ModelRef`.
        data
            A dataset folder or file of the task's kind, or a dataset name under the data root.
        """
        started = time.perf_counter()
        ctx = self.prepare(model, data)
        choice = self.choose_lr(ctx)
        runs = [self.run_seed(ctx, seed, choice["lr"]) for seed in range(self.seed, self.seed + self.seeds)]
        scored = [r for r in runs if not r["collapsed"]] if self.on_collapse != "keep" else runs
        result: dict[str, Any] = {
            "task": self.task,
            "primary_metric": self.primary_metric,
            "model": ctx.ref.name,
            "data": str(ctx.path),
            "split": self.split,
            "train_split": self.train_split,
        }
        if scored:
            result.update(self.aggregate(scored, ctx))
        else:  # every seed collapsed: the same keys, no scores (counts such as QA's *_total stay)
            result.update(
                {
                    k: v if isinstance(v, int) and not isinstance(v, bool) else ({} if isinstance(v, dict) else None)
                    for k, v in self.aggregate(runs, ctx).items()
                }
            )
        result.update(self.describe(ctx, runs))
        result.update(
            {
                "per_seed": runs,
                "settings": self.settings(),
                "seeds": self.seeds,
                "epochs": self.epochs,
                "max_length": getattr(self, "max_length", None),
            }
        )
        result.update(self.describe_tail(ctx))
        result.update(
            {
                "lr_choice": choice,
                "collapsed_seeds": sum(r["collapsed"] for r in runs),
                "collapsed": not scored,
                "device": str(ctx.device),
                "wall_s": time.perf_counter() - started,
            }
        )
        return EvalResult.from_json(result)

    def prepare(self, model: Any, data: str | Path) -> Context:
        """Resolve the model and the data, draw the fixed subsets (seed 0, shared by every run and model), load
        the tokenizer and encode the training and evaluation splits (and the dev split, for choosing the learning
        rate and stopping: the ``dev_split`` when the data has one, else a held-out ``dev_fraction`` of the
        training subset, which is then not trained on)."""
        ref = resolve_model(model)
        path = resolve_dataset(data, kind=self.data_kind)
        handle = self.load_data(path)
        train_all, eval_all = self.split_items(handle, self.train_split), self.split_items(handle, self.split)
        train_limit, eval_limit = self.limits
        train = fixed_subset(train_all, getattr(self, train_limit))
        evals = fixed_subset(eval_all, getattr(self, eval_limit))
        dev, dev_source = None, None
        if self.wants_dev:
            dev, dev_source, train = self._dev_items(handle, train)
        self.check_items(path, train, evals)
        device = self.torch_device()
        tokenizer = self.load_tokenizer(ref)
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        ctx = Context(
            ref,
            path,
            handle,
            tokenizer,
            pad_id,
            device,
            len(train_all),
            len(eval_all),
            self.encode(tokenizer, train, handle),
            self.encode(tokenizer, evals, handle),
        )
        if dev:
            ctx.dev = self.encode(tokenizer, dev, handle)
            ctx.extra["dev_source"] = dev_source
        return ctx

    def _dev_items(self, handle: Any, train: list[Any]) -> tuple[list[Any], str, list[Any]]:
        """The dev items, where they come from, and the training items left (no dev when there is no dev split
        and fewer than 2 training items)."""
        if self.dev_split not in {self.split, self.train_split}:
            try:
                dev = self.split_items(handle, self.dev_split)
            except IndusError:  # the data has no dev split
                dev = []
            if dev:
                return fixed_subset(dev, self.max_dev_examples), self.dev_split, train
        if len(train) < 2:
            return [], None, train
        order = list(range(len(train)))
        random.Random(0).shuffle(order)
        n_dev = min(max(1, round(self.dev_fraction * len(train))), len(train) - 1)
        held = set(order[:n_dev])
        dev = [x for i, x in enumerate(train) if i in held]
        return (
            fixed_subset(dev, self.max_dev_examples),
            f"{self.dev_fraction:g} of {self.train_split}",
            [x for i, x in enumerate(train) if i not in held],
        )

    def lr_candidates(self, ctx: Context) -> list[float]:
        """The learning rates ``lr: auto`` tries: ``lr_grid``, else the model family's (by width: the small
        encoders trained here fine-tune best near 1e-3, BERT-size checkpoints such as MiniLM near 1e-4, the task's
        :attr:`base_lr_grid`)."""
        if self.lr_grid:
            return [float(x) for x in self.lr_grid]

        hidden = getattr(load_model(ctx.ref, seed=0).config, "hidden_size", 768)
        return list(SMALL_LR_GRID if hidden < 384 else self.base_lr_grid)

    def choose_lr(self, ctx: Context) -> dict[str, Any]:
        """The learning rate the seeds train at, and how it was chosen: fixed, or the best dev score over the
        candidates (each fine-tuned once with the first seed, with early stopping when on)."""
        choice: dict[str, Any] = {
            "mode": "auto" if self.auto_lr else "fixed",
            "early_stopping": self.stops_early,
            "patience": self.patience,
            "dev": ctx.extra.get("dev_source"),
            "dev_examples": len(ctx.dev.items) if ctx.dev is not None else 0,
        }
        if not self.auto_lr:
            return {"lr": float(self.lr), **choice}
        candidates = self.lr_candidates(ctx)
        if ctx.dev is None:
            return {
                "lr": candidates[len(candidates) // 2],
                "note": "no dev examples: the grid's middle value",
                **choice,
            }
        grid: dict[str, Any] = {}
        best_lr, best_score = candidates[0], -math.inf
        for lr in candidates:
            net, stats = self.train_once(ctx, self.seed, lr)
            score = stats.get("best_dev")
            if score is None:
                score = self.dev_metric(net, ctx)
            grid[f"{lr:g}"] = {"dev": score, "best_epoch": stats.get("best_epoch"), "steps": stats["steps"]}
            if score > best_score:
                best_lr, best_score = lr, score
                # the first seed's run at the chosen rate is this very run (same seed, same data order): keep it
                ctx.extra["trained"] = (self.seed, lr, net, stats)
            del net
        return {"lr": best_lr, "dev_score": best_score, "grid": grid, **choice}

    def dev_metric(self, net: Any, ctx: Context) -> float:
        """The primary metric of ``net`` on the dev split (a collapsed model scores what it scores)."""
        value = self.score(ctx, ctx.dev, self.predict(net, ctx, ctx.dev)).get(self.primary_metric)
        return float(value) if value is not None else -math.inf

    def train_once(self, ctx: Context, seed: int, lr: float) -> tuple[Any, dict[str, Any]]:
        """A freshly initialised model fine-tuned at ``lr`` with ``seed`` (early-stopped on dev when on)."""
        import transformers

        features, lengths = self.training_features(ctx, seed)
        seed_everything(seed)
        net = load_model(ctx.ref, getattr(transformers, self.head), seed=seed, **self.model_kwargs(ctx)).to(ctx.device)
        # scored through net itself: what finetune() trains may be a wrapper computing the task's loss
        dev_score = (lambda _: self.dev_metric(net, ctx)) if self.stops_early and ctx.dev is not None else None
        stats = finetune(
            self.trainable(net, ctx),
            features,
            self.collate(ctx, labels=True),
            self.finetune_settings(lr),
            seed=seed,
            desc=f"{self.task} fine-tune (seed {seed}, lr {lr:g})",
            lengths=lengths,
            dev_score=dev_score,
            patience=self.patience,
        )
        return net, stats

    def run_seed(self, ctx: Context, seed: int, lr: float | None = None) -> dict[str, Any]:
        """One run: re-initialise the model with ``seed``, fine-tune it, predict and score the evaluation split.

        A run whose predictions collapse to a single label (:meth:`collapsed`) is marked ``collapsed`` and, with
        ``on_collapse: retry``, fine-tuned once more at a third of the learning rate (``retried_lr``); it stays
        marked if that collapses too."""
        lr = float(self.lr) if lr is None else lr
        run: dict[str, Any] = {}
        for attempt in (0, 1):
            cached = ctx.extra.pop("trained", None)
            if cached is not None and cached[:2] == (seed, lr):
                net, stats = cached[2:]
            else:
                net, stats = self.train_once(ctx, seed, lr)
            t0 = time.perf_counter()
            preds = self.predict(net, ctx, ctx.eval)
            scores = self.score(ctx, ctx.eval, preds)
            collapsed = self.collapsed(ctx, ctx.eval, preds)
            run = {
                "seed": seed,
                **scores,
                "train_steps": stats["steps"],
                "final_loss": stats["final_loss"],
                "train_s": stats["train_s"],
                "eval_s": time.perf_counter() - t0,
                "lr": lr,
                "collapsed": collapsed,
            }
            for key in ("best_epoch", "best_dev", "dev_curve"):
                if key in stats:
                    run[key] = stats[key]
            if attempt:
                run["retried_lr"] = lr
            self.write_predictions(ctx, preds, seed)
            del net
            if not collapsed or self.on_collapse != "retry" or attempt:
                break
            lr = lr * COLLAPSE_LR_FACTOR
        return run

    # ------------------------------------------------------------------------------------------- the hooks

    def load_data(self, path: Path) -> Any:
        """The dataset at ``path`` (read once per evaluation)."""
        raise NotImplementedError

    def split_items(self, data: Any, split: str) -> list[Any]:
        """The items (sentences, examples, questions) of one split of ``data``."""
        return data.split(split)

    def check_items(self, path: Path, train: list[Any], evals: list[Any]) -> None:
        """Refuse data the task cannot use (default: accept everything)."""

    def load_tokenizer(self, ref: Any) -> Any:
        """The model's tokenizer, made ready for the task."""
        return load_tokenizer(ref)

    def encode(self, tokenizer: Any, items: list[Any], data: Any) -> Part:
        """Tokenise one split (``items`` of the dataset ``data``) into the task's features."""
        raise NotImplementedError

    def model_kwargs(self, ctx: Context) -> dict[str, Any]:
        """Keyword arguments for :func:`indus.models.load_model`: the label maps of ``ctx.data.labels`` when the
        data has labels (token and sequence classification); none otherwise."""
        labels = getattr(ctx.data, "labels", None)
        if labels is None:
            return {}
        # a checkpoint that already has a head for other labels gets a fresh one
        reinit_head = {} if ctx.ref.random_init else {"ignore_mismatched_sizes": True}
        return {
            "num_labels": len(labels),
            "id2label": dict(enumerate(labels)),
            "label2id": {label: i for i, label in enumerate(labels)},
            **reinit_head,
        }

    def trainable(self, net: Any, ctx: Context) -> Any:
        """What :func:`finetune` trains: ``net`` itself, or a wrapper computing the task's own loss."""
        return net

    def collapsed(self, ctx: Context, part: Part, preds: Any) -> bool:
        """Whether ``preds`` collapsed to a single label (all ``O``, one class, always the same answer) while the
        gold labels of ``part`` have several."""
        return False

    def collate(self, ctx: Context, labels: bool) -> Callable[[list[Any]], dict[str, Any]]:
        """The function that batches training features."""
        raise NotImplementedError

    def training_features(self, ctx: Context, seed: int) -> tuple[Sequence[Any], Sequence[int] | None]:
        """What one run trains on and, for length-grouped batches, each feature's length."""
        raise NotImplementedError

    def predict(self, net: Any, ctx: Context, part: Part) -> Any:
        """The fine-tuned model's predictions for ``part``."""
        raise NotImplementedError

    def score(self, ctx: Context, part: Part, preds: Any) -> dict[str, Any]:
        """The metrics of one run's predictions."""
        raise NotImplementedError

    def aggregate(self, runs: list[dict[str, Any]], ctx: Context) -> dict[str, Any]:
        """The result's metrics: mean and sample std over the runs of each of ``metrics``."""
        out: dict[str, Any] = {}
        for key in self.metrics:
            out[key], out[f"{key}_std"] = mean_std([r[key] for r in runs])
        return out

    def describe(self, ctx: Context, runs: list[dict[str, Any]]) -> dict[str, Any]:
        """The result's task facts and counts, before ``per_seed``."""
        return {}

    def describe_tail(self, ctx: Context) -> dict[str, Any]:
        """The result's task facts shown after the shared settings (QA's window settings)."""
        return {}

    def write_predictions(self, ctx: Context, preds: Any, seed: int) -> None:
        """Write one run's predictions where the settings ask for them (default: nowhere)."""

    def seed_path(self, seed: int, default_suffix: str) -> Path:
        """``predictions_path``, with one file per seed (``NAME.seedS.EXT``) when there are several seeds."""
        path = Path(self.predictions_path)
        if self.seeds > 1:
            path = path.with_name(f"{path.stem}.seed{seed}{path.suffix or default_suffix}")
        return path


@dataclass
class FinetuneSettings:
    """Optimisation settings for downstream fine-tuning.

    Parameters
    ----------
    epochs
        Passes over the training features (fractional values train on that share of the last pass).
    batch_size
        Features per optimiser step.
    lr
        Peak learning rate.
    weight_decay
        AdamW weight decay (not applied to biases and LayerNorm weights).
    warmup_ratio
        Share of the steps spent warming up linearly from 0 to ``lr``.
    max_grad_norm
        Gradient clipping threshold.
    max_steps
        Stop after this many steps (``None``: no limit).
    bf16
        Run the forward pass under bfloat16 autocast (weights, gradients and optimiser state stay fp32); about
        twice as fast on CPUs with AVX-512 BF16 or AMX.
    progress
        Show a progress bar.
    """

    epochs: float = 3.0
    batch_size: int = 16
    lr: float = 5e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    max_grad_norm: float = 1.0
    max_steps: int | None = None
    bf16: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        if self.epochs <= 0:
            raise ValueError(f"epochs must be > 0, got {self.epochs}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")


def fixed_subset(items: Sequence[Any], limit: int | None, seed: int = 0) -> list[Any]:
    """A random subset of ``limit`` items kept in their original order (all of them when ``limit`` is None).

    Evaluators draw their budgeted train and evaluation subsets with a fixed ``seed`` so that every run and every
    model sees the same examples; the run's own seed only changes initialisation and data order.
    """
    if limit is None or limit >= len(items):
        return list(items)
    keep = set(random.Random(seed).sample(range(len(items)), limit))
    return [x for i, x in enumerate(items) if i in keep]


def single_label(predicted: Sequence[Any], gold: Sequence[Any]) -> bool:
    """Whether the predictions are one label repeated while the gold labels are several: a collapsed fine-tune
    (all ``O``, one class, always the same answer), whose score says nothing about the encoder.

    >>> single_label(["O", "O", "O"], ["B-X", "O", "O"]), single_label(["O", "B-X"], ["B-X", "O"])
    (True, False)
    """
    return len(set(predicted)) <= 1 and len(set(gold)) > 1


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation over runs (0 for a single run)."""
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def pad_batch(sequences: Sequence[Sequence[int]], pad_value: int) -> tuple[Any, Any]:
    """Right-pad id lists to the longest one: ``(ids, attention_mask)``, both ``(B, L)`` long tensors."""
    import torch

    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_value, dtype=torch.long)  # (B, L)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)  # (B, L)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
        mask[row, : len(seq)] = 1
    return ids, mask


def autocast(device: Any, enabled: bool) -> Any:
    """A bfloat16 autocast context for ``device`` (a no-op when not ``enabled``)."""
    import torch

    return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16, enabled=enabled)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch."""
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def param_groups(model: Any, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: decay for weight matrices, none for biases and normalisation weights."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "LayerNorm" in name or "layer_norm" in name else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def finetune(
    model: Any,
    features: Sequence[Any],
    collate: Callable[[list[Any]], dict[str, Any]],
    settings: FinetuneSettings,
    *,
    seed: int = 0,
    desc: str = "fine-tune",
    lengths: Sequence[int] | None = None,
    dev_score: Callable[[Any], float] | None = None,
    patience: int = 2,
) -> dict[str, Any]:
    """Train ``model`` in place on ``features``; the model's forward must return a ``loss``.

    Parameters
    ----------
    lengths
        Token count of each feature. When given, batches group features of similar length (shuffled mega-batches
        of 50 batches sorted by length, transformers' ``LengthGroupedSampler``), so dynamic padding wastes little.
    dev_score
        Early stopping: called with the model (in eval mode) after every pass over the features and after the
        last step; higher is better. The weights of the best call are kept in memory (a CPU copy) and restored
        at the end, and training stops after ``patience`` calls without improvement.
    patience
        Calls of ``dev_score`` without improvement before stopping.

    Returns
    -------
    dict
        ``steps``, ``examples`` (features seen), ``final_loss`` (mean of the last 20 steps) and ``train_s``; with
        ``dev_score`` also ``dev_curve`` (``[step, score]`` per call), ``best_step``, ``best_epoch`` (passes
        over the features at the best call) and ``best_dev``.
    """
    import torch
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm
    from transformers import get_linear_schedule_with_warmup

    if len(features) == 0:
        raise ValueError("no training features to fine-tune on")
    seed_everything(seed)
    generator = torch.Generator().manual_seed(seed)
    if lengths is not None:
        from transformers.trainer_pt_utils import LengthGroupedSampler

        if len(lengths) != len(features):
            raise ValueError(f"{len(lengths)} lengths for {len(features)} features")
        sampler = LengthGroupedSampler(settings.batch_size, lengths=list(lengths), generator=generator)
        loader = DataLoader(features, batch_size=settings.batch_size, sampler=sampler, collate_fn=collate)
    else:
        loader = DataLoader(
            features, batch_size=settings.batch_size, shuffle=True, collate_fn=collate, generator=generator
        )
    steps = math.ceil(len(loader) * settings.epochs)
    if settings.max_steps is not None:
        steps = min(steps, settings.max_steps)
    optimizer = torch.optim.AdamW(param_groups(model, settings.weight_decay), lr=settings.lr)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(settings.warmup_ratio * steps), steps)

    device = next(model.parameters()).device
    model.train()
    losses: list[float] = []
    examples = 0
    start = time.perf_counter()
    bar = tqdm(total=steps, desc=desc, disable=not settings.progress, leave=False)
    curve: list[list[float]] = []
    best: dict[str, Any] = {"score": -math.inf, "state": None, "step": 0}
    stop = False

    def check_dev() -> bool:
        """Score the model on dev, keep its weights when best; True when patience has run out."""
        score = float(dev_score(model))
        model.train()
        curve.append([len(losses), score])
        if score > best["score"]:
            best.update(
                score=score,
                step=len(losses),
                state={k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()},
            )
        return len(curve) - 1 - next(i for i, (s, _) in enumerate(curve) if s == best["step"]) >= patience

    while len(losses) < steps and not stop:
        for batch in loader:
            with autocast(device, settings.bf16):
                loss = model(**batch)["loss"]
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), settings.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(loss.item())
            examples += len(next(iter(batch.values())))
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
            if len(losses) >= steps:
                break
        if dev_score is not None and (len(losses) >= steps or len(losses) % len(loader) == 0):
            stop = check_dev()
    bar.close()
    model.eval()
    tail = losses[-20:]
    out = {"steps": len(losses), "examples": examples, "final_loss": float(np.mean(tail)) if tail else float("nan")}
    if dev_score is not None:
        if best["state"] is not None:
            model.load_state_dict(best["state"])
        out.update(
            dev_curve=curve, best_step=best["step"], best_epoch=best["step"] / len(loader), best_dev=best["score"]
        )
    out["train_s"] = time.perf_counter() - start
    return out
