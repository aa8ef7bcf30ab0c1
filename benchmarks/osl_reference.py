"""Reference fits computed with the authors' own code (``ryoungj/ObsScaling``), for indus's agreement tests.

For every built-in scaling task this runs the authors' ``utils.plot.plot_scaling_predictions`` (with
``compute_metrics_only=True``) on the packaged score tables, with the settings of the authors' notebooks, and writes
what it fitted: the train and test models, the PCA loadings, the fitted coefficients, the MSEs and every model's
prediction, for the capability law and for the log-FLOPs and log-parameters baselines. ``tests/scaling/
test_reference_agreement.py`` compares indus with this file; the tests never need the authors' code.

Run (the authors' code needs statsmodels, seaborn and IPython, which indus does not)::

    pip install --target /tmp/osl-ref-pkgs statsmodels seaborn ipython
    PYTHONPATH=/tmp/osl-ref-pkgs .venv/bin/python benchmarks/osl_reference.py OBSSCALING

``OBSSCALING`` is a checkout of ``ryoungj/ObsScaling`` or its bare git directory (only ``utils/*.py`` is read, with
``git show`` for a bare one). Writes ``tests/scaling/reference/obsscaling_reference.json``.

Where each task's settings come from (``settings_source`` in the output):

- ``gpqa``, ``math-lvl5``, ``bbh-v2``: ``base_llm_leaderboard_v2.ipynb`` (model set, cutoffs, random-guess ranges,
  plain sigmoid, Huber loss with delta 1, PCs without GSM8K);
- ``agentbench``, ``agentboard``: ``instruct_llm_agent_capability.ipynb`` (top 10% by the target held out, floored
  sigmoid by least squares); ``agentboard-progress`` applies the same settings to the progress rate, which the
  notebook does not fit;
- ``gsm8k-*``: ``model_subset_selection_eval.ipynb`` (the post-training setup of the paper's Sec. 5);
  ``bbh`` uses the same settings;
- the emergent tasks: indus's documented settings. The authors' ``base_llm_post_training.ipynb`` and
  ``base_llm_emergent_capability.ipynb`` are not in the mirror this script was run against (their blobs are
  missing), so for ``bbh`` and the emergent tasks the reference checks the implementation, not the settings.
"""

from __future__ import annotations

import argparse
import copy
import importlib
import json
import os
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
TABLES = REPO / "src" / "indus" / "scaling" / "tables"
OUT = REPO / "tests" / "scaling" / "reference" / "obsscaling_reference.json"
UTILS = ("__init__.py", "constants.py", "data.py", "helper.py", "plot.py", "selection.py")

NONGSM = ["MMLU", "ARC-C", "HellaSwag", "Winograd", "TruthfulQA", "XWinograd", "HumanEval"]
ALL8 = ["MMLU", "ARC-C", "HellaSwag", "Winograd", "TruthfulQA", "GSM8K", "XWinograd", "HumanEval"]
INSTRUCT = ["MMLU", "ARC-C", "HellaSwag", "Winogrande", "TruthfulQA", "GSM8K", "HumanEval"]


def _source(root: Path, work: Path) -> tuple[Path, str]:
    """Copy the authors' ``utils`` into ``work`` (from a checkout or a bare git dir); return it and the commit."""
    dest = work / "obsscaling"
    (dest / "utils").mkdir(parents=True)
    bare = not (root / "utils").is_dir()
    git = ["git", f"--git-dir={root}"] if bare else ["git", "-C", str(root)]
    for name in UTILS:
        if bare:
            text = subprocess.run(
                [*git, "show", f"HEAD:utils/{name}"], check=True, capture_output=True, text=True
            ).stdout
        else:
            text = (root / "utils" / name).read_text(encoding="utf-8")
        (dest / "utils" / name).write_text(text, encoding="utf-8")
    try:
        commit = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    except (subprocess.CalledProcessError, FileNotFoundError):
        commit = "unknown"
    (dest / "eval_results").symlink_to(TABLES)  # their loaders read ./eval_results/*.csv; the bytes are identical
    return dest, commit


