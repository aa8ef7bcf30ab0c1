"""The paper's figures, drawn with matplotlib's Agg backend (no display needed) and written atomically as PNG.

- :func:`plot_pc1_vs_flops`: PC-1 against training FLOPs, one colour and fitted line per family (paper Fig. 3);
- :func:`plot_fit`: one task, the metric against effective compute with the fitted sigmoid, and predicted vs
  observed with 90% bootstrap intervals, train and test models marked (paper Figs. 4-6);
- :func:`plot_predictions_grid`: predicted vs observed for many tasks in one figure;
- :func:`plot_selection`: held-out test MSE against the model budget for V-optimal and random subsets (paper Fig. 7).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from indus.atomic import atomic_path  # noqa: E402
from indus.scaling.families import CapabilityAnalysis  # noqa: E402
from indus.scaling.holdout import TARGET, HoldoutResult  # noqa: E402
from indus.scaling.scores import FLOPS_UNIT  # noqa: E402
from indus.scaling.selection import SelectionPoint  # noqa: E402
from indus.scaling.tasks import TASKS  # noqa: E402

TRAIN_STYLE = {"marker": "o", "color": "#1f77b4"}
TEST_STYLE = {"marker": "X", "color": "#d62728"}


def _save(fig: plt.Figure, out: str | Path) -> Path:
    out = Path(out)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    return out


def plot_pc1_vs_flops(analysis: CapabilityAnalysis, flops: np.ndarray, out: str | Path) -> Path:
    """PC-1 of each model against its training FLOPs (log axis), with each family's least-squares line.

    Only families with known FLOPs are drawn, each with its own colour (``tab20``; a second round of 20 gets dashed
    lines and other markers), so a line can be matched to its points; how many models lack FLOPs is said below the
    axis.
    """
    flops = np.asarray(flops, dtype=float) * FLOPS_UNIT
    fam = np.asarray(analysis.families, dtype=object)
    fig, ax = plt.subplots(figsize=(8.5, 5.2))
    cmap = plt.get_cmap("tab20")
    fits = {f.family: f for f in analysis.fits if f.pc == 1}
    known = np.isfinite(flops)
    drawn = [f for f in dict.fromkeys(fam[known]) if f is not None]
    for i, family in enumerate(drawn):
        rows = (fam == family) & known
        color = cmap(i % 20)
        marker = "os^D"[i % 4] if i < 20 else "v<>P"[i % 4]
        ax.scatter(
            flops[rows], analysis.capabilities[rows, 0], color=color, marker=marker, s=28, label=family, zorder=3
        )
        if family in fits:
            fit = fits[family]
            xs = np.logspace(np.log10(flops[rows].min()), np.log10(flops[rows].max()), 20)
            ax.plot(
                xs, fit.slope * np.log(xs / FLOPS_UNIT) + fit.intercept, color=color, lw=1.2, ls="-" if i < 20 else "--"
            )
    ax.set_xscale("log")
    ax.set_xlabel("training FLOPs")
    ax.set_ylabel("PC-1 (general capability)")
    share = analysis.explained_variance_ratio[0]
    r2 = [f.r2 for f in fits.values()]
    ax.set_title(
        f"PC-1 ({share:.0%} of the score variance of {len(fam)} models) against training FLOPs\n"
        f"lines: least-squares fit within each family with >= 3 models"
        + (f" ({len(r2)} families, median R$^2$ {np.median(r2):.2f})" if r2 else ""),
        fontsize=10,
    )
    missing = int((~known).sum())
    if missing:
        ax.annotate(
            f"not shown: {missing} models without published FLOPs",
            xy=(0, -0.13),
            xycoords="axes fraction",
            fontsize=8,
            color="dimgrey",
        )
    ax.legend(fontsize=7, ncol=2, bbox_to_anchor=(1.01, 1), loc="upper left", frameon=False)
    ax.grid(alpha=0.3)
    return _save(fig, out)


def metric_label(result: HoldoutResult) -> str:
    """What the normalised target is, e.g. ``GPQA (Open LLM Leaderboard v2): (raw - 0.25) / 0.75``."""
    task = TASKS.get(result.data.name)
    title = task.title if task is not None else result.data.name
    lo, hi = result.data.metric_range
    if (lo, hi) == (0.0, 1.0):
        return f"{title}: raw score, 0-1"
    if lo == 0:
        return f"{title}: raw / {hi:.3g}"
    return f"{title}: (raw - {lo:.3g}) / {hi - lo:.3g}"


def _intervals(ax: plt.Axes, x: np.ndarray, y: np.ndarray, lo: np.ndarray, hi: np.ndarray, color: str) -> None:
    ok = np.isfinite(lo) & np.isfinite(hi)
    if ok.any():
        ax.errorbar(
            x[ok],
            y[ok],
            yerr=[np.clip(y[ok] - lo[ok], 0, None), np.clip(hi[ok] - y[ok], 0, None)],
            fmt="none",
            ecolor=color,
            alpha=0.35,
            lw=1,
        )


def _square_limits(*arrays: np.ndarray) -> list[float]:
    """One range for both axes of a predicted-vs-observed plot: every point and interval end, with a margin."""
    vals = np.concatenate([np.asarray(a, dtype=float).ravel() for a in arrays])
    vals = vals[np.isfinite(vals)]
    lo, hi = (float(vals.min()), float(vals.max())) if len(vals) else (0.0, 1.0)
    pad = 0.04 * max(hi - lo, 1e-3)
    return [lo - pad, hi + pad]


def _pred_vs_obs(ax: plt.Axes, result: HoldoutResult, title: str, small: bool = False) -> None:
    f = result.frame
    for split, style in (("train", TRAIN_STYLE), ("test", TEST_STYLE)):
        rows = (f["split"] == split).to_numpy()
        obs, pred = f.loc[rows, TARGET].to_numpy(), f.loc[rows, "y_pred"].to_numpy()
        _intervals(ax, obs, pred, f.loc[rows, "lo"].to_numpy(), f.loc[rows, "hi"].to_numpy(), style["color"])
        ax.scatter(obs, pred, s=14 if small else 30, label=f"{split} ({rows.sum()})", zorder=3, **style)
    # zoomed to the data (a task whose values stay below 0.2 would otherwise be a dot in a corner), the same range
    # on both axes so that the diagonal stays the line of perfect forecasts
    lim = _square_limits(f[TARGET], f["y_pred"], f["lo"], f["hi"])
    ax.plot(lim, lim, color="grey", lw=0.8, ls="--")
    ax.set_xlim(lim)
    ax.set_ylim(lim)
    ax.set_aspect("equal", adjustable="box")
    ax.set_title(title, fontsize=9 if small else 10)
    if not small:
        ax.set_xlabel("observed (normalised)")
        ax.set_ylabel("predicted (normalised)")
        # lower right: below the diagonal, where the fewest points and interval ends sit
        ax.legend(handles=[*ax.get_legend_handles_labels()[0], _interval_handle()], fontsize=8, loc="lower right")


def _interval_handle() -> plt.Line2D:
    return plt.Line2D([], [], color="grey", alpha=0.6, lw=1, marker="|", ms=10, label="90% bootstrap interval")


def plot_fit(result: HoldoutResult, out: str | Path) -> Path:
    """Left: the metric against effective compute with the fitted law. Right: predicted vs observed."""
    f = result.frame
    fig, (left, right) = plt.subplots(1, 2, figsize=(11.5, 4.8))
    eff = result.effective
    if eff is not None:
        x = f["effective_flops"].to_numpy() * FLOPS_UNIT
        xlabel = f"{eff.family}-equivalent training FLOPs"
    else:
        x = f["score"].to_numpy()
        xlabel = "linear capability score  beta . S + alpha"
    for split, style in (("train", TRAIN_STYLE), ("test", TEST_STYLE)):
        rows = (f["split"] == split).to_numpy()
        left.scatter(x[rows], f.loc[rows, TARGET], s=30, label=f"{split} ({rows.sum()})", zorder=3, **style)
    score = np.linspace(f["score"].min() - 0.5, f["score"].max() + 0.5, 200)
    curve = (1 - result.law.floor_) / (1 + np.exp(-score)) + result.law.floor_
    left.plot(eff(score) * FLOPS_UNIT if eff is not None else score, curve, color="black", lw=1.5, label="fitted law")
    if eff is not None:
        left.set_xscale("log")
    left.set_xlabel(xlabel)
    left.set_ylabel("normalised metric")
    mse = "n/a" if result.pcs_test_mse is None else f"{result.pcs_test_mse:.2e}"
    left.set_title(f"y = {result.formula()}\ntest MSE {mse} (normalised scale)", fontsize=9)
    left.legend(fontsize=8)
    left.grid(alpha=0.3)
    _pred_vs_obs(right, result, "predicted vs observed")
    right.grid(alpha=0.3)
    fig.suptitle(metric_label(result), fontsize=11)
    fig.tight_layout()
    return _save(fig, out)


def plot_predictions_grid(results: Sequence[HoldoutResult], out: str | Path, ncols: int = 5) -> Path:
    """Predicted vs observed for several tasks, train (o) and test (x) marked, each panel zoomed to its data."""
    n = len(results)
    nrows = max(1, int(np.ceil(n / ncols)))
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(3.1 * ncols, 3.1 * nrows + 0.6), squeeze=False, layout="constrained"
    )
    for ax, result in zip(axes.ravel(), results, strict=False):
        mse = "n/a" if result.pcs_test_mse is None else f"{result.pcs_test_mse:.1e}"
        _pred_vs_obs(ax, result, f"{result.data.name}  (test MSE {mse})", small=True)
        ax.tick_params(labelsize=7)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    handles = [
        plt.Line2D([], [], ls="none", ms=6, label=s, **st) for s, st in (("train", TRAIN_STYLE), ("test", TEST_STYLE))
    ]
    fig.legend(handles=[*handles, _interval_handle()], loc="outside upper center", ncol=3, frameon=False)
    fig.supxlabel("observed, normalised metric (each panel has its own range; dashed: perfect forecast)", fontsize=10)
    fig.supylabel("predicted, normalised metric", fontsize=10)
    return _save(fig, out)


def plot_selection(
    points: Sequence[SelectionPoint], all_mse: float | None, out: str | Path, title: str = "", n_all: int | None = None
) -> Path:
    """Held-out test MSE against the model budget: V-optimal subsets, random subsets (median, IQR), all models.

    ``n_all`` (the number of training models behind ``all_mse``) labels the dashed line.
    """
    budgets = np.array([p.budget for p in points])
    chosen = np.array([np.nan if p.test_mse is None else p.test_mse for p in points])
    rnd = [np.array([v for v in p.random_test_mse if np.isfinite(v)]) for p in points]
    med = np.array([np.median(r) if len(r) else np.nan for r in rnd])
    q1 = np.array([np.quantile(r, 0.25) if len(r) else np.nan for r in rnd])
    q3 = np.array([np.quantile(r, 0.75) if len(r) else np.nan for r in rnd])
    n_rnd = max((len(r) for r in rnd), default=0)
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    ax.fill_between(budgets, q1, q3, color="grey", alpha=0.25, label=f"random subsets (IQR of {n_rnd})")
    ax.plot(budgets, med, color="grey", marker="s", label="random subsets (median)")
    ax.plot(budgets, chosen, color="#1f77b4", marker="o", label="V-optimal subset")
    if all_mse is not None:
        label = "all training models" if n_all is None else f"all {n_all} training models"
        ax.axhline(all_mse, color="black", ls="--", lw=1, label=label)
    ax.set_yscale("log")
    ax.set_xticks(budgets)  # budgets are whole numbers of models
    ax.set_xlabel("model budget M (most models in the subset)")
    ax.set_ylabel("held-out test MSE (normalised metric)")
    ax.set_title(title or "Model subset selection")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, out)
