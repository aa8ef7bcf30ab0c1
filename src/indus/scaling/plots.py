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

TRAIN_STYLE = {"marker": "o", "color": "#1f77b4"}
TEST_STYLE = {"marker": "X", "color": "#d62728"}


def _save(fig: plt.Figure, out: str | Path) -> Path:
    out = Path(out)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    return out


def plot_pc1_vs_flops(analysis: CapabilityAnalysis, flops: np.ndarray, out: str | Path) -> Path:
    """PC-1 of each model against its training FLOPs (log axis), with each family's least-squares line."""
    flops = np.asarray(flops, dtype=float) * FLOPS_UNIT
    fam = np.asarray(analysis.families, dtype=object)
    fig, ax = plt.subplots(figsize=(8.5, 5))
    cmap = plt.get_cmap("tab20")
    fits = {f.family: f for f in analysis.fits if f.pc == 1}
    for i, family in enumerate(dict.fromkeys(f for f in fam if f is not None)):
        rows = (fam == family) & np.isfinite(flops)
        if not rows.any():
            continue
        color = cmap(i % 20)
        marker = "os^"[i % 3]  # colour and marker together keep 21+ families apart
        ax.scatter(flops[rows], analysis.capabilities[rows, 0], color=color, marker=marker, s=28, label=family,
                   zorder=3)
        if family in fits:
            fit = fits[family]
            xs = np.logspace(np.log10(flops[rows].min()), np.log10(flops[rows].max()), 20)
            ax.plot(xs, fit.slope * np.log(xs / FLOPS_UNIT) + fit.intercept, color=color, lw=1.2)
    ax.set_xscale("log")
    ax.set_xlabel("training FLOPs")
    ax.set_ylabel("PC-1 (general capability)")
    share = analysis.explained_variance_ratio[0]
    ax.set_title(f"PC-1 ({share:.0%} of variance) is log-linear in compute within each family")
    ax.legend(fontsize=7, ncol=2, bbox_to_anchor=(1.01, 1), loc="upper left", frameon=False)
    ax.grid(alpha=0.3)
    return _save(fig, out)


def _intervals(ax: plt.Axes, x: np.ndarray, y: np.ndarray, lo: np.ndarray, hi: np.ndarray, color: str) -> None:
    ok = np.isfinite(lo) & np.isfinite(hi)
    if ok.any():
        ax.errorbar(x[ok], y[ok], yerr=[np.clip(y[ok] - lo[ok], 0, None), np.clip(hi[ok] - y[ok], 0, None)],
                    fmt="none", ecolor=color, alpha=0.35, lw=1)


def _pred_vs_obs(ax: plt.Axes, result: HoldoutResult, title: str, small: bool = False) -> None:
    f = result.frame
    for split, style in (("train", TRAIN_STYLE), ("test", TEST_STYLE)):
        rows = (f["split"] == split).to_numpy()
        obs, pred = f.loc[rows, TARGET].to_numpy(), f.loc[rows, "y_pred"].to_numpy()
        _intervals(ax, obs, pred, f.loc[rows, "lo"].to_numpy(), f.loc[rows, "hi"].to_numpy(), style["color"])
        ax.scatter(obs, pred, s=14 if small else 30, label=f"{split} ({rows.sum()})", zorder=3, **style)
    lim = [min(f[TARGET].min(), f["y_pred"].min(), 0) - 0.02, max(f[TARGET].max(), f["y_pred"].max(), 1) + 0.02]
    ax.plot(lim, lim, color="grey", lw=0.8, ls="--")
    ax.set_xlim(lim)
    ax.set_ylim(lim)
    ax.set_title(title, fontsize=9 if small else 11)
    if not small:
        ax.set_xlabel("observed")
        ax.set_ylabel("predicted")
        ax.legend(fontsize=8)


