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

from indus.errors import IndusError
from indus.evaluation.result import EvalResult


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

    seeds: int = 3
    seed: int = 0
    epochs: float = 3.0
    batch_size: int = 16
    lr: float = 5e-5
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

    def check(self, problems: list[str]) -> None:
        """Raise one :class:`~indus.errors.IndusError` naming every problem: ``problems`` (the subclass's) and
        those of the shared settings."""
        shared = []
        if self.seeds < 1:
            shared.append(f"seeds must be >= 1, got {self.seeds}")
        if self.epochs <= 0:
            shared.append(f"epochs must be > 0, got {self.epochs}")
        if self.batch_size < 1 or self.eval_batch_size < 1:
            shared.append("batch sizes must be >= 1")
        if self.lr <= 0:
            shared.append(f"lr must be > 0, got {self.lr}")
        for name in (*self.limits, "max_steps"):
            value = getattr(self, name)
            if value is not None and value < 1:
                shared.append(f"{name} must be >= 1, got {value}")
        if shared or problems:
            raise IndusError(f"{self.task}: " + "; ".join(shared + problems))

    def settings(self) -> dict[str, Any]:
        """The settings as a JSON-able dict."""
        return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()}

    def finetune_settings(self) -> FinetuneSettings:
        """The optimisation part, for :func:`finetune`."""
        return FinetuneSettings(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr,
                                weight_decay=self.weight_decay, warmup_ratio=self.warmup_ratio,
                                max_steps=self.max_steps, bf16=self.bf16, progress=self.progress)

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
        runs = [self.run_seed(ctx, seed) for seed in range(self.seed, self.seed + self.seeds)]
        result: dict[str, Any] = {"task": self.task, "primary_metric": self.primary_metric, "model": ctx.ref.name,
                                  "data": str(ctx.path), "split": self.split, "train_split": self.train_split}
        result.update(self.aggregate(runs, ctx))
        result.update(self.describe(ctx, runs))
        result.update({"per_seed": runs, "settings": self.settings(), "seeds": self.seeds, "epochs": self.epochs,
                       "max_length": getattr(self, "max_length", None)})
        result.update(self.describe_tail(ctx))
        result.update({"device": str(ctx.device), "wall_s": time.perf_counter() - started})
        return EvalResult.from_json(result)

    def prepare(self, model: Any, data: str | Path) -> Context:
        """Resolve the model and the data, draw the fixed subsets (seed 0, shared by every run and model), load
        the tokenizer and encode the training and evaluation splits."""
        from indus.data.registry import resolve_dataset
        from indus.models import resolve_model

        ref = resolve_model(model)
        path = resolve_dataset(data, kind=self.data_kind)
        handle = self.load_data(path)
        train_all, eval_all = self.split_items(handle, self.train_split), self.split_items(handle, self.split)
        train_limit, eval_limit = self.limits
        train = fixed_subset(train_all, getattr(self, train_limit))
        evals = fixed_subset(eval_all, getattr(self, eval_limit))
        self.check_items(path, train, evals)
        device = self.torch_device()
        tokenizer = self.load_tokenizer(ref)
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        return Context(ref, path, handle, tokenizer, pad_id, device, len(train_all), len(eval_all),
                       self.encode(tokenizer, train, handle), self.encode(tokenizer, evals, handle))

    def run_seed(self, ctx: Context, seed: int) -> dict[str, Any]:
        """One run: re-initialise the model with ``seed``, fine-tune it, predict and score the evaluation split."""
        import transformers

        from indus.models import load_model

        features, lengths = self.training_features(ctx, seed)
        seed_everything(seed)
        net = load_model(ctx.ref, getattr(transformers, self.head), seed=seed,
                         **self.model_kwargs(ctx)).to(ctx.device)
        stats = finetune(net, features, self.collate(ctx, labels=True), self.finetune_settings(), seed=seed,
                         desc=f"{self.task} fine-tune (seed {seed})", lengths=lengths)
        t0 = time.perf_counter()
        preds = self.predict(net, ctx, ctx.eval)
        scores = self.score(ctx, ctx.eval, preds)
        run = {"seed": seed, **scores, "train_steps": stats["steps"], "final_loss": stats["final_loss"],
               "train_s": stats["train_s"], "eval_s": time.perf_counter() - t0}
        self.write_predictions(ctx, preds, seed)
        del net
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
        from indus.models import load_tokenizer

        return load_tokenizer(ref)

    def encode(self, tokenizer: Any, items: list[Any], data: Any) -> Part:
        """Tokenise one split (``items`` of the dataset ``data``) into the task's features."""
        raise NotImplementedError

    def model_kwargs(self, ctx: Context) -> dict[str, Any]:
        """Keyword arguments for :func:`indus.models.load_model` (label maps, ...)."""
        return {}

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


def finetune(model: Any, features: Sequence[Any], collate: Callable[[list[Any]], dict[str, Any]],
             settings: FinetuneSettings, *, seed: int = 0, desc: str = "fine-tune",
             lengths: Sequence[int] | None = None) -> dict[str, float]:
    """Train ``model`` in place on ``features``; the model's forward must return a ``loss``.

    Parameters
    ----------
    lengths
        Token count of each feature. When given, batches group features of similar length (shuffled mega-batches
        of 50 batches sorted by length, transformers' ``LengthGroupedSampler``), so dynamic padding wastes little.

    Returns
    -------
    dict
        ``steps``, ``examples`` (features seen), ``final_loss`` (mean of the last 20 steps) and ``train_s``.
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
        loader = DataLoader(features, batch_size=settings.batch_size, shuffle=True, collate_fn=collate,
                            generator=generator)
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
    while len(losses) < steps:
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
    bar.close()
    model.eval()
    tail = losses[-20:]
    return {"steps": len(losses), "examples": examples, "final_loss": float(np.mean(tail)) if tail else float("nan"),
            "train_s": time.perf_counter() - start}
