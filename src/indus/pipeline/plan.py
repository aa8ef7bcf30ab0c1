"""``indus run``, step one: the whole plan, built and checked before the first stage trains (like ``make -n``).

:func:`build_plan` turns a :class:`~indus.pipeline.config.PipelineConfig` into every stage the run needs, in order:
its typed config built and validated (``PretrainConfig``, ``DistillConfig``, the retriever configs, the evaluators'
options), the data it reads resolved and fingerprinted, the stages it reads from, and its cache key. A stage's
output folder follows from its key, so a later stage's inputs (a teacher's model folder, the tokenizer) are known
before anything has run. Any mistake in any stage, the last one included, is refused here as one line naming the
config file and the key (``configs/pipeline/demo.yaml: eval.tasks[ner:bc5cdr]: unknown setting(s) epoch; ...``).

:func:`explain` is ``indus run --dry-run``: each stage, whether it is cached, and why it would run (never run, the
settings that changed against its last finished run, the inputs that changed, forced, interrupted).

Example
-------
>>> from indus.config import load_config
>>> cfg = load_config(PipelineConfig, "configs/pipeline/demo.yaml")  # doctest: +SKIP
>>> plan = build_plan(cfg, "runs/demo", source="configs/pipeline/demo.yaml")  # doctest: +SKIP
>>> print("\\n".join(explain(plan)))  # doctest: +SKIP
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from indus.data.corpus import iter_texts, split_corpus
from indus.data.registry import resolve_dataset
from indus.errors import IndusError
from indus.models import RunRef, parse_model
from indus.pipeline import stages
from indus.pipeline.config import EvalTask, PipelineConfig
from indus.pipeline.runner import StageFn, stage_key, stage_path
from indus.presets import get_preset

__all__ = ["ModelEntry", "Plan", "PlannedStage", "build_plan", "explain"]


@dataclass
class ModelEntry:
    """A model the report compares: a baseline or one this run builds."""

    name: str
    role: str  # "encoder" | "retriever"
    kind: str  # "baseline" | "built"
    spec: str  # what the evaluators load
    stage: str | None = None  # the stage that builds it (or, for the random baseline, whose shape it takes)
    preset: str | None = None
    teacher: str | None = None

    @property
    def key(self) -> str:
        """What stands for the model in an eval stage's cache key."""
        return self.spec if self.stage is None else self.name


@dataclass
class PlannedStage:
    """One stage of the plan: what decides its output (``settings``, ``inputs``), its key and its folder."""

    name: str
    settings: dict[str, Any]
    fn: StageFn
    inputs: list[str]
    collective: bool
    key: str
    path: Path


@dataclass
class EvalStep:
    """One benchmark on one model."""

    task: EvalTask
    model: ModelEntry
    stage: str


@dataclass
class Plan:
    """Every stage of a run, in the order they run, and how the report reads their results."""

    cfg: PipelineConfig
    out_dir: Path
    stages: dict[str, PlannedStage] = field(default_factory=dict)
    models: list[ModelEntry] = field(default_factory=list)
    tokenizer: str | None = None
    pretrained: dict[str, str] = field(default_factory=dict)  # run name -> stage name
    distilled: dict[str, str] = field(default_factory=dict)
    evals: list[EvalStep] = field(default_factory=list)
    latency: dict[str, str] = field(default_factory=dict)  # model name -> stage name
    scaling: str | None = None

    def add(
        self, name: str, settings: dict[str, Any], fn: StageFn, inputs: Sequence[str] = (), *, collective: bool = False
    ) -> PlannedStage:
        """Append a stage; its key hashes its settings and its inputs' keys (see :func:`stage_key`)."""
        if name in self.stages:
            raise IndusError(f"two stages would be called {name!r}; give the models distinct names")
        key = stage_key(name, settings, [self.stages[i] for i in inputs])
        stage = PlannedStage(name, settings, fn, list(inputs), collective, key, stage_path(self.out_dir, name, key))
        self.stages[name] = stage
        return stage

    def model_dir(self, stage: str) -> Path:
        """The model folder a model-building stage will leave."""
        return self.stages[stage].path / stages.MODEL_DIR


@contextmanager
def _at(source: str | None, key: str) -> Iterator[None]:
    """Errors inside name the config file and the key they concern."""
    try:
        yield
    except IndusError as exc:
        msg = str(exc)
        if key and not msg.startswith(key):
            msg = f"{key}: {msg}"
        if source and not msg.startswith(str(source)):
            msg = f"{source}: {msg}"
        raise IndusError(msg) from None


