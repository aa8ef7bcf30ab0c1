"""``indus run``: from a corpus to a report, every stage cached under a hash of its configuration and inputs.

Stages, in order: tokenizer (INDUSBPE + fertility), pretrain (one stage per run of the compute ladder), distill
(MiniLMv2 students), retriever (GTE bi-encoders), retriever_distill (DistillCSE students), eval (one stage per model
and benchmark, baselines included), latency, scaling; then the forecast and the report. A run is three steps:
:func:`build_plan` (every stage's config built and checked, its inputs and cache key: a mistake anywhere is refused
before the first stage trains), :func:`execute` and :func:`summarise`; :func:`run_pipeline` does the three.
See :mod:`indus.pipeline.runner` for the caching rules and :mod:`indus.pipeline.config` for the settings.

Example
-------
>>> from indus.config import load_config
>>> cfg = load_config(PipelineConfig, "configs/pipeline/demo.yaml")  # doctest: +SKIP
>>> summary = run_pipeline(cfg, "runs/demo")  # doctest: +SKIP
>>> summary["report"]  # doctest: +SKIP
'runs/demo/report.md'
"""

from __future__ import annotations

from indus.pipeline.config import PipelineConfig
from indus.pipeline.execute import execute, run_pipeline, summarise
from indus.pipeline.plan import Plan, build_plan, explain

__all__ = ["Plan", "PipelineConfig", "build_plan", "execute", "explain", "run_pipeline", "summarise"]