def _settings(u: Any) -> dict[str, dict[str, Any]]:
    """Each task: the data it is fitted on (a function of the authors' module) and the notebook's keyword arguments."""
    import pandas as pd

    def base(only_eval: bool = True, prereg: bool = False) -> pd.DataFrame:
        return u.load_base_llm_benchmark_eval(only_eval_model_family=only_eval, load_preregistered_models=prereg)

    def merged(frame: pd.DataFrame, table: str) -> pd.DataFrame:
        return pd.merge(frame, pd.read_csv(f"./eval_results/{table}"), on="Model")

    def pca(metrics: list[str]) -> dict[str, Any]:
        kw = copy.deepcopy(u.DEFAULT_PCA_PREPROCESS_KWARGS)
        kw["imputation_metrics"] = list(metrics)
        kw["pca_metrics"] = list(metrics)
        return kw

    tasks: dict[str, dict[str, Any]] = {}

    # model_subset_selection_eval.ipynb: SCALING_SETUP_KWARGS (post-training, GSM8K as the target)
    post = {
        **pca(NONGSM),
        "split_method": "cutoff_by_FLOPs (1E21)",
        "cutoff_threshold": 84,
        "nonlinearity": "sigmoid-parametric",
        "df_filter": lambda x: x["Model Family"].isin(u.EVAL_BASE_MODEL_FAMILIES),
        "reg_method": "robust",
        "reg_kwargs": {"delta": 1.0},
    }
    post["pca_kwargs"]["n_components"] = 3
    for name, col in (
        ("gsm8k-naive", "gsm8k_5_exact_match,flexible-extract"),
        ("gsm8k-cot", "gsm8k_cot_8_exact_match,flexible-extract"),
        ("gsm8k-cot-sc", "gsm8k_cot_self_consistency_8_exact_match,maj@5-flexible-extract"),
        ("bbh", "bbh_cot_fewshot_overall_3_exact_match,flexible-extract"),
    ):
        tasks[name] = {
            "data": lambda: merged(base(), "base_llm_post_training_eval.csv"),
            "y": col,
            "kwargs": post,
            "settings_source": (
                "model_subset_selection_eval.ipynb"
                if name != "bbh"
                else "model_subset_selection_eval.ipynb settings applied to BBH "
                "(base_llm_post_training.ipynb not available)"
            ),
        }

    # emergent: indus's documented settings (base_llm_emergent_capability.ipynb not available)
    with_flops = u.EVAL_BASE_MODEL_WITH_FLOPS_FAMILIES
    emergent = {
        "split_method": "cutoff_by_FLOPs (1E21)",
        "nonlinearity": "sigmoid-parametric",
        "reg_method": "ols",
        "df_filter": lambda x: x["Model Family"].isin(with_flops),
    }
    for name, col, metrics, cutoff, lo in (
        ("word-unscramble", "word_unscrambling_2_exact_match", ALL8, 84, 0.0),
        ("persian-qa", "parsinlu_qa_2_acc", ALL8, 84, 0.25),
        ("arith-2da", "arithmetic_2da_2_acc", NONGSM, 22, 0.0),
        ("arith-2dm", "arithmetic_2dm_2_acc", NONGSM, 22, 0.0),
        ("arith-3da", "arithmetic_3da_2_acc", NONGSM, 22, 0.0),
        ("arith-3ds", "arithmetic_3ds_2_acc", NONGSM, 22, 0.0),
    ):
        kw = {
            **emergent,
            **pca(metrics),
            "cutoff_threshold": cutoff,
            "y_metric_process_funcs": "minmax_norm",
            "y_metric_range": (lo, 1.0),
        }
        tasks[name] = {
            "data": lambda: merged(base(), "base_llm_emergent_capability_eval.csv"),
            "y": col,
            "kwargs": kw,
            "settings_source": "indus's settings (base_llm_emergent_capability.ipynb not available)",
        }

    # instruct_llm_agent_capability.ipynb: AGENT_SETUP_KWARGS and filter_eval_df
    agent = {
        **pca(INSTRUCT),
        "nonlinearity": "sigmoid-parametric",
        "split_method": "rank_by_y_metric",
        "test_limit": 0.1,
        "ref_model_family": "Llama-2-Chat",
        "reg_method": "ols",
    }

    def agents(keep: str, new: str, src: str, scale: float) -> Callable[[], pd.DataFrame]:
        def load() -> pd.DataFrame:
            frame = merged(u.load_instruct_llm_benchmark_eval(), "instruct_llm_agent_eval.csv")
            frame = frame[frame[keep].notna()].sort_values(keep, ascending=False).copy()
            frame[new] = frame[src] / scale
            return frame

        return load

    tasks["agentbench"] = {
        "data": agents("ABench-OA", "Overall Score", "ABench-OA", 1.0),
        "y": "Overall Score",
        "kwargs": {**agent, "y_metric_process_funcs": "minmax_norm", "y_metric_range": [0.0, 10.0]},
        "settings_source": "instruct_llm_agent_capability.ipynb",
    }
    tasks["agentboard"] = {
        "data": agents("ABoard-Avg_PR", "Average Success Rate", "ABoard-Avg_SR", 100.0),
        "y": "Average Success Rate",
        "kwargs": agent,
        "settings_source": "instruct_llm_agent_capability.ipynb",
    }
    tasks["agentboard-progress"] = {
        "data": agents("ABoard-Avg_PR", "Average Progress Rate", "ABoard-Avg_PR", 100.0),
        "y": "Average Progress Rate",
        "kwargs": agent,
        "settings_source": "instruct_llm_agent_capability.ipynb settings applied to the "
        "progress rate (the notebook fits the success rate only)",
    }

    # base_llm_leaderboard_v2.ipynb: LEADERBOARD_V2_DEFAULT_SETUP_KWARGS, RANDOM_VAL_MAP, CUTOFF_THRESHOLD_MAP, and
    # plot_multi_scaling_predictions(..., filter_model_family=EVAL_BASE_MODEL_WITH_FLOPS_FAMILIES)
    bbh_random = sum(u.BBH_SUBTASKS2RANDOM_VAL.values()) / len(u.BBH_SUBTASKS2RANDOM_VAL)
    lb = {
        "y_metric_process_funcs": "minmax_norm",
        "reg_method": "robust",
        "reg_kwargs": {"delta": 1.0},
        "split_method": "cutoff_by_FLOPs (1E21)",
        **pca(NONGSM),
    }

    def leaderboard() -> pd.DataFrame:
        frame = merged(base(only_eval=False, prereg=True), "base_llm_leaderboard_v2_eval.csv")
        return frame[frame["Model Family"].isin(with_flops)]

    for name, col, lo, cutoff in (
        ("gpqa", "leaderboard_gpqa", 0.25, 168),
        ("math-lvl5", "leaderboard_math_hard", 0.0, 252),
        ("bbh-v2", "leaderboard_bbh", bbh_random, 84),
    ):
        tasks[name] = {
            "data": leaderboard,
            "y": col,
            "kwargs": {**lb, "y_metric_range": (lo, 1.0), "cutoff_threshold": cutoff},
            "settings_source": "base_llm_leaderboard_v2.ipynb",
        }
    return tasks


