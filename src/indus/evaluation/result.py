"""The typed result every evaluator returns: :class:`EvalResult`.

An evaluator's result has always been one flat JSON object (``f1``, ``f1_std``, ``train_sentences``,
``per_seed``, ``settings``, ``wall_s``, ...), and result files, suite tables and pipeline summaries hold exactly
that object. :class:`EvalResult` sorts the same keys into sections (the metrics, the per-seed runs, the counts,
the settings, the timings and the other facts), so that a consumer reads ``result.value``, ``result.std`` or
``result.counts["eval_sentences"]`` instead of guessing string keys, and :meth:`EvalResult.to_json` gives back the
flat object, key for key and in the same order. :meth:`EvalResult.from_json` reads a stored result back.

For callers written against the flat object, an :class:`EvalResult` is also a read-only mapping over
:meth:`~EvalResult.to_json` (``result["f1"]``).

Example
-------
>>> flat = {"task": "ner", "primary_metric": "f1", "model": "m", "data": "d", "split": "test", "f1": 0.5,
...         "f1_std": 0.1, "train_sentences": 10, "per_seed": [], "settings": {}, "seeds": 2, "wall_s": 3.0}
>>> r = EvalResult.from_json(flat)
>>> r.value, r.std, r.counts, r.timings, r.info
(0.5, 0.1, {'train_sentences': 10}, {'wall_s': 3.0}, {'split': 'test', 'seeds': 2})
>>> r.to_json() == flat and list(r.to_json()) == list(flat)
True
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

HEAD = ("task", "primary_metric", "model", "data")
#: facts about the run that are numbers but neither metrics nor counts
INFO_KEYS = frozenset(
    {
        "seeds",
        "epochs",
        "max_length",
        "doc_stride",
        "max_answer_length",
        "k",
        "fusion_k",
        "latency_queries",
        "lr",
        "no_answer",
        "collapsed",
    }
)


def _section(key: str, value: Any) -> str:
    """Which section a flat key belongs to."""
    if key == "per_seed":
        return "per_seed"
    if key == "settings":
        return "settings"
    if key in INFO_KEYS:
        return "info"
    if key.endswith("_s") or key.startswith("latency_ms"):
        return "timings"
    if isinstance(value, bool):
        return "info"
    if isinstance(value, int):
        return "counts"
    if isinstance(value, float) or (isinstance(value, dict) and key.startswith("per_")):
        return "metrics"
    return "info"


@dataclass(eq=False)
class EvalResult(Mapping):
    """One evaluation of one model on one dataset.

    Attributes
    ----------
    task, primary_metric, model, data
        The evaluator task (``ner``, ``qa``, ``ir``, ``cls``), the metric tables and the pipeline rank by, the
        model's name and the dataset's path.
    metrics
        The scores: each metric's mean over the seeds, ``<metric>_std`` its sample std, and breakdowns
        (``per_type``, ``per_label``); ``None`` when a metric could not be computed.
    per_seed
        One dict per fine-tuning run (its seed, scores, steps, loss, seconds); empty for tasks without seeds.
    counts
        Examples, windows and other integers the result counts (``train_sentences``, ``eval_windows``, ...).
    settings
        The evaluator's settings.
    timings
        Seconds (``wall_s``, ``train_s``, ...) and speeds (``latency_ms``, ``docs_per_s``, ...) of this machine.
    info
        Every other fact (split, labels, device, seeds, epochs, the learning-rate choice, ...).
    """

    task: str
    primary_metric: str
    model: str
    data: str
    metrics: dict[str, Any] = field(default_factory=dict)
    per_seed: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    #: the flat keys in their original order (so that to_json round-trips key order)
    order: list[str] = field(default_factory=list, repr=False)

    @classmethod
    def from_json(cls, flat: Mapping[str, Any]) -> EvalResult:
        """Sort a flat result (an evaluator's JSON, a stored ``result.json``) into sections."""
        sections: dict[str, dict[str, Any]] = {"metrics": {}, "counts": {}, "timings": {}, "info": {}}
        per_seed: list[dict[str, Any]] = []
        settings: dict[str, Any] = {}
        primary = flat.get("primary_metric")
        for key, value in flat.items():
            if key in HEAD:
                continue
            # a metric without a value (every seed collapsed) is known by its std
            is_metric = key == primary or (value is None and (key.endswith("_std") or f"{key}_std" in flat))
            where = "metrics" if is_metric else _section(key, value)
            if where == "per_seed":
                per_seed = list(value)
            elif where == "settings":
                settings = dict(value)
            else:
                sections[where][key] = value
        # an std belongs with its metric even when the metric is missing or an integer
        for key in [k for k in sections["counts"] if k.endswith("_std")]:
            sections["metrics"][key] = sections["counts"].pop(key)
        return cls(
            str(flat.get("task", "")),
            str(flat.get("primary_metric", "")),
            str(flat.get("model", "")),
            str(flat.get("data", "")),
            per_seed=per_seed,
            settings=settings,
            order=list(flat),
            **sections,
        )

    def to_json(self) -> dict[str, Any]:
        """The flat JSON object of the result (the keys and order evaluators have always written)."""
        values: dict[str, Any] = {
            "task": self.task,
            "primary_metric": self.primary_metric,
            "model": self.model,
            "data": self.data,
            **self.info,
            **self.metrics,
            **self.counts,
            **self.timings,
        }
        if self.per_seed or "per_seed" in self.order:
            values["per_seed"] = self.per_seed
        if self.settings or "settings" in self.order:
            values["settings"] = self.settings
        ordered = {k: values[k] for k in self.order if k in values}
        ordered.update({k: v for k, v in values.items() if k not in ordered})
        return ordered

    # ------------------------------------------------------------------------------------ typed reading

    @property
    def value(self) -> float | None:
        """The primary metric's value (mean over the seeds that did not collapse)."""
        return self.metrics.get(self.primary_metric)

    @property
    def std(self) -> float | None:
        """The primary metric's sample std over seeds (``None`` when the task has no seeds)."""
        return self.metrics.get(f"{self.primary_metric}_std")

    @property
    def wall_s(self) -> float | None:
        """Seconds the whole evaluation took."""
        return self.timings.get("wall_s")

    @property
    def latency_ms(self) -> float | None:
        """Median per-query latency (retrieval only)."""
        return self.timings.get("latency_ms")

    @property
    def collapsed(self) -> bool:
        """Whether every seed collapsed (predicted a single label): there is no score to show."""
        return bool(self.info.get("collapsed"))

    def metric(self, name: str) -> Any:
        """One metric (or breakdown), ``None`` when the result lacks it."""
        return self.metrics.get(name)

    # ------------------------------------------------------------------- read-only mapping over to_json

    def __getitem__(self, key: str) -> Any:
        return self.to_json()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.to_json())

    def __len__(self) -> int:
        return len(self.to_json())