def _shape_size(preset: str) -> int:
    """Non-embedding parameters of a preset's shape: which pretraining run is the largest, known before it runs
    (its embeddings depend on the tokenizer, the same for every run)."""
    p = get_preset(preset)
    h, f, n = p.hidden_size, p.intermediate_size, p.num_hidden_layers
    return n * (4 * h * h + 4 * h + 2 * h * f + f + h + 4 * h)


def latency_texts(valid: Path, n: int) -> list[str]:
    """The first ``n`` sentences of the held-out corpus that have at least eight words."""
    texts: list[str] = []
    for doc in iter_texts(valid, split="heldout" if valid.is_dir() else "all"):
        for sent in doc.replace("\n", " ").split(". "):
            if len(sent.split()) >= 8:
                texts.append(sent.strip())
                if len(texts) >= n:
                    return texts
    return texts


def build_plan(cfg: PipelineConfig, out_dir: str | Path, *, source: str | Path | None = None) -> Plan:
    """Every stage of ``cfg`` with its validated config, inputs and key; nothing runs.

    ``source`` (the config file) prefixes every error, which also names the key at fault.
    """
    src = None if source is None else str(source)
    plan = Plan(cfg, Path(out_dir))
    with _at(src, "corpus"):
        train, valid = (
            resolve_dataset(n, kind="corpus", from_config=True) for n in (cfg.corpus.train, cfg.corpus.valid)
        )
        split_corpus([train], [valid])  # refuses held-out text among the training files, before any stage runs
    with _at(src, "eval.tasks"):
        if len({t.label for t in cfg.eval.tasks}) != len(cfg.eval.tasks):
            raise IndusError("each task:data pair may appear once")
    names = {
        "minilm",
        "bm25",
        *(r.name for r in cfg.pretrain.runs),
        *(d.name for d in cfg.distill),
        *(r.name for r in cfg.retriever),
        *(d.name for d in cfg.retriever_distill),
    }
    for task in cfg.eval.tasks:
        unknown = sorted(n for n in task.per_model if n not in names and not n.startswith("random:"))
        if unknown:
            raise IndusError(
                f"{src + ': ' if src else ''}eval.tasks[{task.label}].per_model: no model named "
                f"{unknown[0]!r} in this run (models: {', '.join(sorted(names))}, random:<shape>)"
            )

    # encoders: tokenizer, pretraining ladder, distilled students
    tokenizer = "minilm"
    if cfg.tokenizer.enabled and (cfg.pretrain.runs or cfg.distill):
        with _at(src, "tokenizer"):
            tok = plan.add("tokenizer", *stages.tokenizer_stage(cfg.tokenizer, train, valid))
        plan.tokenizer = tok.name
        tokenizer = str(tok.path / "tokenizer")
    built: list[ModelEntry] = []
    for r in cfg.pretrain.runs:
        with _at(src, f"pretrain.runs[{r.name}]"):
            st = plan.add(
                f"pretrain/{r.name}",
                *stages.pretrain_stage(r, cfg.pretrain.defaults, tokenizer, train, valid, cfg.seed),
                inputs=[plan.tokenizer] if plan.tokenizer else [],
                collective=True,
            )
        plan.pretrained[r.name] = st.name
        built.append(ModelEntry(r.name, "encoder", "built", str(plan.model_dir(st.name)), st.name, r.preset))
    for d in cfg.distill:
        teacher = plan.pretrained[d.teacher]
        with _at(src, f"distill[{d.name}]"):
            st = plan.add(
                f"distill/{d.name}",
                *stages.distill_stage(d, cfg.pretrain.defaults, plan.model_dir(teacher), train, valid, cfg.seed),
                inputs=[teacher],
                collective=True,
            )
        plan.distilled[d.name] = st.name
        built.append(
            ModelEntry(d.name, "encoder", "built", str(plan.model_dir(st.name)), st.name, d.student_preset, d.teacher)
        )

    # retrievers: contrastive training, DistillCSE students
    retrievers: dict[str, str] = {}
    by_kind = {"pretrain": plan.pretrained, "distill": plan.distilled, "retriever": retrievers}

    def ref(spec: str) -> tuple[str, str | None]:
        """A model spec, or ``<stage kind>:<run>`` resolved to that run's model folder."""
        parsed = parse_model(spec, by_kind, fused=False)
        source_stage = by_kind[parsed.kind][parsed.run] if isinstance(parsed, RunRef) else None
        return (str(plan.model_dir(source_stage)), source_stage) if source_stage else (spec, None)

    for r in cfg.retriever:
        spec, source_stage = ref(r.model)
        inputs = [source_stage] if source_stage else []
        mined = None
        if r.mine:  # mine -> train: the negatives come from the model named in mine (default: the starting one)
            mine_spec, mine_source = ref(r.mine.get("model") or r.model)
            with _at(src, f"retriever[{r.name}].mine"):
                ms = plan.add(
                    f"mine/{r.name}",
                    *stages.mine_stage(r, mine_spec, r.mine.get("model") or r.model, cfg.seed),
                    inputs=[mine_source] if mine_source else [],
                )
            mined = (ms.path / stages.MINED_FILE, ms.key)
            inputs.append(ms.name)
        with _at(src, f"retriever[{r.name}]"):
            st = plan.add(
                f"retriever/{r.name}",
                *stages.retriever_stage(r, spec, r.model, cfg.seed, mined),
                inputs=inputs,
                collective=True,
            )
        retrievers[r.name] = st.name
        built.append(ModelEntry(r.name, "retriever", "built", str(plan.model_dir(st.name)), st.name))
    for d in cfg.retriever_distill:
        teacher = retrievers[d.teacher]
        pairs = d.pairs or next(r.pairs for r in cfg.retriever if r.name == d.teacher)
        student, source_stage = ref(d.student)
        with _at(src, f"retriever_distill[{d.name}]"):
            st = plan.add(
                f"retriever_distill/{d.name}",
                *stages.retriever_distill_stage(d, plan.model_dir(teacher), student, pairs, cfg.seed),
                inputs=[teacher, *([source_stage] if source_stage else [])],
                collective=True,
            )
        built.append(ModelEntry(d.name, "retriever", "built", str(plan.model_dir(st.name)), st.name, teacher=d.teacher))

    # baselines: the random one takes the shape and tokenizer of the largest pretraining run (first of equals)
    baselines: list[ModelEntry] = []
    if "random" in cfg.eval.baselines:
        with _at(src, "pretrain.runs"):
            largest = max(cfg.pretrain.runs, key=lambda r: _shape_size(r.preset), default=None)
        if largest is not None:
            stage = plan.pretrained[largest.name]
            baselines.append(
                ModelEntry(
                    f"random:{largest.preset}",
                    "encoder",
                    "baseline",
                    f"random:{largest.preset}@{plan.model_dir(stage)}",
                    stage,
                )
            )
        else:
            baselines.append(ModelEntry("random:minilm", "encoder", "baseline", "random:minilm"))
    if "minilm" in cfg.eval.baselines:
        baselines += [
            ModelEntry("minilm", "encoder", "baseline", "minilm"),
            ModelEntry("minilm", "retriever", "baseline", "minilm"),
        ]
    if "bm25" in cfg.eval.baselines:
        baselines.append(ModelEntry("bm25", "retriever", "baseline", "bm25"))
    plan.models = baselines + built

    # evaluation: every (model, task) pair is its own stage
    for task in cfg.eval.tasks:
        role = "retriever" if task.group == "retrievers" else "encoder"
        for m in (e for e in plan.models if e.role == role):
            with _at(src, f"eval.tasks[{task.label}]"):
                st = plan.add(
                    f"eval/{task.task}-{Path(task.data).name}/{m.name}",
                    *stages.eval_stage(task, m.spec, m.key, m.name),
                    inputs=[m.stage] if m.stage else [],
                )
            plan.evals.append(EvalStep(task, m, st.name))

    # latency of each encoder (one sentence at a time), for the quality / cost trade-off
    enc = [m for m in plan.models if m.role == "encoder" and (m.kind == "built" or m.spec == "minilm")]
    if enc and cfg.eval.latency_sentences > 0:
        with _at(src, "eval.latency_sentences"):
            texts = latency_texts(valid, cfg.eval.latency_sentences)
            for m in enc:
                st = plan.add(
                    f"latency/{m.name}", *stages.latency_stage(m.spec, texts), inputs=[m.stage] if m.stage else []
                )
                plan.latency[m.name] = st.name

    if cfg.scaling.enabled:
        plan.scaling = plan.add("scaling", *stages.scaling_stage(cfg.scaling.n_bootstrap)).name
    return plan


