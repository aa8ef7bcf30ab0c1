"""``indus run``: from a corpus to a report, every stage cached under a hash of its configuration and inputs.

Stages, in order: tokenizer (INDUSBPE + fertility), pretrain (one stage per run of the compute ladder), distill
(MiniLMv2 students), retriever (GTE bi-encoders), retriever_distill (DistillCSE students), eval (one stage per model
and benchmark, baselines included), latency, forecast, scaling, report. See :mod:`indus.pipeline.runner` for the
caching rules and :mod:`indus.pipeline.config` for the settings.

Example
-------
>>> from indus.config import load_config
>>> cfg = load_config(PipelineConfig, "configs/demo.yaml")  # doctest: +SKIP
>>> summary = run_pipeline(cfg, "runs/demo")  # doctest: +SKIP
>>> summary["report"]  # doctest: +SKIP
'runs/demo/report.md'
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from indus.atomic import atomic_write_json
from indus.config import save_config
from indus.data.corpus import split_corpus
from indus.data.registry import resolve_dataset
from indus.errors import IndusError
from indus.pipeline.config import PipelineConfig
from indus.pipeline.runner import StageResult, StageRunner

__all__ = ["PipelineConfig", "run_pipeline"]


@dataclass
class ModelEntry:
    """A model the report compares: a baseline or one this run built."""

    name: str
    role: str  # "encoder" | "retriever"
    kind: str  # "baseline" | "built"
    spec: str  # what the evaluators load
    stage: StageResult | None = None
    preset: str | None = None
    teacher: str | None = None

    @property
    def key(self) -> str:
        """What stands for the model in an eval stage's cache key."""
        return self.spec if self.stage is None else self.name


def _model_dir(result: StageResult) -> Path:
    return result.path / result.summary["model"]


def _latency_texts(valid: Path, n: int) -> list[str]:
    """The first ``n`` sentences of the held-out corpus that have at least eight words."""
    from indus.data.corpus import iter_texts

    texts: list[str] = []
    for doc in iter_texts(valid, split="heldout" if valid.is_dir() else "all"):
        for sent in doc.replace("\n", " ").split(". "):
            if len(sent.split()) >= 8:
                texts.append(sent.strip())
                if len(texts) >= n:
                    return texts
    return texts