def plot_fit(result: HoldoutResult, out: str | Path) -> Path:
    """Left: the metric against effective compute with the fitted law. Right: predicted vs observed."""
    f = result.frame
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.4))
    eff = result.effective
    if eff is not None:
        x = f["effective_flops"].to_numpy() * FLOPS_UNIT
        xlabel = f"{eff.family}-equivalent training FLOPs"
    else:
        x = f["score"].to_numpy()
        xlabel = "linear capability score  beta . S + alpha"
    for split, style in (("train", TRAIN_STYLE), ("test", TEST_STYLE)):
        rows = (f["split"] == split).to_numpy()
        left.scatter(x[rows], f.loc[rows, TARGET], s=30, label=split, zorder=3, **style)
    score = np.linspace(f["score"].min() - 0.5, f["score"].max() + 0.5, 200)
    curve = (1 - result.law.floor_) / (1 + np.exp(-score)) + result.law.floor_
    left.plot(eff(score) * FLOPS_UNIT if eff is not None else score, curve, color="black", lw=1.5, label="fitted law")
    if eff is not None:
        left.set_xscale("log")
    left.set_xlabel(xlabel)
    left.set_ylabel(f"{result.data.name} (normalised)")
    mse = "n/a" if result.pcs_test_mse is None else f"{result.pcs_test_mse:.2e}"
    left.set_title(f"{result.formula()}\ntest MSE {mse}", fontsize=9)
    left.legend(fontsize=8)
    left.grid(alpha=0.3)
    _pred_vs_obs(right, result, f"predicted vs observed ({1 - result.alpha:.0%} bootstrap intervals)")
    right.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, out)


def plot_predictions_grid(results: Sequence[HoldoutResult], out: str | Path, ncols: int = 5) -> Path:
    """Predicted vs observed for several tasks, train (o) and test (x) marked."""
    n = len(results)
    nrows = max(1, int(np.ceil(n / ncols)))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.1 * ncols, 3.0 * nrows), squeeze=False)
    for ax, result in zip(axes.ravel(), results, strict=False):
        mse = "n/a" if result.pcs_test_mse is None else f"{result.pcs_test_mse:.1e}"
        _pred_vs_obs(ax, result, f"{result.data.name}  (test MSE {mse})", small=True)
        ax.tick_params(labelsize=7)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    handles = [plt.Line2D([], [], ls="none", ms=6, label=s, **st) for s, st in (("train", TRAIN_STYLE),
                                                                               ("test", TEST_STYLE))]
    fig.legend(handles=handles, loc="upper center", ncol=2, frameon=False)
    fig.supxlabel("observed")
    fig.supylabel("predicted")
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    return _save(fig, out)


def plot_selection(points: Sequence[SelectionPoint], all_mse: float | None, out: str | Path,
                   title: str = "") -> Path:
    """Held-out test MSE against the model budget: V-optimal subsets, random subsets (median, IQR), all models."""
    budgets = np.array([p.budget for p in points])
    chosen = np.array([np.nan if p.test_mse is None else p.test_mse for p in points])
    rnd = [np.array([v for v in p.random_test_mse if np.isfinite(v)]) for p in points]
    med = np.array([np.median(r) if len(r) else np.nan for r in rnd])
    q1 = np.array([np.quantile(r, 0.25) if len(r) else np.nan for r in rnd])
    q3 = np.array([np.quantile(r, 0.75) if len(r) else np.nan for r in rnd])
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    ax.fill_between(budgets, q1, q3, color="grey", alpha=0.25, label="random subsets (IQR)")
    ax.plot(budgets, med, color="grey", marker="s", label="random subsets (median)")
    ax.plot(budgets, chosen, color="#1f77b4", marker="o", label="V-optimal subset")
    if all_mse is not None:
        ax.axhline(all_mse, color="black", ls="--", lw=1, label="all training models")
    ax.set_yscale("log")
    ax.set_xlabel("model budget M")
    ax.set_ylabel("held-out test MSE")
    ax.set_title(title or "Model subset selection")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, out)