def _fit(
    plot_mod: Any, frame: Any, y: str, kwargs: dict[str, Any], x_metrics: list[str], log_x: bool
) -> dict[str, Any]:
    """One call of the authors' ``plot_scaling_predictions``; the split and PCA it used are recorded on the way."""
    seen: dict[str, Any] = {}
    split, preprocess = plot_mod.split_data, plot_mod.pca_preprocess_data

    def record_split(*a: Any, **k: Any) -> Any:
        train, test = split(*a, **k)
        seen["train"], seen["test"] = list(train["Model"]), [] if test is None else list(test["Model"])
        return train, test

    def record_pca(*a: Any, **k: Any) -> Any:
        train, test, pca = preprocess(*a, **k)
        seen["pca"] = pca
        return train, test, pca

    plot_mod.split_data, plot_mod.pca_preprocess_data = record_split, record_pca
    try:
        extra = {"x_metrics_process_funcs": ["log"]} if log_x else {}
        metrics, fit, all_df, _ = plot_mod.plot_scaling_predictions(
            frame,
            x_metrics,
            y,
            compute_metrics_only=True,
            transform_x_to_equiv_scale=False,
            plot_legend=False,
            **kwargs,
            **extra,
        )
    finally:
        plot_mod.split_data, plot_mod.pca_preprocess_data = split, preprocess
    names = [f"Log$_{{10}}$({m})" for m in x_metrics] if log_x else list(x_metrics)
    pred = fit["fit_func"](all_df[names].values)
    popt = np.asarray(fit["popt"], dtype=float)
    floor = 0.0 if fit["nonlinear_params"] is None else float(fit["nonlinear_params"][1])
    out = {
        "intercept": float(popt[0]),
        "coef": [float(v) for v in popt[1:]],
        "floor": floor,
        "train_mse": float(metrics["mse_train"]),
        "test_mse": _num(metrics.get("mse_test")),
        # the models this predictor was fitted and scored on (a baseline drops those without compute)
        "train": sorted(m for m in all_df["Model"] if m not in set(seen["test"])),
        "test": sorted(m for m in all_df["Model"] if m in set(seen["test"])),
        "predictions": {m: float(p) for m, p in zip(all_df["Model"], pred, strict=True)},
    }
    if not log_x:
        out["split"] = {"train": sorted(seen["train"]), "test": sorted(seen["test"])}
        out["pca_components"] = np.asarray(seen["pca"].components_[: len(x_metrics)], dtype=float).tolist()
        out["pca_metrics"] = list(kwargs["pca_metrics"])
    return out