# --------------------------------------------------------------------------------------------- the dry run


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str))


def _short(v: Any, width: int = 40) -> str:
    text = json.dumps(v, default=str)
    return text if len(text) <= width else text[: width - 3] + "..."


def diff_settings(old: Any, new: Any, path: str = "") -> list[str]:
    """``"a.b: 1 -> 2"`` for every leaf that differs between two JSON values.

    >>> diff_settings({"config": {"lr": 1e-3, "steps": 6}}, {"config": {"lr": 1e-3, "steps": 5}})
    ['config.steps: 6 -> 5']
    """
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for k in list(dict.fromkeys([*old, *new])):
            sub = f"{path}.{k}" if path else str(k)
            if k not in old:
                out.append(f"{sub}: (new) {_short(new[k])}")
            elif k not in new:
                out.append(f"{sub}: {_short(old[k])} (removed)")
            else:
                out += diff_settings(old[k], new[k], sub)
        return out
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [d for i, (a, b) in enumerate(zip(old, new, strict=True)) for d in diff_settings(a, b, f"{path}[{i}]")]
    return [] if old == new else [f"{path or 'settings'}: {_short(old)} -> {_short(new)}"]


def _last_record(out_dir: Path, stage: PlannedStage) -> dict[str, Any] | None:
    """The ``stage.json`` of this stage's most recently finished run under any key (``None``: never finished)."""
    records = []
    for path in stage.path.parent.glob("*/stage.json"):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        # one host wrote these (the main process): its clock orders them; older records lack "finished"
        records.append((record.get("finished") or path.stat().st_mtime, record))
    return max(records, key=lambda r: r[0])[1] if records else None


