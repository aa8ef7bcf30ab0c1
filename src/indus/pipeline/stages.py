"""The stages of ``indus run``, each a thin call into the library that owns it.

Every function here returns ``(settings, fn)``: the settings that decide the stage's output (hashed into its cache
key, with fingerprints of the data files it reads) and ``fn(out_dir, resume) -> summary`` that does the work.
Paths in a summary are relative to the stage folder, which is renamed into place when the stage finishes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from indus.atomic import atomic_write_json, content_digests
from indus.config import build_config, config_to_dict
from indus.data.registry import resolve_dataset
from indus.encoder.configs import KEY_NEUTRAL_AT_DEFAULT, DistillConfig, PretrainConfig
from indus.evaluation import evaluate
from indus.evaluation.suite import validate_settings
from indus.models import load_model, load_tokenizer
from indus.pipeline.config import (
    DistillRun,
    EvalTask,
    PretrainRun,
    RetrieverDistillRun,
    RetrieverRun,
    TokenizerSection,
)
from indus.timing import latencies_ms
from indus.tokenizer.fertility import compare_tokenizers
from indus.tokenizer.train import train_bpe

MODEL_DIR = "model"
Stage = tuple[dict[str, Any], Any]


def fingerprint(paths: Sequence[str | Path]) -> list[list[Any]]:
    """Name, size and content digest of each data file (every file of a folder): a changed file reruns.

    Names are relative to the path given and the digest reads the bytes (:func:`~indus.atomic.content_digests`,
    memoised), so the same data under another root, copied again or touched keeps the cache.
    """
    named = []
    for p in paths:
        p = Path(p)
        files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
        named += [(f"{p.name}/{f.relative_to(p)}" if p.is_dir() else f.name, f) for f in files]
    digests = content_digests([f for _, f in named])
    return [[name, f.stat().st_size, d] for (name, f), d in zip(named, digests, strict=True)]


def _without_paths(cfg: Any, *keys: str) -> dict[str, Any]:
    """A config as a dict without its input paths: inputs enter the key as stages and fingerprints instead, so a
    run folder or a data root that moves keeps its cache. Settings added later
    (:data:`~indus.encoder.configs.KEY_NEUTRAL_AT_DEFAULT`) are left out while at their defaults, so the keys of
    runs that do not use them stay what they were."""
    drop = {"train_files", "valid_files", "pairs", *keys}
    defaults = {f.name: f.default for f in dataclasses.fields(cfg)}
    drop |= {k for k in KEY_NEUTRAL_AT_DEFAULT if k in defaults and getattr(cfg, k) == defaults[k]}
    return {k: v for k, v in config_to_dict(cfg).items() if k not in drop}


def tokenizer_stage(section: TokenizerSection, train: Path, valid: Path) -> Stage:
    """Train INDUSBPE and compare its fertility with general tokenizers on the held-out text."""
    settings = {"section": config_to_dict(section), "data": fingerprint([train, valid])}

    def run(out: Path, resume: bool) -> dict[str, Any]:
        tok_dir = out / "tokenizer"
        train_bpe(
            [train],
            section.vocab_size,
            out_dir=tok_dir,
            lowercase=section.lowercase,
            max_docs=section.max_docs,
            show_progress=False,
            overwrite=True,
        )  # a resumed stage retrains
        names = ["indusbpe (this run)", *section.compare_with]
        rows = compare_tokenizers(
            valid, [tok_dir, *section.compare_with], max_docs=section.compare_max_docs, names=names
        )
        return {"tokenizer": "tokenizer", "fertility": [r.to_dict() for r in rows]}

    return settings, run


def pretrain_stage(
    run_cfg: PretrainRun, defaults: dict[str, Any], tokenizer: str, train: Path, valid: Path, seed: int
) -> Stage:
    """One masked-LM pretraining run; resumes from its last checkpoint when the stage was interrupted."""
    data = {
        "seed": seed,
        **defaults,
        **run_cfg.settings,
        "preset": run_cfg.preset,
        "tokenizer": tokenizer,
        "train_files": [str(train)],
        "valid_files": [str(valid)],
    }
    cfg = build_config(PretrainConfig, data, where=f"pretrain.runs[{run_cfg.name}]")
    settings = {"config": _without_paths(cfg, "tokenizer"), "data": fingerprint([train, valid])}

    def run(out: Path, resume: bool) -> dict[str, Any]:
        from indus.encoder.pretrain import pretrain

        model_dir = out / MODEL_DIR
        metrics = pretrain(cfg, model_dir, resume=resume and model_dir.is_dir())
        return {"model": MODEL_DIR, "preset": run_cfg.preset, "metrics": metrics}

    return settings, run


def distill_stage(
    run_cfg: DistillRun, defaults: dict[str, Any], teacher_dir: Path, train: Path, valid: Path, seed: int
) -> Stage:
    """One MiniLMv2 student of a pretrained teacher."""
    data = {
        "seed": seed,
        **{k: v for k, v in defaults.items() if k in _fields(DistillConfig)},
        **run_cfg.settings,
        "preset": run_cfg.student_preset,
        "teacher": str(teacher_dir),
        "train_files": [str(train)],
        "valid_files": [str(valid)],
    }
    cfg = build_config(DistillConfig, data, where=f"distill[{run_cfg.name}]")
    settings = {"config": _without_paths(cfg, "teacher", "tokenizer"), "data": fingerprint([train, valid])}

    def run(out: Path, resume: bool) -> dict[str, Any]:
        from indus.encoder.distill import distill

        model_dir = out / MODEL_DIR
        metrics = distill(cfg, model_dir, resume=resume and model_dir.is_dir())
        return {"model": MODEL_DIR, "preset": run_cfg.student_preset, "metrics": metrics}

    return settings, run


MINED_FILE = "mined.jsonl.gz"


def _pair_inputs(names: Sequence[str]) -> tuple[list[str], list[Path]]:
    """The pair names resolved (what the training config reads) and the files behind them (what is fingerprinted):
    a ``BEIR_FOLDER:SPLIT`` name stays ``FOLDER:SPLIT`` with its folder resolved, and its folder is fingerprinted."""
    from indus.data.beir import split_beir_name

    resolved, files = [], []
    for name in names:
        beir = split_beir_name(name)
        if beir is not None:
            resolved.append(f"{beir[0]}:{beir[1]}")
            files.append(beir[0])
        else:
            path = resolve_dataset(name, from_config=True)
            resolved.append(str(path))
            files.append(path)
    return resolved, files


def mine_stage(run_cfg: RetrieverRun, model: str, model_key: str, seed: int) -> Stage:
    """Hard negatives for a retriever run's pairs (``indus retriever mine``), mined by ``model`` from the corpus of
    ``run_cfg.mine``; the stage leaves :data:`MINED_FILE`, which the run's training stage reads as its pairs."""
    from indus.retriever.mine import MineSettings, mine_negatives

    spec = dict(run_cfg.mine)
    corpus = resolve_dataset(spec.pop("corpus"), from_config=True)
    spec.pop("model", None)
    mine_settings = build_config(MineSettings, {"seed": seed, **spec}, where=f"retriever[{run_cfg.name}].mine")
    pair_names, inputs = _pair_inputs(run_cfg.pairs)
    settings = {
        "mine": config_to_dict(mine_settings),
        "model": model_key,
        "pairs": list(run_cfg.pairs),
        "data": fingerprint([*inputs, corpus]),
    }

    def run(out: Path, resume: bool) -> dict[str, Any]:
        summary = mine_negatives(model, pair_names, corpus, out / MINED_FILE, mine_settings, progress=False)
        return {"pairs": MINED_FILE, "summary": _jsonable(summary)}

    return settings, run


