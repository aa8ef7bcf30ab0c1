"""The paper's experiments as built-in tasks with stable names (arXiv 2405.10938, Sec. 4 and App. C).

Every task names a target column of one of the packaged tables, the benchmarks its capabilities are built from, the
models it covers, how they are split and the link's floor. The settings follow the authors' released notebooks
(``ryoungj/ObsScaling``); ``tests/scaling/test_reference_agreement.py`` checks splits and fits against the authors'
code (``benchmarks/osl_reference.py``):

- **Default base-model set**: the model families the authors evaluated, minus the models they pre-registered after
  the paper (released after May 2024): 77 models. Train on models with at most 8.4E22 training FLOPs (Llama-2-7B);
  everything else, including models without published FLOPs, is a test model: 47 / 30.
- **Post-training** (GSM8K naive / CoT / CoT + self-consistency, BBH with CoT): capabilities from the seven benchmarks
  without GSM8K (a GSM8K score must not predict GSM8K); floored sigmoid (``model_subset_selection_eval.ipynb``).
- **Emergent** (BIG-bench): the default set minus Mistral/Mixtral (no published FLOPs); word unscrambling and Persian
  QA use all eight benchmarks; arithmetic drops GSM8K and trains only below 2.2E22 FLOPs (about a quarter of
  Llama-2-7B). Persian QA is 4-way multiple choice: its metric range starts at 0.25.
- **Agents** (instruction-tuned models): AgentBench overall score on a 0-10 scale, and AgentBoard's average success
  rate in percent (``agentboard``, the notebook's target) or its progress rate (``agentboard-progress``, beyond the
  notebook); the top 10% of models by the target are held out; effective compute is relative to Llama-2-Chat.
- **Open LLM Leaderboard v2** (GPQA, MATH Lvl 5, BBH; ``base_llm_leaderboard_v2.ipynb``): the base models of the
  families with published FLOPs (``EVAL_BASE_MODEL_WITH_FLOPS_FAMILIES``: no Mistral, Mixtral or Qwen2), pre-registered
  models included (47), with the authors' per-task cutoffs (Qwen1.5-7B, Gemma-7B and Llama-2-7B compute) and
  random-guess ranges, and a plain sigmoid (no floor) for the law and its compute baselines.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from indus.errors import DataFormatError, IndusError
from indus.scaling.holdout import TARGET, ScalingData
from indus.scaling.scores import (
    BASE_BENCHMARKS,
    BASE_SCORES,
    FAMILY,
    FLOPS,
    ID_COLUMNS,
    INSTRUCT_BENCHMARKS,
    INSTRUCT_SCORES,
    MODEL,
    benchmark_columns,
    load_builtin,
    read_scores,
    read_table,
    require_columns,
)

NONGSM_BENCHMARKS: tuple[str, ...] = tuple(b for b in BASE_BENCHMARKS if b != "GSM8K")

# The families of the paper's evaluated base models (``EVAL_BASE_MODEL_FAMILIES`` at the time of the paper).
PAPER_FAMILIES: tuple[str, ...] = (
    "Llama-2",
    "Llama",
    "Llama-3",
    "Qwen1.5",
    "Qwen",
    "Mistral",
    "Mixtral",
    "Yi",
    "Gemma",
    "Falcon",
    "Phi",
    "Pythia",
    "BLOOM",
    "GPT-Neo/J",
    "OPT",
    "MPT",
    "XGLM",
    "CodeLlama",
    "StarCoder",
    "StarCoder2",
    "DeepSeek-Coder",
)
# Families added to ``EVAL_BASE_MODEL_FAMILIES`` with the pre-registered models (all their models are pre-registered).
PREREGISTERED_FAMILIES: tuple[str, ...] = (
    "Llama-3.1",
    "Qwen2",
    "Yi-1.5",
    "Gemma-2",
    "DeepSeek-V2",
    "DeepSeek-Coder-V2",
    "Jamba",
)
# Models released after the paper (May 2024) whose scores the authors pre-registered and added later.
PREREGISTERED_MODELS: tuple[str, ...] = (
    "meta-llama/Meta-Llama-3.1-405B-FP8",
    "meta-llama/Meta-Llama-3.1-70B",
    "meta-llama/Meta-Llama-3.1-8B",
    "Qwen/Qwen1.5-110B",
    "Qwen/Qwen2-72B",
    "Qwen/Qwen2-57B-A14B",
    "Qwen/Qwen2-7B",
    "Qwen/Qwen2-1.5B",
    "Qwen/Qwen2-0.5B",
    "deepseek-ai/DeepSeek-V2",
    "deepseek-ai/DeepSeek-Coder-V2-Base",
    "google/gemma-2-27b",
    "google/gemma-2-9b",
    "google/gemma-2-2b",
    "mistralai/Mixtral-8x22B-v0.1",
    "mistralai/Mistral-Nemo-Base-2407",
    "01-ai/Yi-1.5-34B",
    "01-ai/Yi-1.5-9B",
    "01-ai/Yi-1.5-6B",
    "ai21labs/Jamba-v0.1",
)
# Evaluated families without published training FLOPs (removed from ``EVAL_BASE_MODEL_WITH_FLOPS_FAMILIES``).
NO_FLOPS_FAMILIES: tuple[str, ...] = ("Mistral", "Mixtral", "Qwen2")
LLAMA2_7B_FLOPS = 84.0  # 8.4E22 FLOPs in the tables' unit of 1E21
# Random-guess accuracy of each BIG-Bench Hard subtask (the authors' constants); their mean is BBH's floor.
_BBH_RANDOM = (
    1 / 2,
    1 / 2,
    1 / 6,
    1 / 3,
    0,
    1 / 2,
    1 / 9,
    1 / 2,
    1 / 5,
    1 / 7,
    1 / 3,
    1 / 5,
    0,
    1 / 2,
    0,
    1 / 5,
    1 / 18,
    1 / 4,
    1 / 6,
    1 / 2,
    1 / 2,
    1 / 4,
    1 / 5,
    1 / 7,
    1 / 3,
    1 / 2,
    0,
)
BBH_RANDOM = sum(_BBH_RANDOM) / len(_BBH_RANDOM)

MODEL_SETS = ("default", "default-with-flops", "with-flops-and-preregistered", "all")
PAPER_FLOOR = (0.0, 0.2)  # the floor b of Y = (1 - b) sigmoid(.) + b, as the authors' "sigmoid-parametric" bounds it
NO_FLOOR = (0.0, 0.0)  # a plain sigmoid (the authors' "sigmoid")


@dataclass(frozen=True)
class Task:
    """A built-in forecasting task.

    Attributes
    ----------
    name
        Stable identifier used by the CLI and scripts.
    title
        Human-readable name.
    group
        ``post-training``, ``emergent``, ``agents`` or ``leaderboard-v2``.
    target
        Column of ``targets_table``.
    targets_table, scores_table
        Packaged CSV files.
    benchmarks
        Columns of ``scores_table`` the capabilities are built from.
    model_set
        ``default`` (the paper's 77 base models), ``default-with-flops`` (without Mistral/Mixtral),
        ``with-flops-and-preregistered`` (every model of the evaluated families with published FLOPs, pre-registered
        ones included), or ``all``; see :func:`default_models`.
    split
        ``cutoff`` (train on models with FLOPs <= ``cutoff``) or ``top-fraction`` (hold out the best
        ``top_fraction`` by the target).
    cutoff
        Training FLOPs cutoff, in units of 1E21 FLOPs.
    top_fraction
        Share of models held out for ``top-fraction`` splits.
    metric_range
        Raw metric values mapped to 0 and 1 (random-guess floor, perfect score).
    reference_family
        Family whose compute defines effective compute.
    floor_bounds
        Bounds of the link's floor ``b``, for the capability law and its compute baselines alike: ``(0, 0.2)`` (the
        authors' ``sigmoid-parametric``) or ``(0, 0)`` (a plain sigmoid, their ``sigmoid``).
    """

    name: str
    title: str
    group: str
    target: str
    targets_table: str
    scores_table: str = BASE_SCORES
    benchmarks: tuple[str, ...] = BASE_BENCHMARKS
    model_set: str = "default"
    split: str = "cutoff"
    cutoff: float = LLAMA2_7B_FLOPS
    top_fraction: float = 0.1
    metric_range: tuple[float, float] = (0.0, 1.0)
    reference_family: str = "Llama-2"
    floor_bounds: tuple[float, float] = PAPER_FLOOR

    def describe(self, cutoff: float | None = None) -> str:
        """The split in words (``cutoff`` overrides the task's, in 1E21 FLOPs)."""
        if self.split == "cutoff":
            return f"train on FLOPs <= {(self.cutoff if cutoff is None else cutoff) * 1e21:.2g}"
        return f"hold out the top {self.top_fraction:.0%} by the target"


_POST = "base_llm_post_training_eval.csv"
_EMERGENT = "base_llm_emergent_capability_eval.csv"
_AGENTS = "instruct_llm_agent_eval.csv"
_LBV2 = "base_llm_leaderboard_v2_eval.csv"

_TASK_LIST: tuple[Task, ...] = (
    Task(
        "gsm8k-naive",
        "GSM8K, naive 5-shot",
        "post-training",
        "gsm8k_5_exact_match,flexible-extract",
        _POST,
        benchmarks=NONGSM_BENCHMARKS,
    ),
    Task(
        "gsm8k-cot",
        "GSM8K, chain-of-thought 8-shot",
        "post-training",
        "gsm8k_cot_8_exact_match,flexible-extract",
        _POST,
        benchmarks=NONGSM_BENCHMARKS,
    ),
    Task(
        "gsm8k-cot-sc",
        "GSM8K, CoT + self-consistency (maj@5)",
        "post-training",
        "gsm8k_cot_self_consistency_8_exact_match,maj@5-flexible-extract",
        _POST,
        benchmarks=NONGSM_BENCHMARKS,
    ),
    Task(
        "bbh",
        "BIG-Bench Hard, CoT 3-shot",
        "post-training",
        "bbh_cot_fewshot_overall_3_exact_match,flexible-extract",
        _POST,
        benchmarks=NONGSM_BENCHMARKS,
    ),
    Task(
        "word-unscramble",
        "Word unscrambling (BIG-bench)",
        "emergent",
        "word_unscrambling_2_exact_match",
        _EMERGENT,
        model_set="default-with-flops",
    ),
    Task(
        "persian-qa",
        "Persian QA (BIG-bench)",
        "emergent",
        "parsinlu_qa_2_acc",
        _EMERGENT,
        model_set="default-with-flops",
        metric_range=(0.25, 1.0),
    ),
    Task(
        "arith-2da",
        "2-digit addition (BIG-bench)",
        "emergent",
        "arithmetic_2da_2_acc",
        _EMERGENT,
        benchmarks=NONGSM_BENCHMARKS,
        model_set="default-with-flops",
        cutoff=22.0,
    ),
    Task(
        "arith-2dm",
        "2-digit multiplication (BIG-bench)",
        "emergent",
        "arithmetic_2dm_2_acc",
        _EMERGENT,
        benchmarks=NONGSM_BENCHMARKS,
        model_set="default-with-flops",
        cutoff=22.0,
    ),
    Task(
        "arith-3da",
        "3-digit addition (BIG-bench)",
        "emergent",
        "arithmetic_3da_2_acc",
        _EMERGENT,
        benchmarks=NONGSM_BENCHMARKS,
        model_set="default-with-flops",
        cutoff=22.0,
    ),
    Task(
        "arith-3ds",
        "3-digit subtraction (BIG-bench)",
        "emergent",
        "arithmetic_3ds_2_acc",
        _EMERGENT,
        benchmarks=NONGSM_BENCHMARKS,
        model_set="default-with-flops",
        cutoff=22.0,
    ),
    Task(
        "agentbench",
        "AgentBench overall score",
        "agents",
        "ABench-OA",
        _AGENTS,
        scores_table=INSTRUCT_SCORES,
        benchmarks=INSTRUCT_BENCHMARKS,
        model_set="all",
        split="top-fraction",
        metric_range=(0.0, 10.0),
        reference_family="Llama-2-Chat",
    ),
    Task(
        "agentboard",
        "AgentBoard average success rate",
        "agents",
        "ABoard-Avg_SR",
        _AGENTS,
        scores_table=INSTRUCT_SCORES,
        benchmarks=INSTRUCT_BENCHMARKS,
        model_set="all",
        split="top-fraction",
        metric_range=(0.0, 100.0),
        reference_family="Llama-2-Chat",
    ),
    # beyond the notebook, which fits the success rate: AgentBoard's progress rate, same settings
    Task(
        "agentboard-progress",
        "AgentBoard average progress rate",
        "agents",
        "ABoard-Avg_PR",
        _AGENTS,
        scores_table=INSTRUCT_SCORES,
        benchmarks=INSTRUCT_BENCHMARKS,
        model_set="all",
        split="top-fraction",
        metric_range=(0.0, 100.0),
        reference_family="Llama-2-Chat",
    ),
    Task(
        "gpqa",
        "GPQA (Open LLM Leaderboard v2)",
        "leaderboard-v2",
        "leaderboard_gpqa",
        _LBV2,
        benchmarks=NONGSM_BENCHMARKS,
        model_set="with-flops-and-preregistered",
        cutoff=168.0,
        metric_range=(0.25, 1.0),
        floor_bounds=NO_FLOOR,
    ),
    Task(
        "math-lvl5",
        "MATH Lvl 5 (Open LLM Leaderboard v2)",
        "leaderboard-v2",
        "leaderboard_math_hard",
        _LBV2,
        benchmarks=NONGSM_BENCHMARKS,
        model_set="with-flops-and-preregistered",
        cutoff=252.0,
        floor_bounds=NO_FLOOR,
    ),
    Task(
        "bbh-v2",
        "BBH (Open LLM Leaderboard v2)",
        "leaderboard-v2",
        "leaderboard_bbh",
        _LBV2,
        benchmarks=NONGSM_BENCHMARKS,
        model_set="with-flops-and-preregistered",
        cutoff=LLAMA2_7B_FLOPS,
        metric_range=(BBH_RANDOM, 1.0),
        floor_bounds=NO_FLOOR,
    ),
)
TASKS: dict[str, Task] = {t.name: t for t in _TASK_LIST}


def get_task(name: str) -> Task:
    """A built-in task by name (one-line error listing the names otherwise)."""
    try:
        return TASKS[name]
    except KeyError:
        raise IndusError(f"unknown task {name!r}; built-in tasks: {', '.join(TASKS)}") from None


def default_models(scores: pd.DataFrame, model_set: str = "default") -> pd.DataFrame:
    """Rows of a base-model scores table in one of the paper's model sets.

    ``default``: the evaluated families without the pre-registered models (77 models in the packaged table; the
    authors' ``load_base_llm_benchmark_eval()``); ``default-with-flops``: the same without Mistral and Mixtral;
    ``with-flops-and-preregistered``: every model of the evaluated families with published FLOPs, pre-registered
    ones included (the authors' leaderboard-v2 set: ``load_base_llm_benchmark_eval(False, True)`` filtered to
    ``EVAL_BASE_MODEL_WITH_FLOPS_FAMILIES``); ``all``: every row.
    """
    if model_set not in MODEL_SETS:
        raise IndusError(f"unknown model set {model_set!r}; choose from {', '.join(MODEL_SETS)}")
    if model_set == "all":
        return scores.reset_index(drop=True)
    families = set(PAPER_FAMILIES) | set(PREREGISTERED_FAMILIES)
    if model_set != "default":
        families -= set(NO_FLOPS_FAMILIES)
    keep = scores[FAMILY].isin(families)
    if model_set != "with-flops-and-preregistered":
        keep &= ~scores[MODEL].isin(PREREGISTERED_MODELS)
    return scores.loc[keep].reset_index(drop=True)


def split_mask(
    frame: pd.DataFrame, split: str, *, cutoff: float | None = None, top_fraction: float = 0.1, target: str = TARGET
) -> np.ndarray:
    """Training-model mask for a split.

    ``cutoff``: models with ``FLOPs (1E21) <= cutoff`` train; unknown FLOPs go to test.
    ``top-fraction``: the ``int(top_fraction * n)`` models with the highest target are test models (at least one).
    """
    if split == "cutoff":
        if FLOPS not in frame:
            raise IndusError(f"a FLOPs cutoff needs the {FLOPS!r} column")
        flops = frame[FLOPS].to_numpy(dtype=float)
        return np.nan_to_num(flops, nan=np.inf) <= cutoff
    if split == "top-fraction":
        n_test = max(1, int(top_fraction * len(frame)))
        order = np.argsort(-frame[target].to_numpy(dtype=float), kind="stable")
        train = np.ones(len(frame), dtype=bool)
        train[order[:n_test]] = False
        return train
    raise IndusError(f"unknown split {split!r}; use 'cutoff' or 'top-fraction'")


def normalise(raw: np.ndarray, metric_range: tuple[float, float]) -> np.ndarray:
    """Map raw metric values so that ``metric_range`` becomes (0, 1) (the authors' ``minmax_norm``)."""
    lo, hi = metric_range
    if hi <= lo:
        raise IndusError(f"metric range must have high > low, got {metric_range}")
    return (np.asarray(raw, dtype=float) - lo) / (hi - lo)


def load_task(task: Task | str, *, cutoff: float | None = None) -> ScalingData:
    """The models, capabilities' benchmarks, target and split of a built-in task.

    Parameters
    ----------
    task
        A :class:`Task` or its name.
    cutoff
        Override the task's FLOPs cutoff (1E21 units) for ``cutoff`` splits.
    """
    task = get_task(task) if isinstance(task, str) else task
    scores = load_builtin(task.scores_table)
    if task.scores_table == BASE_SCORES:
        scores = default_models(scores, task.model_set)
    targets = load_builtin(task.targets_table)[[MODEL, task.target]]
    frame = scores.merge(targets, on=MODEL, how="inner", validate="one_to_one")
    frame = frame.dropna(subset=[task.target]).reset_index(drop=True)
    frame[TARGET] = normalise(frame[task.target].to_numpy(), task.metric_range)
    cut = task.cutoff if cutoff is None else cutoff
    train = split_mask(frame, task.split, cutoff=cut, top_fraction=task.top_fraction)
    return ScalingData(
        task.name,
        frame,
        list(task.benchmarks),
        train,
        task.reference_family,
        task.metric_range,
        task.describe(cut),
        task.floor_bounds,
    )


def load_user_task(
    scores: str | Path,
    target: str,
    targets: str | Path | None = None,
    *,
    cutoff: float = LLAMA2_7B_FLOPS,
    drop_benchmarks: Sequence[str] = (),
    metric_range: tuple[float, float] = (0.0, 1.0),
    reference_family: str | None = "Llama-2",
    floor_bounds: tuple[float, float] = PAPER_FLOOR,
) -> ScalingData:
    """A user's scores (and targets) table as a holdout task, with one-line errors naming the file.

    Parameters
    ----------
    scores
        CSV with ``Model``, ``Model Family``, ``FLOPs (1E21)`` (other id columns optional) and benchmark columns.
    target
        Target column, in ``targets`` if given, else in ``scores`` (where it is then not a benchmark).
    targets
        CSV with ``Model`` and the target column; rows are matched to ``scores`` by model name.
    cutoff
        Train on models with ``FLOPs (1E21) <= cutoff``; models without FLOPs are test models.
    drop_benchmarks
        Benchmark columns to leave out of the capabilities (e.g. ``GSM8K`` when forecasting a GSM8K variant).
    metric_range
        Raw target values mapped to 0 and 1.
    reference_family
        Family defining effective compute (ignored when absent from the table).
    floor_bounds
        Bounds of the link's floor (``(0, 0)``: a plain sigmoid).
    """
    scores = Path(scores)
    raw = read_table(scores)
    for col in (MODEL, FAMILY, FLOPS):
        if col not in raw.columns:
            raise DataFormatError(scores, 1, f"a {col!r} column (schema: {', '.join(ID_COLUMNS)}, benchmarks...)")
    if targets is None:
        require_columns(raw, [target], scores, "target column")
    candidates = benchmark_columns(raw, exclude=[target])  # the target never predicts itself
    require_columns(raw[candidates], drop_benchmarks, scores, "benchmark column")
    benchmarks = [c for c in candidates if c not in set(drop_benchmarks)]
    frame, benchmarks = read_scores(scores, benchmarks=benchmarks)
    if targets is not None:
        targets = Path(targets)
        table = read_table(targets)
        require_columns(table, [target], targets, "target column")
        if target in frame.columns:
            frame = frame.drop(columns=[target])
        frame = frame.merge(table[[MODEL, target]], on=MODEL, how="inner")
        if frame.empty:
            raise IndusError(f"{targets}: no model name matches a row of {scores}")
    frame = frame.dropna(subset=[target]).reset_index(drop=True)
    if frame.empty:
        raise IndusError(f"no model has a value for {target!r}")
    frame[TARGET] = normalise(frame[target].to_numpy(), metric_range)
    train = split_mask(frame, "cutoff", cutoff=cutoff)
    if not train.any():
        raise IndusError(
            f"{scores}: no model with a target has at most {cutoff * 1e21:.2g} training FLOPs, so "
            "nothing to fit on; raise --cutoff-flops"
        )
    ref = reference_family if reference_family in set(frame[FAMILY].dropna()) else None
    return ScalingData(
        target, frame, benchmarks, train, ref, metric_range, f"train on FLOPs <= {cutoff * 1e21:.2g}", floor_bounds
    )