def why(plan: Plan, stage: PlannedStage, force: Sequence[str] = ()) -> tuple[str, str]:
    """``(status, reason)`` of a planned stage: ``cached``, or ``run`` / ``resume`` and what changed."""
    done = (stage.path / "stage.json").is_file()
    forced = bool({stage.name, "*"} & set(force))
    if done and not forced:
        return "cached", ""
    if forced:
        return "run", "forced (--force)"
    partial = stage.path.parent / f".{stage.key}.partial"
    if partial.is_dir() and any(partial.iterdir()):
        return "resume", "interrupted before; continues from its partial folder"
    last = _last_record(plan.out_dir, stage)
    if last is None:
        return "run", "never run"
    old, new = last.get("settings") or {}, _jsonable(stage.settings)
    reasons = diff_settings(
        {k: v for k, v in old.items() if k != "data"}, {k: v for k, v in new.items() if k != "data"}
    )
    if old.get("data") != new.get("data") and _mtime_fingerprints(old.get("data")):
        reasons.append("data recorded by size and modification time (an older indus); now by content")
    elif old.get("data") != new.get("data"):  # fingerprints: [name, size, digest] per file
        before = {tuple(f) for f in old.get("data") or []}
        changed = sorted(
            {f[0] for f in new.get("data") or [] if tuple(f) not in before}
            | {f[0] for f in before if list(f) not in (new.get("data") or [])}
        )
        reasons.append(f"data changed: {', '.join(changed[:5])}{' ...' if len(changed) > 5 else ''}")
    old_inputs = dict(i.split("=", 1) for i in last.get("inputs", []))
    new_inputs = {i: plan.stages[i].key for i in stage.inputs}
    reasons += [f"input {name} changed" for name in new_inputs if old_inputs.get(name) != new_inputs[name]]
    reasons += [f"input {name} removed" for name in old_inputs if name not in new_inputs]
    if not reasons:
        version = last.get("indus_version")
        reasons = [
            f"indus version changed ({version})"
            if version
            else "key changed (indus version or an input of an older record)"
        ]
    return "run", "; ".join(reasons)


def explain(plan: Plan, force: Sequence[str] = ()) -> list[str]:
    """``indus run --dry-run``: one line per stage (cached or to run, and why), then a count."""
    lines, counts = [], {"cached": 0, "run": 0, "resume": 0}
    width = max((len(s.name) for s in plan.stages.values()), default=0)
    for stage in plan.stages.values():
        status, reason = why(plan, stage, force)
        counts[status] += 1
        lines.append(
            f"[{status}]{' ' * (7 - len(status))}{stage.name:<{width}}  {stage.key}" + (f"  {reason}" if reason else "")
        )
    lines.append(
        f"{len(plan.stages)} stages: {counts['cached']} cached, {counts['run']} to run"
        + (f", {counts['resume']} to resume" if counts["resume"] else "")
        + f" (run folder {plan.out_dir})"
    )
    return lines


def _mtime_fingerprints(data: Any) -> bool:
    """Whether a record's data fingerprints are the older [name, size, mtime_ns] (an int where a digest now is)."""
    return isinstance(data, list) and any(isinstance(f, list) and len(f) == 3 and isinstance(f[2], int) for f in data)
