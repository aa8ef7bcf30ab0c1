"""The scaling figures, saved and inspected: what a reader could misread is pinned down here."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest

from indus.scaling import plots
from indus.scaling.families import pca_analysis
from indus.scaling.holdout import fit_holdout
from indus.scaling.scores import BASE_BENCHMARKS, BASE_SCORES, FLOPS, load_builtin
from indus.scaling.selection import SelectionPoint
from indus.scaling.tasks import default_models, load_task


@pytest.fixture
def saved(monkeypatch):
    """Figures as they are written (the real ``_save`` still writes the PNG)."""
    figs: list[plt.Figure] = []
    real = plots._save

    def keep(fig, out):
        figs.append(fig)
        fig.canvas.draw()  # lay out before the figure is closed, so positions can be read
        return real(fig, out)

    monkeypatch.setattr(plots, "_save", keep)
    return figs


@pytest.fixture(scope="module")
def results():
    return {name: fit_holdout(load_task(name), n_bootstrap=20) for name in ("gpqa", "gsm8k-cot", "agentboard")}


def test_grid_panels_are_zoomed_square_and_labelled_as_normalised(saved, results, tmp_path):
    out = plots.plot_predictions_grid(list(results.values()), tmp_path / "grid.png", ncols=3)
    assert out.stat().st_size > 10_000
    fig = saved[-1]
    gpqa = next(ax for ax in fig.axes if ax.get_title().startswith("gpqa"))
    assert gpqa.get_xlim() == gpqa.get_ylim()  # one range, so the diagonal is the line of perfect forecasts
    f = results["gpqa"].frame
    # zoomed to what is drawn (points and interval ends), not stretched to [0, 1] ...
    drawn = np.concatenate([f["target"], f["y_pred"], f["lo"], f["hi"]])
    assert gpqa.get_xlim()[1] < np.nanmax(drawn) + 0.05
    # ... and nothing drawn falls outside it
    assert gpqa.get_xlim()[0] <= np.nanmin(drawn) and gpqa.get_xlim()[1] >= np.nanmax(drawn)
    assert "normalised" in fig._supxlabel.get_text() and "normalised" in fig._supylabel.get_text()
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == ["train", "test", "90% bootstrap interval"]


def test_fit_figure_says_what_the_normalised_metric_is(saved, results, tmp_path):
    plots.plot_fit(results["gpqa"], tmp_path / "fit.png")
    fig = saved[-1]
    assert fig._suptitle.get_text() == "GPQA (Open LLM Leaderboard v2): (raw - 0.25) / 0.75"
    left, right = fig.axes[:2]
    assert left.get_title().startswith("y = sigmoid(")  # the leaderboard-v2 law has no floor
    assert "normalised scale" in left.get_title()
    assert right.get_xlabel() == "observed (normalised)" and right.get_ylabel() == "predicted (normalised)"
    assert right.get_legend()._loc == 4  # lower right, away from the interval tops
    plots.plot_fit(results["agentboard"], tmp_path / "fit2.png")
    assert saved[-1]._suptitle.get_text() == "AgentBoard average success rate: raw / 100"


def test_every_family_line_in_pc1_plot_has_its_own_colour(saved, tmp_path):
    base = default_models(load_builtin(BASE_SCORES))
    analysis = pca_analysis(base, list(BASE_BENCHMARKS))
    plots.plot_pc1_vs_flops(analysis, base[FLOPS].to_numpy(), tmp_path / "pc1.png")
    ax = saved[-1].axes[0]
    colours = [tuple(np.round(line.get_color(), 4)) for line in ax.get_lines()]
    assert len(colours) == len({f.family for f in analysis.fits}) and len(set(colours)) == len(colours)
    points = [tuple(np.round(c.get_facecolor()[0], 4)) + (c.get_paths()[0].vertices.tobytes(),) for c in ax.collections]
    assert len(set(points)) == len(points)  # colour and marker together tell every family apart
    notes = [t.get_text() for t in ax.texts]
    assert notes == ["not shown: 2 models without published FLOPs"]  # Mistral-7B and Mixtral-8x7B


def test_selection_plot_has_whole_number_budgets_and_names_the_full_fit(saved, tmp_path):
    pts = [SelectionPoint(b, b, -1.0, ["a"], 1e-2 / b, [2e-2, 3e-2, np.nan], [-2.0], "exact") for b in (4, 8, 12)]
    plots.plot_selection(pts, 5e-3, tmp_path / "sel.png", n_all=47)
    ax = saved[-1].axes[0]
    assert list(ax.get_xticks()) == [4, 8, 12]
    labels = ax.get_legend_handles_labels()[1]
    assert "all 47 training models" in labels and "random subsets (IQR of 2)" in labels
    assert "normalised" in ax.get_ylabel()
