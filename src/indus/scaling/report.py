"""Every built-in task in one report: a markdown table, a JSON summary and the paper's figures as PNG.

``write_report(out_dir)`` is the entry point the pipeline calls; ``indus scaling report OUT_DIR`` is its CLI. It runs
in a few seconds on one CPU core: 15 holdout fits with 100 bootstrap rounds each, one PCA, and a selection curve.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from indus.atomic import atomic_write_json, atomic_write_text
from indus.scaling.families import CapabilityAnalysis, pca_analysis
from indus.scaling.holdout import TARGET, HoldoutResult, fit_holdout
from indus.scaling.plots import plot_pc1_vs_flops, plot_predictions_grid, plot_selection
from indus.scaling.scores import BASE_BENCHMARKS, BASE_SCORES, FLOPS, load_builtin
from indus.scaling.selection import SelectionPoint, selection_curve
from indus.scaling.tasks import TASKS, default_models, load_task

DEFAULT_BUDGETS = (4, 8, 12, 16, 20, 24)


def coverage(result: HoldoutResult) -> float | None:
    """Share of test models whose observed value lies inside its bootstrap interval."""
    f = result.frame[result.frame["split"] == "test"]
    ok = np.isfinite(f["lo"]) & np.isfinite(f["hi"])
    if not ok.any():
        return None
    inside = (f.loc[ok, TARGET] >= f.loc[ok, "lo"]) & (f.loc[ok, TARGET] <= f.loc[ok, "hi"])
    return float(inside.mean())


def task_summary(result: HoldoutResult) -> dict[str, object]:
    """One row of the report for a holdout fit."""
    task = TASKS.get(result.data.name)
    return {
        "task": result.data.name,
        "group": task.group if task else "custom",
        "title": task.title if task else "",
        "split": result.data.description,
        "n_train": int(result.data.train.sum()),
        "n_test": int(result.data.test.sum()),
        "pcs_test_mse": result.pcs_test_mse,
        "flops_test_mse": result.flops_test_mse,
        "params_test_mse": result.params_test_mse,
        "pcs_test_mse_known_compute": result.pcs_test_mse_known_compute,
        "n_test_known_compute": result.n_test_known_compute,
        "coverage": coverage(result),
        "formula": result.formula(),
        "coef": [float(c) for c in result.law.coef_],
        "intercept": float(result.law.intercept_),
        "floor": float(result.law.floor_),
        "explained_variance_ratio": [float(v) for v in result.law.explained_variance_ratio_],
    }


def _e(v: object) -> str:
    return "n/a" if v is None or (isinstance(v, float) and not np.isfinite(v)) else f"{v:.2e}"


def _markdown(
    analysis: CapabilityAnalysis,
    rows: list[dict[str, object]],
    points: Sequence[SelectionPoint],
    all_mse: float | None,
    selection_task: str,
    files: dict[str, str],
    command: str,
) -> str:
    evr = analysis.explained_variance_ratio
    n_fam = len({f for f in analysis.families if f is not None})
    lines = [
        "# Observational scaling laws: built-in tasks",
        "",
        "Reproduction of arXiv 2405.10938 on the packaged score tables, with the settings of the authors' notebooks "
        f"(`ryoungj/ObsScaling`). Command: `{command}`. Nothing here is timed: the numbers depend on these settings "
        "only, not on the machine.",
        "",
        f"## Capability PCs: default base-model set ({len(analysis.models)} models, {n_fam} families, "
        f"{len(analysis.benchmarks)} benchmarks)",
        "",
        "| PC | variance explained | cumulative |",
        "|---|---|---|",
    ]
    for k, v in enumerate(evr[:5]):
        lines.append(f"| PC-{k + 1} | {v:.1%} | {sum(evr[: k + 1]):.1%} |")
    r2 = [f.r2 for f in analysis.fits if f.pc == 1]
    if r2:
        lines += [
            "",
            f"Within-family fits of PC-1 on log FLOPs ({len(r2)} families with >= 3 models): median "
            f"R^2 {np.median(r2):.3f}, minimum {min(r2):.3f}.",
        ]
    lines += [
        "",
        "## Held-out forecasts",
        "",
        "Test MSE on the normalised target. The FLOPs and parameter baselines are scored on the test models whose "
        "compute is known; `PC, same models` is the capability law on that same subset. Coverage: share of test "
        "models inside their 90% bootstrap interval.",
        "",
        "| group | task | split | train / test | PC test MSE | FLOPs test MSE | params test MSE | PC, same models "
        "| 90% PI coverage | fitted law |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        cov = "n/a" if r["coverage"] is None else f"{r['coverage']:.0%}"
        lines.append(
            f"| {r['group']} | `{r['task']}` | {r['split']} | {r['n_train']} / {r['n_test']} "
            f"| {_e(r['pcs_test_mse'])} | {_e(r['flops_test_mse'])} | {_e(r['params_test_mse'])} "
            f"| {_e(r['pcs_test_mse_known_compute'])} ({r['n_test_known_compute']}) | {cov} "
            f"| `{r['formula']}` |"
        )
    if points:
        lines += [
            "",
            f"## Model subset selection (`{selection_task}`, whole families, criterion on the PCs of all eight "
            "benchmarks)",
            "",
            f"Test MSE of the law fitted on all training models: {_e(all_mse)}.",
            "",
            "| budget | models | criterion | test MSE, V-optimal | random median | random IQR | families |",
            "|---|---|---|---|---|---|---|",
        ]
        for p in points:
            rnd = np.array([v for v in p.random_test_mse if np.isfinite(v)])
            iqr = f"{np.quantile(rnd, 0.25):.2e} - {np.quantile(rnd, 0.75):.2e}" if len(rnd) else "n/a"
            med = _e(float(np.median(rnd))) if len(rnd) else "n/a"
            lines.append(
                f"| {p.budget} | {p.n_models} | {p.criterion:.2f} | {_e(p.test_mse)} | {med} | {iqr} "
                f"| {', '.join(p.units)} |"
            )
    lines += ["", "## Figures", ""]
    lines += [f"- `{name}`: {what}" for name, what in files.items()]
    return "\n".join(lines) + "\n"


def write_report(
    out_dir: str | Path,
    *,
    tasks: Sequence[str] | None = None,
    n_bootstrap: int = 100,
    selection_task: str | None = "gsm8k-cot",
    budgets: Sequence[int] = DEFAULT_BUDGETS,
    n_random: int = 10,
    random_state: int = 0,
    progress: Callable[[str], None] | None = None,
) -> dict[str, object]:
    """Fit every built-in task, write ``report.md``, ``report.json`` and the figures into ``out_dir``.

    Parameters
    ----------
    out_dir
        Folder to write into (created if needed; files are replaced atomically).
    tasks
        Task names (default: all built-in tasks).
    n_bootstrap
        Bootstrap rounds per task for the prediction intervals.
    selection_task
        Task whose test MSE scores the selection curve (``None`` skips the selection section).
    budgets, n_random
        Model budgets of the selection curve and random subsets per budget.
    random_state
        Seed of the bootstrap and of the random subsets.
    progress
        Called with a short message before each step (e.g. to drive a progress bar).

    Returns
    -------
    dict
        The content of ``report.json``: the PCA summary, one row per task, the selection curve and file names.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    say = progress or (lambda _msg: None)
    names = list(tasks) if tasks is not None else list(TASKS)

    say("capability PCs")
    base = default_models(load_builtin(BASE_SCORES))
    analysis = pca_analysis(base, list(BASE_BENCHMARKS))
    plot_pc1_vs_flops(analysis, base[FLOPS].to_numpy(), out / "pc1_vs_flops.png")

    results: list[HoldoutResult] = []
    for name in names:
        say(f"fit {name}")
        results.append(fit_holdout(load_task(name), n_bootstrap=n_bootstrap, random_state=random_state))
    plot_predictions_grid(results, out / "predictions.png")
    rows = [task_summary(r) for r in results]

    files = {
        "pc1_vs_flops.png": "PC-1 against training FLOPs, one line per family",
        "predictions.png": "predicted vs observed for every task, train (o) and test (x) models",
    }
    points: list[SelectionPoint] = []
    all_mse = None
    if selection_task:
        say(f"selection curve on {selection_task}")
        sel_data = load_task(selection_task)
        points, all_mse = selection_curve(
            sel_data, budgets, criterion_benchmarks=BASE_BENCHMARKS, n_random=n_random, random_state=random_state
        )
        plot_selection(
            points,
            all_mse,
            out / "selection.png",
            title=f"Model subset selection: {selection_task}",
            n_all=int(sel_data.train.sum()),
        )
        files["selection.png"] = "held-out test MSE against the model budget, V-optimal vs random subsets"

    summary: dict[str, object] = {
        "pca": {
            "n_models": len(analysis.models),
            "benchmarks": analysis.benchmarks,
            "explained_variance_ratio": analysis.explained_variance_ratio,
            "top3": float(sum(analysis.explained_variance_ratio[:3])),
        },
        "tasks": rows,
        "selection": {"task": selection_task, "all_test_mse": all_mse, "points": [p.to_dict() for p in points]},
        "files": {"report.md": "this report as a markdown table", **files},
    }
    command = f"indus scaling report OUT --n-bootstrap {n_bootstrap} --n-random {n_random} --seed {random_state}" + (
        "" if names == list(TASKS) else "".join(f" --task {t}" for t in names)
    )
    atomic_write_text(
        out / "report.md", _markdown(analysis, rows, points, all_mse, selection_task or "", files, command)
    )
    atomic_write_json(out / "report.json", summary)
    return summary