def _num(v: object) -> float | None:
    return None if v is None else float(v)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("obsscaling", type=Path, help="checkout or bare git directory of ryoungj/ObsScaling")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    import matplotlib

    matplotlib.use("Agg")
    with tempfile.TemporaryDirectory() as tmp:
        src, commit = _source(args.obsscaling.resolve(), Path(tmp))
        os.chdir(src)
        sys.path.insert(0, str(src))
        u = importlib.import_module("utils")
        plot_mod = importlib.import_module("utils.plot")
        tasks = {}
        for name, spec in _settings(u).items():
            frame = spec["data"]()
            kwargs = copy.deepcopy(spec["kwargs"])
            entry: dict[str, Any] = {
                "settings_source": spec["settings_source"],
                "target": spec["y"],
                "nonlinearity": kwargs["nonlinearity"] if "nonlinearity" in kwargs else "sigmoid",
                "reg_method": kwargs["reg_method"],
            }
            entry["pcs"] = _fit(plot_mod, frame, spec["y"], kwargs, ["PC-1", "PC-2", "PC-3"], False)
            if spec["kwargs"].get("ref_model_family", "Llama-2") == "Llama-2":  # no compute baselines for agents
                entry["flops"] = _fit(plot_mod, frame, spec["y"], kwargs, ["FLOPs (1E21)"], True)
                entry["params"] = _fit(plot_mod, frame, spec["y"], kwargs, ["Model Size (B)"], True)
            tasks[name] = entry
            print(
                f"{name:20s} {len(entry['pcs']['split']['train']):3d} / {len(entry['pcs']['split']['test']):3d}  "
                f"PC test MSE {entry['pcs']['test_mse']:.3g}"
                + (f"  FLOPs {entry['flops']['test_mse']:.3g}" if "flops" in entry else "")
            )
    import pandas
    import scipy
    import sklearn
    import statsmodels

    doc = {
        "source": {
            "repository": "ryoungj/ObsScaling",
            "commit": commit,
            "function": "utils.plot.plot_scaling_predictions(..., compute_metrics_only=True)",
        },
        "versions": {
            "python": sys.version.split()[0],
            "numpy": np.__version__,
            "scipy": scipy.__version__,
            "scikit-learn": sklearn.__version__,
            "pandas": pandas.__version__,
            "statsmodels": statsmodels.__version__,
        },
        "command": "PYTHONPATH=<statsmodels, seaborn, ipython> python benchmarks/osl_reference.py OBSSCALING",
        "tasks": tasks,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1, sort_keys=False) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