def run_pipeline(cfg: PipelineConfig, out_dir: str | Path, *, force: Sequence[str] = (),
                 log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run (or reuse) every stage of ``cfg`` into ``out_dir`` and write the report; returns the run summary."""
    from indus.pipeline import stages
    from indus.pipeline.report import write_run_report

    start = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    runner = StageRunner(out, force=force, log=log)
    if runner.is_main:
        save_config(cfg, out / "config.yaml")
    train, valid = (resolve_dataset(n, kind="corpus", from_config=True)
                    for n in (cfg.corpus.train, cfg.corpus.valid))
    split_corpus([train], [valid])  # refuses held-out text among the training files, before any stage runs
    eval_stages = {t.label: t for t in cfg.eval.tasks}
    if len(eval_stages) != len(cfg.eval.tasks):
        raise IndusError("eval.tasks: each task:data pair may appear once")
    names = {"minilm", "bm25", *(r.name for r in cfg.pretrain.runs), *(d.name for d in cfg.distill),
             *(r.name for r in cfg.retriever), *(d.name for d in cfg.retriever_distill)}
    for task in cfg.eval.tasks:
        unknown = sorted(n for n in task.per_model if n not in names and not n.startswith("random:"))
        if unknown:
            raise IndusError(f"eval.tasks[{task.label}].per_model: no model named {unknown[0]!r} in this run "
                             f"(models: {', '.join(sorted(names))}, random:<shape>)")

    # encoders: tokenizer, pretraining ladder, distilled students
    tok = None
    tokenizer = "minilm"
    if cfg.tokenizer.enabled and (cfg.pretrain.runs or cfg.distill):
        tok = runner.stage("tokenizer", *stages.tokenizer_stage(cfg.tokenizer, train, valid))
        tokenizer = str(tok.path / tok.summary["tokenizer"])
    models: list[ModelEntry] = []
    pretrained: dict[str, StageResult] = {}
    for r in cfg.pretrain.runs:
        res = runner.stage(f"pretrain/{r.name}",
                           *stages.pretrain_stage(r, cfg.pretrain.defaults, tokenizer, train, valid, cfg.seed),
                           inputs=[tok] if tok else [], collective=True)
        pretrained[r.name] = res
        models.append(ModelEntry(r.name, "encoder", "built", str(_model_dir(res)), res, r.preset))
    distilled: dict[str, StageResult] = {}
    for d in cfg.distill:
        teacher = pretrained[d.teacher]
        res = runner.stage(f"distill/{d.name}",
                           *stages.distill_stage(d, cfg.pretrain.defaults, _model_dir(teacher), train, valid,
                                                 cfg.seed), inputs=[teacher], collective=True)
        distilled[d.name] = res
        models.append(ModelEntry(d.name, "encoder", "built", str(_model_dir(res)), res, d.student_preset, d.teacher))

    # retrievers: contrastive training, DistillCSE students
    retrievers: dict[str, StageResult] = {}
    built = {"pretrain": pretrained, "distill": distilled, "retriever": retrievers}

    def ref(spec: str) -> tuple[str, StageResult | None]:
        """A model spec, or ``<stage kind>:<run>`` resolved to that run's model folder."""
        kind, _, name = spec.partition(":")
        source = built.get(kind, {}).get(name)
        return (str(_model_dir(source)), source) if source else (spec, None)

    for r in cfg.retriever:
        spec, source = ref(r.model)
        res = runner.stage(f"retriever/{r.name}", *stages.retriever_stage(r, spec, r.model, cfg.seed),
                           inputs=[source] if source else [], collective=True)
        retrievers[r.name] = res
        models.append(ModelEntry(r.name, "retriever", "built", str(_model_dir(res)), res))
    for d in cfg.retriever_distill:
        teacher = retrievers[d.teacher]
        pairs = d.pairs or next(r.pairs for r in cfg.retriever if r.name == d.teacher)
        student, source = ref(d.student)
        res = runner.stage(f"retriever_distill/{d.name}",
                           *stages.retriever_distill_stage(d, _model_dir(teacher), student, pairs, cfg.seed),
                           inputs=[teacher, *([source] if source else [])], collective=True)
        models.append(ModelEntry(d.name, "retriever", "built", str(_model_dir(res)), res, teacher=d.teacher))

    # baselines
    baselines: list[ModelEntry] = []
    if "random" in cfg.eval.baselines:
        largest = max(cfg.pretrain.runs, key=lambda r: _n_params(pretrained[r.name]), default=None)
        spec = f"random:{largest.preset}@{_model_dir(pretrained[largest.name])}" if largest else "random:minilm"
        baselines.append(ModelEntry(f"random:{largest.preset if largest else 'minilm'}", "encoder", "baseline", spec,
                                    pretrained[largest.name] if largest else None))
    if "minilm" in cfg.eval.baselines:
        baselines += [ModelEntry("minilm", "encoder", "baseline", "minilm"),
                      ModelEntry("minilm", "retriever", "baseline", "minilm")]
    if "bm25" in cfg.eval.baselines:
        baselines.append(ModelEntry("bm25", "retriever", "baseline", "bm25"))
    everyone = baselines + models

    # evaluation: every (model, task) pair is its own cached stage
    evals: list[dict[str, Any]] = []
    for task in cfg.eval.tasks:
        role = "retriever" if task.group == "retrievers" else "encoder"
        for m in (e for e in everyone if e.role == role):
            res = runner.stage(f"eval/{task.task}-{Path(task.data).name}/{m.name}",
                               *stages.eval_stage(task, m.spec, m.key, m.name), inputs=[m.stage] if m.stage else [])
            result = res.summary["result"]
            metric = result["primary_metric"]
            evals.append({"task": task.task, "data": task.data, "model": m.name, "kind": m.kind, "role": role,
                          "metric": metric, "value": result[metric], "std": result.get(f"{metric}_std"),
                          "wall_s": result.get("wall_s"), "latency_ms": result.get("latency_ms"),
                          "result": result})

    # latency of each encoder (one sentence at a time), for the quality / cost trade-off
    latency: dict[str, float] = {}
    enc = [m for m in everyone if m.role == "encoder" and (m.kind == "built" or m.spec == "minilm")]
    if enc and cfg.eval.latency_sentences > 0:
        texts = _latency_texts(valid, cfg.eval.latency_sentences)
        for m in enc:
            res = runner.stage(f"latency/{m.name}", *stages.latency_stage(m.spec, texts),
                               inputs=[m.stage] if m.stage else [])
            latency[m.name] = res.summary["ms_per_sentence"]

    forecasts = _forecasts(cfg, evals, pretrained) if cfg.forecast.enabled else {}
    scaling = None
    if cfg.scaling.enabled:
        res = runner.stage("scaling", *stages.scaling_stage(cfg.scaling.n_bootstrap))
        scaling = {"folder": str(res.path / res.summary["folder"]), "summary": res.summary["summary"]}

    summary = {
        "name": cfg.name, "out_dir": str(out),
        "stages": [{"name": r.name, "key": r.key, "cached": r.cached, "wall_s": r.wall_s}
                   for r in runner.results.values()],
        "fertility": tok.summary["fertility"] if tok else None,
        "pretrain": [{"name": n, "preset": next(r.preset for r in cfg.pretrain.runs if r.name == n),
                      "log": str(_model_dir(res) / "log.jsonl"), **_pick(res.summary["metrics"])}
                     for n, res in pretrained.items()],
        "distill": [{"name": n, "teacher": d.teacher, "preset": d.student_preset,
                     "log": str(_model_dir(distilled[n]) / "log.jsonl"), **_pick(distilled[n].summary["metrics"])}
                    for n, d in ((d.name, d) for d in cfg.distill)],
        "models": [{"name": m.name, "role": m.role, "kind": m.kind, "teacher": m.teacher, "preset": m.preset,
                    "path": str(_model_dir(m.stage)) if m.kind == "built" else m.spec} for m in everyone],
        "evals": evals, "latency": latency, "forecast": forecasts, "scaling": scaling,
    }
    summary["wall_s"] = time.perf_counter() - start
    summary["report"] = str(out / "report.md")
    if runner.is_main:
        summary["report"] = str(write_run_report(summary, out))
        atomic_write_json(out / "summary.json", summary)
    return summary


def _n_params(res: StageResult) -> int:
    return int(res.summary["metrics"].get("params", 0))


def _pick(metrics: dict[str, Any]) -> dict[str, Any]:
    keys = ("params", "params_non_embedding", "steps", "tokens_seen", "train_flops", "valid_loss", "valid_ppl",
            "tokens_per_s", "wall_s", "mfu")
    return {k: metrics.get(k) for k in keys if k in metrics}


def _forecasts(cfg: PipelineConfig, evals: list[dict[str, Any]],
               pretrained: dict[str, StageResult]) -> dict[str, dict[str, Any]]:
    """For every encoder benchmark: the metric against compute and held-out loss over the pretraining ladder."""
    from indus.pipeline.forecast import Point, forecast_metric

    out = {}
    for task in cfg.eval.tasks:
        if task.group != "encoders":
            continue
        points = []
        for e in evals:
            if e["task"] == task.task and e["data"] == task.data and e["model"] in pretrained:
                m = pretrained[e["model"]].summary["metrics"]
                points.append(Point(e["model"], float(m.get("train_flops") or 0.0), m.get("valid_loss"),
                                    float(e["value"])))
        if points:
            fc = forecast_metric(points, cfg.forecast.multipliers, alpha=cfg.forecast.alpha)
            fc["metric"] = next(e["metric"] for e in evals if e["task"] == task.task and e["data"] == task.data)
            fc["points"] = [{"model": p.model, "flops": p.flops, "loss": p.loss, "metric": p.metric} for p in points]
            out[task.label] = fc
    return out
