"""Evaluation suites: a YAML list of tasks with their budgets, run one after the other and reported as one table.

A suite file holds ``tasks`` (or is itself that list); each entry names an evaluator task, a dataset and the
evaluator's settings::

    name: default
    tasks:
      - task: ner                  # ner | qa | ir | cls (indus.evaluation.EVALUATORS)
        data: bc5cdr               # a dataset name under the data root, or a path
        settings: {seeds: 1, epochs: 2, max_train_sentences: 2000}
      - task: ir
        data: scifact
        model: bm25                # optional: this entry's own model instead of the suite's

Every entry is checked before anything runs: unknown tasks or entry keys, settings the evaluator does not have,
values of the wrong type and failed evaluator checks are an :class:`~indus.errors.IndusError` naming the suite
file and the entry (``default.yaml: tasks[2] (qa covid-qa): ...``); so are datasets that cannot be found.

Example
-------
>>> result = run_suite("minilm")  # doctest: +SKIP
>>> [(r["task"], r["data"], r["metric"]) for r in result["rows"]]  # doctest: +SKIP
[('ner', 'bc5cdr', 'f1'), ('ner', 'sciie', 'f1'), ('qa', 'covid-qa', 'f1'), ('ir', 'scifact', 'ndcg@10'), ...]
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from indus.config import build_config, load_yaml_file
from indus.data.registry import resolve_dataset
from indus.errors import IndusError
from indus.evaluation import EVALUATORS, evaluate
from indus.evaluation.result import EvalResult
from indus.lazy import lazy_attr

SUITES_DIR = Path(__file__).resolve().parent / "suites"
#: evaluator task -> dataset kind in the data-root layout
TASK_KINDS = {"ner": "ner", "qa": "qa", "ir": "ir", "cls": "classification"}
ENTRY_KEYS = ("task", "data", "settings", "model", "name")
#: secondary metrics shown next to the primary one, when a result has them
HEADLINE = ("precision", "recall", "exact_match", "micro_f1", "macro_f1", "accuracy", "recall@100", "mrr@10")


@dataclass(frozen=True)
class SuiteTask:
    """One entry of a suite: an evaluator task on a dataset with validated settings."""

    task: str
    data: str
    settings: dict[str, Any] = field(default_factory=dict)
    model: str | None = None
    name: str | None = None

    @property
    def label(self) -> str:
        """How the entry is shown in tables."""
        return self.name or self.data


@dataclass(frozen=True)
class Suite:
    """A loaded suite."""

    name: str
    path: Path | None
    tasks: tuple[SuiteTask, ...]


def suite_path(suite: str | Path | None = None) -> Path:
    """The file of a suite: ``None`` is the default suite, a bare name one of :data:`SUITES_DIR`, else a path."""
    if suite is None:
        return SUITES_DIR / "default.yaml"
    candidate = Path(suite).expanduser()
    if candidate.is_file():
        return candidate
    packaged = SUITES_DIR / f"{suite}.yaml"
    if "/" not in str(suite) and packaged.is_file():
        return packaged
    known = ", ".join(sorted(p.stem for p in SUITES_DIR.glob("*.yaml")))
    raise IndusError(f"{suite}: suite file not found (packaged suites: {known})")


def _evaluator_class(task: str, where: str) -> type:

    return lazy_attr(EVALUATORS, task, what="task", where=where)


def validate_settings(task: str, settings: dict[str, Any], where: str) -> dict[str, Any]:
    """``settings`` checked against the ``task`` evaluator and coerced to its field types (YAML reads ``5e-5``
    as a string, for example)."""
    cls = _evaluator_class(task, where)
    try:
        if dataclasses.is_dataclass(cls):
            evaluator = build_config(cls, settings, where=f"{where}.settings")
            return {k: getattr(evaluator, k) for k in settings}
        cls(**settings)
        return dict(settings)
    except TypeError as exc:
        raise IndusError(f"{where}: bad setting ({exc})") from None
    except IndusError as exc:
        message = str(exc)
        raise IndusError(message if message.startswith(where) else f"{where}: {message}") from None


def parse_suite(data: Any, where: str = "suite") -> tuple[str | None, tuple[SuiteTask, ...]]:
    """The name and validated entries of a suite given as parsed YAML (a list, or a mapping with ``tasks``)."""
    name = None
    if isinstance(data, dict):
        unknown = sorted(set(data) - {"name", "description", "tasks"})
        if unknown:
            raise IndusError(f"{where}: unknown key(s) {', '.join(unknown)}; expected name, description, tasks")
        name, data = data.get("name"), data.get("tasks")
    if not isinstance(data, list) or not data:
        raise IndusError(f"{where}: expected a non-empty list of tasks (each {{task, data, settings}})")
    tasks = []
    for i, entry in enumerate(data):
        at = f"{where}: tasks[{i}]"
        if not isinstance(entry, dict):
            raise IndusError(f"{at}: expected a mapping with task, data and settings, found {entry!r}")
        unknown = sorted(set(entry) - set(ENTRY_KEYS))
        if unknown:
            raise IndusError(f"{at}: unknown key(s) {', '.join(unknown)}; expected {', '.join(ENTRY_KEYS)}")
        for key in ("task", "data"):
            if not isinstance(entry.get(key), str) or not entry[key]:
                raise IndusError(f"{at}: '{key}' must be a non-empty string")
        at = f"{at} ({entry['task']} {entry['data']})"
        settings = entry.get("settings") or {}
        if not isinstance(settings, dict):
            raise IndusError(f"{at}: 'settings' must be a mapping, found {settings!r}")
        model = entry.get("model")
        if model is not None and not isinstance(model, str):
            raise IndusError(f"{at}: 'model' must be a string")
        settings = validate_settings(entry["task"], settings, at)
        tasks.append(SuiteTask(entry["task"], entry["data"], settings, model, entry.get("name")))
    return name, tuple(tasks)


def load_suite(suite: str | Path | None = None) -> Suite:
    """Read and validate a suite file (``None``: the default suite)."""
    path = suite_path(suite)
    data = load_yaml_file(path)
    name, tasks = parse_suite(data, where=str(path))
    return Suite(name or path.stem, path, tasks)


def _row(entry: SuiteTask, model: str, result: EvalResult) -> dict[str, Any]:
    metric = result.primary_metric
    also = ", ".join(
        f"{k} {result.metric(k):.4g}" for k in HEADLINE if k != metric and isinstance(result.metric(k), int | float)
    )
    return {
        "task": entry.task,
        "data": entry.label,
        "model": model,
        "metric": metric,
        "value": result.value,
        "std": result.std,
        "also": also,
        "wall_s": result.wall_s,
        "metrics": result.to_json(),
    }


def run_suite(
    model: str | Path,
    suite: str | Path | None = None,
    data_root: str | Path | None = None,
    *,
    on_row: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run every task of a suite on ``model``.

    Parameters
    ----------
    model
        A model spec (``minilm``, ``random:<preset>``, a local folder); an entry's own ``model`` overrides it.
    suite
        A suite file, the name of a packaged suite, or ``None`` for the default suite.
    data_root
        Where dataset names are looked up (default ``$INDUS_DATA``).
    on_row
        Called with each row as soon as its task finishes (progress reporting).

    Returns
    -------
    dict
        ``suite`` (name), ``suite_path``, ``model``, ``wall_s`` and ``rows``: one per task with ``task``,
        ``data``, ``model``, ``metric`` (the primary metric's name), ``value``, ``std``, ``also`` (secondary
        metrics as text), ``wall_s`` and ``metrics`` (the evaluator's full result).
    """
    loaded = load_suite(suite)
    paths = []
    for i, entry in enumerate(loaded.tasks):
        try:
            paths.append(resolve_dataset(entry.data, kind=TASK_KINDS.get(entry.task), root=data_root, from_config=True))
        except IndusError as exc:
            raise IndusError(f"{loaded.path}: tasks[{i}] ({entry.task} {entry.data}): {exc}") from None
    started = time.perf_counter()
    rows = []
    for entry, path in zip(loaded.tasks, paths, strict=True):
        spec = entry.model or str(model)
        result = evaluate(entry.task, spec, path, **entry.settings)
        row = _row(entry, spec, result)
        rows.append(row)
        if on_row is not None:
            on_row(row)
    return {
        "suite": loaded.name,
        "suite_path": str(loaded.path),
        "model": str(model),
        "wall_s": time.perf_counter() - started,
        "rows": rows,
    }
