"""What the user reads: ``report.md`` with PNG figures and a self-contained ``report.html`` that opens offline.

The report is written from the run summary that :func:`indus.pipeline.run_pipeline` collects (a plain dict, also
saved as ``summary.json``), so it can be redrawn without rerunning anything.
"""

from __future__ import annotations

import base64
import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from indus.atomic import atomic_write_text

HTML_TEMPLATE = Path(__file__).with_name("report.html")


def _num(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    if isinstance(v, float):
        return f"{v:.{digits}f}" if abs(v) >= 10 ** -digits or v == 0 else f"{v:.2e}"
    return str(v)


def _pm(mean: Any, std: Any) -> str:
    if std is None or (isinstance(std, float) and (not math.isfinite(std) or std == 0)):
        return _num(mean)
    return f"{_num(mean)} ± {_num(std)}"


def _table(rows: list[list[Any]], header: list[str]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return lines + [""]


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> str:
    from indus.atomic import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png")
    _plt().close(fig)
    return path.name


def plot_fertility(rows: list[dict[str, Any]], out: Path) -> str:
    """Tokens per word of each tokenizer on the held-out text."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 0.5 + 0.5 * len(rows)))
    names = [r["tokenizer"] for r in rows]
    vals = [r["tokens_per_word"] for r in rows]
    ax.barh(names, vals, color=["#4c72b0"] + ["#999999"] * (len(rows) - 1))
    for i, v in enumerate(vals):
        ax.text(v, i, f" {v:.3f}", va="center")
    ax.set_xlabel("tokens per word (held-out text)")
    ax.invert_yaxis()
    return _save(fig, out)


def read_log(path: Path) -> list[dict[str, Any]]:
    """The records of a training ``log.jsonl`` (missing file: none)."""
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def plot_loss_curves(curves: dict[str, list[dict[str, Any]]], out: Path) -> str:
    """Training loss (lines) and held-out loss (markers) against tokens seen, one colour per run."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for i, (name, records) in enumerate(curves.items()):
        color = f"C{i}"
        train = [(r["tokens"], r["loss"]) for r in records if "loss" in r and "tokens" in r]
        valid = [(r["tokens"], r["valid_loss"]) for r in records if "valid_loss" in r and "tokens" in r]
        if train:
            x, y = zip(*train, strict=True)
            ax.plot(x, y, color=color, alpha=0.8, lw=1, label=f"{name} (train)")
        if valid:
            x, y = zip(*valid, strict=True)
            ax.plot(x, y, "o--", color=color, ms=4, label=f"{name} (held-out)")
    ax.set_xlabel("tokens seen")
    ax.set_ylabel("MLM loss")
    ax.set_xscale("log")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return _save(fig, out)


def plot_models(evals: list[dict[str, Any]], out: Path) -> str:
    """One panel per (task, data): the primary metric of every model, baselines in grey, built models in blue."""
    plt = _plt()
    groups: dict[str, list[dict[str, Any]]] = {}
    for e in evals:
        groups.setdefault(f"{e['task']}: {e['data']} ({e['metric']})", []).append(e)
    fig, axes = plt.subplots(1, len(groups), figsize=(4.5 * len(groups), 0.6 + 0.45 * max(map(len, groups.values()))),
                             squeeze=False)
    for ax, (title, rows) in zip(axes[0], groups.items(), strict=True):
        names = [r["model"] for r in rows]
        vals = [r["value"] for r in rows]
        errs = [r.get("std") or 0.0 for r in rows]
        colors = ["#999999" if r["kind"] == "baseline" else "#4c72b0" for r in rows]
        ax.barh(names, vals, xerr=errs, color=colors)
        ax.set_title(title, fontsize=9)
        ax.invert_yaxis()
        ax.grid(axis="x", alpha=0.3)
    return _save(fig, out)


def plot_tradeoff(points: list[dict[str, Any]], out: Path) -> str:
    """Quality against latency: what the small model gives up and what it saves."""
    plt = _plt()
    groups: dict[str, list[dict[str, Any]]] = {}
    for p in points:
        groups.setdefault(p["task"], []).append(p)
    fig, axes = plt.subplots(1, len(groups), figsize=(4.5 * len(groups), 3.5), squeeze=False)
    for ax, (task, rows) in zip(axes[0], groups.items(), strict=True):
        for r in rows:
            ax.scatter(r["latency_ms"], r["value"], s=40, color="#999999" if r["kind"] == "baseline" else "#4c72b0")
            ax.annotate(r["model"], (r["latency_ms"], r["value"]), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")
        ax.set_xscale("log")
        ax.set_xlabel(rows[0]["latency_label"])
        ax.set_ylabel(rows[0]["metric"])
        ax.set_title(task, fontsize=9)
        ax.grid(alpha=0.3)
    return _save(fig, out)


def plot_forecast(forecasts: dict[str, dict[str, Any]], points: dict[str, list[dict[str, Any]]], out: Path) -> str:
    """Each metric against training compute: the run's models, the fitted law and the forecasts with intervals."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(forecasts), figsize=(4.5 * len(forecasts), 3.5), squeeze=False)
    for ax, (name, fc) in zip(axes[0], forecasts.items(), strict=True):
        pts = points[name]
        x = np.array([p["flops"] for p in pts])
        ax.scatter(x, [p["metric"] for p in pts], color="#4c72b0", zorder=3, label="built models")
        comp = fc.get("compute")
        if comp:
            far = [f["flops"] for f in comp["forecasts"]]
            grid = np.logspace(np.log10(x.min()), np.log10(max(far)), 50)
            ax.plot(grid, comp["intercept"] + comp["slope_per_decade"] * np.log10(grid), color="#4c72b0", lw=1)
            for f in comp["forecasts"]:
                lo, hi = f["lo"], f["hi"]
                yerr = None if lo is None else [[f["y"] - lo], [hi - f["y"]]]
                ax.errorbar(f["flops"], f["y"], yerr=yerr, fmt="s", color="#dd8452", capsize=3)
        loss = fc.get("loss")
        if loss:
            for f in loss["forecasts"]:
                lo, hi = f["lo"], f["hi"]
                yerr = None if lo is None else [[f["y"] - lo], [hi - f["y"]]]
                ax.errorbar(f["flops"] * 1.15, f["y"], yerr=yerr, fmt="D", color="#55a868", capsize=3)
        ax.set_xscale("log")
        ax.set_xlabel("training FLOPs (6ND)")
        ax.set_title(name, fontsize=9)
        ax.grid(alpha=0.3)
    handles = [plt.Line2D([], [], marker="o", ls="", color="#4c72b0", label="built models"),
               plt.Line2D([], [], marker="s", ls="", color="#dd8452", label="forecast: log-compute law"),
               plt.Line2D([], [], marker="D", ls="", color="#55a868", label="forecast: via held-out loss")]
    axes[0][0].legend(handles=handles, fontsize=7)
    return _save(fig, out)


def markdown_to_html(markdown_text: str, folder: Path, title: str) -> str:
    """A self-contained HTML page: the markdown rendered, every PNG inlined as a data URI."""
    import markdown

    body = markdown.markdown(markdown_text, extensions=["tables", "fenced_code"])

    def inline(match: re.Match[str]) -> str:
        src = match.group(1)
        path = folder / src
        if src.startswith("data:") or not path.is_file():
            return match.group(0)
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        return f'src="data:image/png;base64,{data}"'

    body = re.sub(r'src="([^"]+\.png)"', inline, body)
    template = HTML_TEMPLATE.read_text(encoding="utf-8")
    return template.replace("{{title}}", title).replace("{{body}}", body)


def write_html(markdown_text: str, folder: Path, title: str) -> Path:
    """Write ``report.html`` next to ``report.md``."""
    return atomic_write_text(folder / "report.html", markdown_to_html(markdown_text, folder, title))
