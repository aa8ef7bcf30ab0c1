"""The science benchmark harness: one evaluator contract for NER, extractive QA, retrieval and classification.

Every evaluator is a small class holding its settings (keyword-only, typed) with

- ``task``: ``"ner"``, ``"qa"``, ``"ir"`` or ``"cls"``;
- ``primary_metric``: the key a suite table and the pipeline read first (``f1``, ``ndcg@10``, ...);
- ``evaluate(model, data) -> EvalResult``: ``model`` is a model spec (``minilm``, ``random:<preset>``, a local
  Hugging Face or SentenceTransformer folder; ``bm25`` for retrieval), ``data`` a dataset name under the data
  root or a path. The :class:`~indus.evaluation.result.EvalResult` sorts into sections (``metrics``,
  ``per_seed``, ``counts``, ``settings``, ``timings``, ``info``) and gives back as one flat JSON object
  (``to_json()``) the metrics (``f1``, ``f1_std``, ``precision``, ``recall``, ``exact_match``,
  ``ndcg@10``, ``recall@10``, ``recall@100``, ``mrr@10``, ...), the settings used (model, data, split, seeds,
  epochs, max lengths, examples used), ``primary_metric`` and ``wall_s``.

:func:`evaluate` looks an evaluator up by task name, so callers (``indus eval suite``, the pipeline) never import
the task modules themselves.

Example
-------
>>> result = evaluate("ir", "bm25", "scifact", split="test")  # doctest: +SKIP
>>> result.primary_metric  # doctest: +SKIP
'ndcg@10'
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from indus.errors import IndusError
from indus.evaluation.result import EvalResult
from indus.lazy import lazy_attr

__all__ = ["EVALUATORS", "EvalResult", "Evaluator", "evaluate", "get_evaluator"]

#: task name -> "module:Class", imported lazily so that one task's heavy imports never slow another.
EVALUATORS: dict[str, str] = {
    "ner": "indus.evaluation.ner:NEREvaluator",
    "qa": "indus.evaluation.qa:QAEvaluator",
    "ir": "indus.evaluation.ir:IREvaluator",
    "cls": "indus.evaluation.cls:ClassificationEvaluator",
}


class Evaluator(Protocol):
    """What every evaluator provides."""

    task: str
    primary_metric: str

    def evaluate(self, model: Any, data: str | Path) -> EvalResult:
        """Fine-tune (where the task needs it) and score ``model`` on ``data``."""
        ...


def get_evaluator(task: str, **settings: Any) -> Evaluator:
    """The evaluator for ``task`` built with ``settings`` (its keyword-only options)."""
    cls = lazy_attr(EVALUATORS, task, what="evaluation task")
    try:
        return cls(**settings)
    except TypeError as exc:
        raise IndusError(f"{task}: bad evaluation setting ({exc})") from None


def evaluate(task: str, model: Any, data: str | Path, **settings: Any) -> EvalResult:
    """Evaluate ``model`` on ``data`` with the ``task`` evaluator; see the module docstring for the result."""
    return get_evaluator(task, **settings).evaluate(model, data)
