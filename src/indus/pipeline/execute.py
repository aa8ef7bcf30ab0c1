"""``indus run``, steps two and three: execute a plan stage by stage, then summarise the results for the report.

:func:`run_pipeline` is the three steps in a row: :func:`~indus.pipeline.plan.build_plan` (everything checked before
anything trains), :func:`execute` (each stage run or taken from the cache by :class:`~indus.pipeline.runner.
StageRunner`) and :func:`summarise` (the run summary the report and ``summary.json`` are written from).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from indus.atomic import atomic_write_json
from indus.config import save_config
from indus.errors import IndusError
from indus.evaluation.result import EvalResult
from indus.pipeline.config import PipelineConfig
from indus.pipeline.forecast import Point, forecast_metric
from indus.pipeline.plan import Plan, build_plan
from indus.pipeline.report import write_run_report
from indus.pipeline.runner import StageResult, StageRunner

__all__ = ["execute", "run_pipeline", "summarise"]


def execute(plan: Plan, runner: StageRunner) -> dict[str, StageResult]:
    """Run (or take from the cache) every stage of ``plan`` in order; returns the results by stage name."""
    results: dict[str, StageResult] = {}
    for stage in plan.stages.values():
        res = runner.stage(
            stage.name, stage.settings, stage.fn, inputs=[results[i] for i in stage.inputs], collective=stage.collective
        )
        if res.key != stage.key:  # the plan and the runner hash the same things: a mismatch is a bug here
            raise IndusError(f"stage {stage.name}: planned key {stage.key}, ran under {res.key}")
        results[stage.name] = res
    return results


def _model_dir(result: StageResult) -> Path:
    return result.path / result.summary["model"]


def summarise(plan: Plan, results: dict[str, StageResult], wall_s: float) -> dict[str, Any]:
    """The run summary: every number the report shows, read from the stage results."""
    cfg = plan.cfg
    evals: list[dict[str, Any]] = []
    for step in plan.evals:
        task, m = step.task, step.model
        stored = results[step.stage].summary["result"]
        result = EvalResult.from_json(stored)
        evals.append(
            {
                "task": task.task,
                "data": task.data,
                "model": m.name,
                "kind": m.kind,
                "role": m.role,
                "metric": result.primary_metric,
                "value": result.value,
                "std": result.std,
                "wall_s": result.wall_s,
                "latency_ms": result.latency_ms,
                "collapsed": result.collapsed,
                "collapsed_seeds": result.counts.get("collapsed_seeds", 0),
                "result": stored,
            }
        )
    latency = {name: results[stage].summary["ms_per_sentence"] for name, stage in plan.latency.items()}
    pretrained = {name: results[stage] for name, stage in plan.pretrained.items()}
    distilled = {name: results[stage] for name, stage in plan.distilled.items()}
    forecasts = _forecasts(cfg, evals, pretrained) if cfg.forecast.enabled else {}
    scaling = None
    if plan.scaling:
        res = results[plan.scaling]
        scaling = {"folder": str(res.path / res.summary["folder"]), "summary": res.summary["summary"]}
    tok = results[plan.tokenizer] if plan.tokenizer else None
    return {
        "name": cfg.name,
        "out_dir": str(plan.out_dir),
        "stages": [{"name": r.name, "key": r.key, "cached": r.cached, "wall_s": r.wall_s} for r in results.values()],
        "fertility": tok.summary["fertility"] if tok else None,
        "pretrain": [
            {
                "name": n,
                "preset": next(r.preset for r in cfg.pretrain.runs if r.name == n),
                "log": str(_model_dir(res) / "log.jsonl"),
                **_pick(res.summary["metrics"]),
            }
            for n, res in pretrained.items()
        ],
        "distill": [
            {
                "name": d.name,
                "teacher": d.teacher,
                "preset": d.student_preset,
                "log": str(_model_dir(distilled[d.name]) / "log.jsonl"),
                **_pick(distilled[d.name].summary["metrics"]),
            }
            for d in cfg.distill
        ],
        "models": [
            {
                "name": m.name,
                "role": m.role,
                "kind": m.kind,
                "teacher": m.teacher,
                "preset": m.preset,
                "path": str(_model_dir(results[m.stage])) if m.kind == "built" else m.spec,
            }
            for m in plan.models
        ],
        "evals": evals,
        "latency": latency,
        "forecast": forecasts,
        "scaling": scaling,
        "wall_s": wall_s,
    }


def run_pipeline(
    cfg: PipelineConfig,
    out_dir: str | Path,
    *,
    force: Sequence[str] = (),
    log: Callable[[str], None] | None = None,
    source: str | Path | None = None,
) -> dict[str, Any]:
    """Plan, run (or reuse) every stage of ``cfg`` into ``out_dir`` and write the report; returns the run summary.

    ``source`` (the config file) names the file in the errors of the plan, which is checked whole before the
    first stage runs.
    """
    start = time.perf_counter()
    plan = build_plan(cfg, out_dir, source=source)
    out = plan.out_dir
    out.mkdir(parents=True, exist_ok=True)
    runner = StageRunner(out, force=force, log=log)
    if runner.is_main:
        save_config(cfg, out / "config.yaml")
    results = execute(plan, runner)
    summary = summarise(plan, results, 0.0)
    summary["wall_s"] = time.perf_counter() - start
    summary["report"] = str(out / "report.md")
    if runner.is_main:
        summary["report"] = str(write_run_report(summary, out))
        atomic_write_json(out / "summary.json", summary)
    return summary


def _pick(metrics: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "params",
        "params_non_embedding",
        "steps",
        "tokens_seen",
        "train_flops",
        "valid_loss",
        "valid_ppl",
        "tokens_per_s",
        "wall_s",
        "mfu",
    )
    return {k: metrics.get(k) for k in keys if k in metrics}


def _forecasts(
    cfg: PipelineConfig, evals: list[dict[str, Any]], pretrained: dict[str, StageResult]
) -> dict[str, dict[str, Any]]:
    """For every encoder benchmark: the metric against compute and held-out loss over the pretraining ladder."""
    out = {}
    for task in cfg.eval.tasks:
        if task.group != "encoders":
            continue
        points = []
        for e in evals:
            if (
                e["task"] == task.task
                and e["data"] == task.data
                and e["model"] in pretrained
                and e["value"] is not None
            ):  # a collapsed model has no score to fit
                m = pretrained[e["model"]].summary["metrics"]
                points.append(
                    Point(e["model"], float(m.get("train_flops") or 0.0), m.get("valid_loss"), float(e["value"]))
                )
        if points:
            fc = forecast_metric(points, cfg.forecast.multipliers, alpha=cfg.forecast.alpha)
            fc["metric"] = next(e["metric"] for e in evals if e["task"] == task.task and e["data"] == task.data)
            fc["points"] = [{"model": p.model, "flops": p.flops, "loss": p.loss, "metric": p.metric} for p in points]
            out[task.label] = fc
    return out