def retriever_stage(
    run_cfg: RetrieverRun, model: str, model_key: str, seed: int, mined: tuple[Path, str] | None = None
) -> Stage:
    """Contrastive (GTE) training of a bi-encoder from ``model`` (``model_key`` stands for it in the cache key).

    ``mined``: ``(file, key)`` of a mine stage's output, trained on instead of the run's pairs (the stage's key
    stands for the file, which does not exist yet when the plan is built)."""
    from indus.retriever.train import RetrieverTrainConfig

    pair_names, files = ([str(mined[0])], []) if mined else _pair_inputs(run_cfg.pairs)
    data = {"seed": seed, **run_cfg.settings, "model": model, "pairs": pair_names}
    cfg = build_config(RetrieverTrainConfig, data, where=f"retriever[{run_cfg.name}]")
    settings = {
        "config": _without_paths(cfg, "model"),
        "model": model_key,
        "data": [["mined", mined[1]]] if mined else fingerprint(files),
    }

    def run(out: Path, resume: bool) -> dict[str, Any]:
        from indus.retriever.train import train_retriever

        model_dir = out / MODEL_DIR
        summary = train_retriever(cfg, model_dir, resume=resume and model_dir.is_dir(), overwrite=True)
        return {"model": MODEL_DIR, "summary": _jsonable(summary)}

    return settings, run


def retriever_distill_stage(
    run_cfg: RetrieverDistillRun, teacher_dir: Path, student: str, pairs_names: Sequence[str], seed: int
) -> Stage:
    """DistillCSE: a small retriever from a trained one (``student``: a spec, or a folder of an input stage)."""
    from indus.retriever.distill import RetrieverDistillConfig

    pair_names, files = _pair_inputs(pairs_names)
    data = {
        "seed": seed,
        **run_cfg.settings,
        "teacher": str(teacher_dir),
        "student": student,
        "pairs": pair_names,
    }
    cfg = build_config(RetrieverDistillConfig, data, where=f"retriever_distill[{run_cfg.name}]")
    settings = {
        "config": _without_paths(cfg, "teacher", "student"),
        "student": run_cfg.student,
        "data": fingerprint(files),
    }

    def run(out: Path, resume: bool) -> dict[str, Any]:
        from indus.retriever.distill import distill_retriever

        model_dir = out / MODEL_DIR
        summary = distill_retriever(cfg, model_dir, resume=resume and model_dir.is_dir())
        return {"model": MODEL_DIR, "summary": _jsonable(summary)}

    return settings, run


def eval_stage(task: EvalTask, model_spec: str, model_key: str, model_name: str | None = None) -> Stage:
    """One benchmark on one model, through the harness's evaluator contract.

    ``model_key`` stands for the model in the cache key: its spec for a baseline, its name for a model built by the
    run (whose folder is an input stage, already part of the key). ``model_name`` picks the task's ``per_model``
    settings.
    """
    options = validate_settings(task.task, task.settings_for(model_name or model_key), f"eval.tasks[{task.label}]")
    data_path = resolve_dataset(task.data, kind=_DATA_KIND.get(task.task), from_config=True)
    settings = {"task": task.task, "data": fingerprint([data_path]), "settings": _jsonable(options), "model": model_key}

    def run(out: Path, resume: bool) -> dict[str, Any]:
        result = _jsonable(evaluate(task.task, model_spec, data_path, **options).to_json())
        atomic_write_json(out / "result.json", result)
        return {"result": result}

    return settings, run


def latency_stage(model_dir: str, texts: list[str], max_length: int = 128) -> Stage:
    """Median milliseconds to encode one sentence (batch size 1, this machine): the cost side of the trade-off."""
    settings = {"n": len(texts), "max_length": max_length, "texts": _text_hash(texts)}

    def run(out: Path, resume: bool) -> dict[str, Any]:
        return {"ms_per_sentence": encoder_latency_ms(model_dir, texts, max_length)}

    return settings, run


def encoder_latency_ms(model: str, texts: Sequence[str], max_length: int = 128, warmup: int = 3) -> float:
    """Median wall time (ms) of one forward pass per sentence, batch size 1, inference mode."""
    import torch

    tok = load_tokenizer(model)
    net = load_model(model, seed=0).eval()
    encoded = [tok(text, truncation=True, max_length=max_length, return_tensors="pt") for text in texts]
    with torch.inference_mode():
        times = latencies_ms(lambda enc: net(**enc), encoded, warmup=encoded[:warmup])
    return statistics.median(times)


def scaling_stage(n_bootstrap: int) -> Stage:
    """The observational-scaling-law report on the packaged tables."""

    def run(out: Path, resume: bool) -> dict[str, Any]:
        from indus.scaling import write_report

        summary = write_report(out / "scaling", n_bootstrap=n_bootstrap)
        return {"folder": "scaling", "summary": _jsonable(summary)}

    return {"n_bootstrap": n_bootstrap}, run


_DATA_KIND = {"ner": "ner", "qa": "qa", "ir": "ir", "cls": "classification"}


def _fields(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def _text_hash(texts: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(texts).encode()).hexdigest()[:16]


def _jsonable(obj: Any) -> Any:
    """A JSON round trip (NumPy scalars, paths and tuples become plain values)."""
    return json.loads(json.dumps(obj, default=_default))


def _default(v: Any) -> Any:
    if hasattr(v, "item"):
        return v.item()
    if hasattr(v, "tolist"):
        return v.tolist()
    return str(v)
