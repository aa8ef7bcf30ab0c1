"""What the user reads: ``report.md`` with PNG figures and a self-contained ``report.html`` that opens offline.

The report is written from the run summary that :func:`indus.pipeline.run_pipeline` collects (a plain dict, also
saved as ``summary.json``), so it can be redrawn without rerunning anything.
"""

from __future__ import annotations

import base64
import html
import json
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import numpy as np

from indus.atomic import atomic_path, atomic_write_text
from indus.evaluation.result import EvalResult

HTML_TEMPLATE = Path(__file__).with_name("report.html")


def _num(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    if isinstance(v, float):
        return f"{v:.{digits}f}" if abs(v) >= 10**-digits or v == 0 else f"{v:.2e}"
    return str(v)


def _secs(v: Any) -> str:
    return "n/a" if v is None else f"{float(v):.1f}"


def _pm(mean: Any, std: Any) -> str:
    if std is None or (isinstance(std, float) and (not math.isfinite(std) or std == 0)):
        return _num(mean)
    return f"{_num(mean)} ± {_num(std)}"


def _score(row: dict[str, Any], result: EvalResult) -> str:
    """A model's score cell: mean ± std, "collapsed" when every fine-tuning seed predicted a single label (no
    score), and how many seeds collapsed when some did (left out of the mean)."""
    if result.collapsed:
        return f"collapsed ({len(result.per_seed)} of {len(result.per_seed)} seeds)"
    cell = _pm(row["value"], row["std"])
    n = result.counts.get("collapsed_seeds") or 0
    kept = result.settings.get("on_collapse") == "keep"
    return cell + (
        f" ({n} of {len(result.per_seed)} seeds collapsed, {'kept in' if kept else 'not in'} the mean)" if n else ""
    )


def _lr_cell(choice: dict[str, Any] | None) -> str:
    """The learning rate a model fine-tuned at and, when chosen on dev, each candidate's dev score."""
    if not choice or choice.get("lr") is None:
        return "n/a"
    cell = f"{float(choice['lr']):g}"
    grid = choice.get("grid") or {}
    if choice.get("mode") == "auto" and grid:
        cell += " (" + ", ".join(f"{k}: {_num((v or {}).get('dev'))}" for k, v in grid.items()) + ")"
    return cell


class Md(str):
    """Text that is already markdown (written by this module from numbers): :func:`_table` leaves it as it is."""


# Characters that markdown (and the tables extension) would read as syntax; every string that comes from a config
# or from data is escaped with them, so a name prints as itself and never becomes a link, a tag or a table cell.
_MD_SPECIAL = re.compile(r"([\\`*_\[\]|#])")


def _md(text: Any) -> str:
    """``text`` (a name from a config or data) as inert markdown: it renders as itself, on one line."""
    s = " ".join(str(text).split())
    s = s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MD_SPECIAL.sub(r"\\\1", s)


def _code(text: Any) -> str:
    """``text`` as a markdown code span (fenced with more backticks than it contains)."""
    s = " ".join(str(text).split())
    fence = "`" * (max((len(m) for m in re.findall(r"`+", s)), default=0) + 1)
    return f"{fence} {s} {fence}" if s.startswith("`") or s.endswith("`") else f"{fence}{s}{fence}"


def speedup(slow_ms: Any, fast_ms: Any) -> str:
    """``slow_ms / fast_ms`` as ``"1.03x"``: three significant digits, so two models of one shape read ~1x and a
    slower "student" reads below 1 (a fixed one decimal wrote 0.04 as "0.0x")."""
    if not slow_ms or not fast_ms or not math.isfinite(slow_ms) or not math.isfinite(fast_ms):
        return "n/a"
    r = float(slow_ms) / float(fast_ms)
    return f"{r:,.0f}x" if r >= 100 else f"{r:.3g}x"


def _table(rows: list[list[Any]], header: list[str]) -> list[str]:
    """A markdown table; every cell is escaped unless it is :class:`Md`."""

    def cell(c: Any) -> str:
        return c if isinstance(c, Md) else _md(c)

    lines = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(c) for c in r) + " |" for r in rows]
    return lines + [""]


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> str:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png")
    _plt().close(fig)
    return path.name


BUILT, BASELINE = "#4c72b0", "#999999"


def _plain_log_ticks(axis: Any, *, si: bool = False) -> None:
    """Log-axis ticks at 1, 2 and 5 per decade written as plain numbers (``si``: with SI prefixes, ``20k``,
    ``1M``, for counts in the thousands and millions): matplotlib's default labels every minor tick of a narrow
    range as ``2 x 10^0``, and the labels run into each other."""
    from matplotlib.ticker import EngFormatter, FuncFormatter, LogLocator, NullFormatter

    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(EngFormatter(sep="") if si else FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def _kind_handles(extra: Sequence[Any] = ()) -> list[Any]:
    plt = _plt()
    return [
        plt.Line2D([], [], marker="s", ls="", color=BASELINE, label="baseline"),
        plt.Line2D([], [], marker="s", ls="", color=BUILT, label="built by this run"),
        *extra,
    ]


def draw_fertility(rows: list[dict[str, Any]]) -> Any:
    """The figure of :func:`plot_fertility`."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 0.8 + 0.45 * len(rows)), layout="constrained")
    names = [r["tokenizer"] for r in rows]
    vals = [r["tokens_per_word"] for r in rows]
    ax.barh(range(len(rows)), vals, color=[BUILT] + [BASELINE] * (len(rows) - 1))
    ax.set_yticks(range(len(rows)), names)
    for i, v in enumerate(vals):
        ax.text(v, i, f" {v:.3f}", va="center", fontsize=8)
    ax.set_xlim(0, 1.18 * max(vals))  # room for the value written after the longest bar
    ax.set_xlabel("tokens per word (held-out text)")
    ax.invert_yaxis()
    return fig


def plot_fertility(rows: list[dict[str, Any]], out: Path) -> str:
    """Tokens per word of each tokenizer on the held-out text."""
    return _save(draw_fertility(rows), out)


def read_log(path: Path) -> list[dict[str, Any]]:
    """The records of a training ``log.jsonl`` (missing file: none)."""
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def draw_loss_curves(panels: dict[str, dict[str, list[dict[str, Any]]]]) -> Any:
    """The figure of :func:`plot_loss_curves`: one panel per objective, each on its own y-axis."""
    plt = _plt()
    panels = {obj: runs for obj, runs in panels.items() if any(runs.values())}
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 3.8), squeeze=False, layout="constrained")
    colors = {name: f"C{i}" for i, name in enumerate(n for runs in panels.values() for n in runs)}
    for ax, (objective, runs) in zip(axes[0], panels.items(), strict=True):
        xs = [r["tokens"] for records in runs.values() for r in records if "tokens" in r]
        positive = [x for x in xs if x > 0]
        # a ladder spans decades of tokens: log scale, where step 0 has no place (it is left out, not drawn at the
        # edge as if it were the first tokens); a narrow range stays linear and keeps step 0
        log_x = bool(positive) and max(positive) / min(positive) > 20
        for name, records in runs.items():
            color = colors[name]
            train = [(r["tokens"], r["loss"]) for r in records if "loss" in r and "tokens" in r]
            valid = [(r["tokens"], r["valid_loss"]) for r in records if "valid_loss" in r and "tokens" in r]
            if log_x:
                train = [p for p in train if p[0] > 0]
                valid = [p for p in valid if p[0] > 0]
            if train:
                x, y = zip(*train, strict=True)
                ax.plot(x, y, color=color, alpha=0.8, lw=1, label=f"{name} (train)")
            if valid:
                x, y = zip(*valid, strict=True)
                ax.plot(x, y, "o--", color=color, ms=4, label=f"{name} (held-out)")
        if log_x:
            ax.set_xscale("log")
            _plain_log_ticks(ax.xaxis, si=True)
        ax.set_xlabel("tokens seen" + (" (log scale)" if log_x else ""))
        ax.set_ylabel(objective)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    return fig


def plot_loss_curves(panels: dict[str, dict[str, list[dict[str, Any]]]], out: Path) -> str:
    """Training loss (lines) and held-out loss (markers) against tokens seen, one colour per run.

    ``panels`` maps an objective (the y-axis label) to ``{run name: log records}``: runs that optimise different
    losses (masked-LM pretraining, MiniLMv2 distillation) never share an axis, whose scales differ by orders of
    magnitude.
    """
    return _save(draw_loss_curves(panels), out)


def draw_models(evals: list[dict[str, Any]]) -> Any:
    """The figure of :func:`plot_models`."""
    plt = _plt()
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for e in evals:
        groups.setdefault((f"{e['task']}: {e['data']}", e["metric"]), []).append(e)
    fig, axes = plt.subplots(
        1,
        len(groups),
        figsize=(4.8 * len(groups), 1.1 + 0.42 * max(map(len, groups.values()))),
        squeeze=False,
        layout="constrained",
    )
    for ax, ((title, metric), rows) in zip(axes[0], groups.items(), strict=True):
        vals = [r["value"] or 0.0 for r in rows]  # a collapsed model has no score: no bar, labelled
        errs = [r.get("std") or 0.0 for r in rows]
        colors = [BASELINE if r["kind"] == "baseline" else BUILT for r in rows]
        ax.barh(range(len(rows)), vals, xerr=errs, color=colors)
        ax.set_yticks(range(len(rows)), [r["model"] for r in rows])
        for i, (v, e, r) in enumerate(zip(vals, errs, rows, strict=True)):
            ax.text(v + e, i, " collapsed" if r["value"] is None else f" {v:.3f}", va="center", fontsize=7)
        ax.set_xlim(0, 1.2 * max([v + e for v, e in zip(vals, errs, strict=True)] + [1e-9]))
        ax.set_xlabel(metric)
        ax.set_title(title, fontsize=9)
        ax.invert_yaxis()
        ax.grid(axis="x", alpha=0.3)
    # below the panels, where it covers no bar
    fig.legend(handles=_kind_handles(), fontsize=7, loc="outside lower center", ncols=2)
    return fig


def plot_models(evals: list[dict[str, Any]], out: Path) -> str:
    """One panel per (task, data): the primary metric of every model, baselines in grey, built models in blue."""
    return _save(draw_models(evals), out)


def _label_points(
    ax: Any, xy: list[tuple[float, float]], labels: list[str], fontsize: float = 7, marker_size: float = 40
) -> list[Any]:
    """Label scatter points so that no two labels overlap, none covers the legend, and every label stays inside
    the axes.

    Points within one marker's width (area ``marker_size``, points^2) of each other share one label (``"a, b"``,
    left to right). Each label takes the first free place of: right of its point, left of it, then one line higher,
    one line lower, two lines higher, ...; a label moved off its point gets a thin leader line to it.
    """
    from matplotlib.transforms import Bbox

    fig = ax.figure
    fig.canvas.draw()  # fixes the layout: pixel positions below are final (bbox_inches="tight" only crops)
    renderer = fig.canvas.get_renderer()
    box = ax.get_window_extent(renderer)
    step = 72.0 / fig.dpi  # points per pixel
    pix = ax.transData.transform(np.asarray(xy, dtype=float))
    reach = np.sqrt(marker_size) / step  # one marker's width in pixels
    groups: list[list[int]] = []
    for i in sorted(range(len(xy)), key=lambda i: pix[i][0]):
        home = next((g for g in groups if np.hypot(*(pix[g[0]] - pix[i])) < reach), None)
        home.append(i) if home is not None else groups.append([i])
    legend = ax.get_legend()
    placed: list[Any] = [legend.get_window_extent(renderer)] if legend is not None else []
    obstacles = [Bbox.from_bounds(x - reach / 2, y - reach / 2, reach, reach) for x, y in pix]  # the markers
    texts = []
    for g in sorted(groups, key=lambda g: (pix[g[0]][1], pix[g[0]][0])):
        text, point = ", ".join(labels[i] for i in g), xy[g[0]]
        probe = ax.annotate(
            text, point, xytext=(0, 0), textcoords="offset points", fontsize=fontsize, ha="left", va="center"
        )
        size = probe.get_window_extent(renderer)
        probe.remove()
        w, h = size.width, size.height  # pixels
        px, py = pix[g[0]]
        lines = [0] + [s * k for k in range(1, 40) for s in (1, -1)]
        best = None
        for k in lines:
            for side in (1, -1):
                x0 = px + 6 / step if side > 0 else px - 6 / step - w
                x0 = min(max(x0, box.x0 + 2), box.x1 - 2 - w)  # kept inside the axes
                y0 = py + 4 / step + k * (h + 2) if k >= 0 else py - 4 / step - h + (k + 1) * (h + 2)
                cand = Bbox.from_bounds(x0, y0, w, h)
                inside = cand.y0 >= box.y0 + 1 and cand.y1 <= box.y1 - 1
                if inside and not any(b.overlaps(cand) for b in [*placed, *obstacles]):
                    best = cand
                    break
            if best is not None:
                break
        if best is None:  # nowhere free: right of the point, as before
            best = Bbox.from_bounds(px + 6 / step, py + 4 / step, w, h)
        dx, dy = (best.x0 - px) * step, (best.y0 + h / 2 - py) * step
        moved = not (abs(dy - (4 / step + h / 2) * step) < 1 and abs(dx - 6) < 1)
        # moved off its point: a thin leader line says whose label it is
        arrow = (
            {
                "arrowstyle": "-",
                "color": "0.45",
                "lw": 0.6,
                "shrinkA": 0,
                "shrinkB": 3,
                "relpos": (0.0, 0.5) if best.x0 >= px else (1.0, 0.5),
            }
            if moved
            else None
        )
        t = ax.annotate(
            text,
            point,
            xytext=(dx, dy),
            textcoords="offset points",
            fontsize=fontsize,
            ha="left",
            va="center",
            arrowprops=arrow,
        )
        placed.append(t.get_window_extent(renderer))
        texts.append(t)
    return texts


def draw_tradeoff(points: list[dict[str, Any]]) -> Any:
    """The figure of :func:`plot_tradeoff`."""
    plt = _plt()
    groups: dict[str, list[dict[str, Any]]] = {}
    for p in points:
        groups.setdefault(p["task"], []).append(p)
    fig, axes = plt.subplots(1, len(groups), figsize=(5.0 * len(groups), 3.8), squeeze=False)
    fig.subplots_adjust(wspace=0.3)
    for ax, (task, rows) in zip(axes[0], groups.items(), strict=True):
        by_name = {r["model"]: r for r in rows}
        for r in rows:
            ax.scatter(
                r["latency_ms"], r["value"], s=40, zorder=3, color=BASELINE if r["kind"] == "baseline" else BUILT
            )
            teacher = by_name.get(r.get("teacher") or "")
            if teacher is not None:  # what the student gives up and what it saves, as one arrow
                ax.annotate(
                    "",
                    (r["latency_ms"], r["value"]),
                    (teacher["latency_ms"], teacher["value"]),
                    arrowprops={"arrowstyle": "->", "color": "#dd8452", "lw": 1},
                    zorder=2,
                )
        ax.set_xscale("log")
        _plain_log_ticks(ax.xaxis)
        ax.margins(x=0.25, y=0.2)  # room for the labels inside the axes
        ax.set_xlabel(rows[0]["latency_label"] + " (log scale)")
        ax.set_ylabel(rows[0]["metric"])
        ax.set_title(task, fontsize=9)
        ax.grid(alpha=0.3)
    arrow = plt.Line2D([], [], color="#dd8452", marker=">", label="teacher -> student")
    for ax, rows in zip(axes[0], groups.values(), strict=True):
        ax.legend(handles=_kind_handles([arrow] if any(r.get("teacher") for r in rows) else []), fontsize=7, loc="best")
        _label_points(ax, [(r["latency_ms"], r["value"]) for r in rows], [r["model"] for r in rows])
    return fig


def plot_tradeoff(points: list[dict[str, Any]], out: Path) -> str:
    """Quality against latency: what the small model gives up and what it saves."""
    return _save(draw_tradeoff(points), out)


def draw_forecast(forecasts: dict[str, dict[str, Any]], points: dict[str, list[dict[str, Any]]]) -> Any:
    """The figure of :func:`plot_forecast`."""
    plt = _plt()
    fig, axes = plt.subplots(
        1, len(forecasts), figsize=(4.8 * len(forecasts), 3.6), squeeze=False, layout="constrained"
    )
    for ax, (name, fc) in zip(axes[0], forecasts.items(), strict=True):
        pts = points[name]
        x = np.array([p["flops"] for p in pts])
        ax.scatter(x, [p["metric"] for p in pts], color=BUILT, zorder=3, label="built models")
        comp = fc.get("compute")
        if comp:
            far = [f["flops"] for f in comp["forecasts"]]
            grid = np.logspace(np.log10(x.min()), np.log10(max(far)), 50)
            ax.plot(grid, comp["intercept"] + comp["slope_per_decade"] * np.log10(grid), color=BUILT, lw=1)
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
        ax.set_xlabel("training FLOPs (6ND, log scale)")
        ax.set_ylabel(f"{fc.get('metric', 'metric')} on {name}")
        ax.set_title(name, fontsize=9)
        ax.grid(alpha=0.3)
    level = f"{100 * (1 - next(iter(forecasts.values())).get('alpha', 0.1)):.0f}%"
    handles = [
        plt.Line2D([], [], marker="o", ls="", color=BUILT, label="built models"),
        plt.Line2D([], [], marker="s", ls="", color="#dd8452", label=f"log-compute law ({level} interval)"),
        plt.Line2D([], [], marker="D", ls="", color="#55a868", label=f"via held-out loss ({level} interval)"),
    ]
    axes[0][0].legend(handles=handles, fontsize=7, loc="best")
    return fig


def plot_forecast(forecasts: dict[str, dict[str, Any]], points: dict[str, list[dict[str, Any]]], out: Path) -> str:
    """Each metric against training compute: the run's models, the fitted law and the forecasts with intervals."""
    return _save(draw_forecast(forecasts, points), out)


_SAFE_SCHEMES = ("http", "https")


def _safe_url(url: str) -> bool:
    """A link or image source the page may keep: relative, http(s), a fragment or an inlined PNG."""
    if url.startswith("data:image/png;base64,"):
        return True
    parts = urlsplit(url.strip())
    return parts.scheme in _SAFE_SCHEMES or (not parts.scheme and not parts.netloc)


def _markdown() -> Any:
    """A markdown converter that passes no raw HTML through and keeps no link to an unsafe URL (``javascript:``)."""
    import markdown
    from markdown.treeprocessors import Treeprocessor

    class SafeUrls(Treeprocessor):
        def run(self, root: Any) -> None:
            for el in root.iter():
                for attr in ("href", "src"):
                    if el.get(attr) is not None and not _safe_url(el.get(attr)):
                        el.set(attr, "#")

    md = markdown.Markdown(extensions=["tables", "fenced_code"])
    # raw HTML in the text is shown as text: names from configs and data can never become tags
    md.preprocessors.deregister("html_block")
    md.inlinePatterns.deregister("html")
    md.treeprocessors.register(SafeUrls(md), "safe_urls", 0)
    return md


def markdown_to_html(markdown_text: str, folder: Path, title: str) -> str:
    """A self-contained HTML page: the markdown rendered, every PNG under ``folder`` inlined as a data URI.

    Raw HTML in ``markdown_text`` is escaped, unsafe link targets are dropped and ``title`` is escaped, so text from
    configs and data shows as text.
    """
    body = _markdown().convert(markdown_text)
    root = folder.resolve()

    def inline(match: re.Match[str]) -> str:
        src = html.unescape(match.group(1))
        path = (folder / unquote(src)).resolve()
        if src.startswith("data:") or not path.is_relative_to(root) or not path.is_file():
            return match.group(0)
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        return f'src="data:image/png;base64,{data}"'

    body = re.sub(r'src="([^"]+\.png)"', inline, body)
    template = HTML_TEMPLATE.read_text(encoding="utf-8")
    fill = {"title": html.escape(title), "body": body}
    # one pass: a title that contains "{{body}}" stays text
    return re.sub(r"\{\{(title|body)\}\}", lambda m: fill[m.group(1)], template)


def write_html(markdown_text: str, folder: Path, title: str) -> Path:
    """Write ``report.html`` next to ``report.md``."""
    return atomic_write_text(folder / "report.html", markdown_to_html(markdown_text, folder, title))


def _rel(path: str | Path, out: Path) -> str:
    p = Path(path)
    try:
        return str(p.resolve().relative_to(out.resolve()))
    except ValueError:
        return str(p)


def _flops(v: Any) -> str:
    return "n/a" if not v else f"{float(v):.2e}"


def _section_fertility(summary: dict[str, Any], out: Path, figs: Path) -> list[str]:
    rows = summary.get("fertility")
    if not rows:
        return []
    lines = [
        "## Tokenizer: INDUSBPE against general tokenizers",
        "",
        "Tokens on the held-out corpus (no special tokens); the difference is relative to this run's BPE "
        "(the paper's Table 2: 4.3% fewer tokens than RoBERTa's on ADS abstracts).",
        "",
    ]
    lines += _table(
        [
            [
                r["tokenizer"],
                f"{r['vocab_size']:,}",
                f"{r['tokens']:,}",
                f"{r['tokens_per_word']:.3f}",
                f"{r['relative_diff_pct']:+.1f}%",
            ]
            for r in rows
        ],
        ["tokenizer", "vocabulary", "tokens", "tokens / word", "vs this run's BPE"],
    )
    name = plot_fertility(rows, figs / "fertility.png")
    return lines + [f"![fertility](figures/{name})", ""]


def _section_pretrain(summary: dict[str, Any], out: Path, figs: Path) -> list[str]:
    runs = summary.get("pretrain") or []
    students = summary.get("distill") or []
    if not runs and not students:
        return []
    lines = ["## Encoders: masked-LM pretraining and MiniLMv2 distillation", ""]
    rows = [
        [
            r["name"],
            r["preset"],
            "pretrain",
            f"{r.get('params', 0):,}",
            f"{r.get('steps', 0):,}",
            f"{r.get('tokens_seen', 0):,}",
            _flops(r.get("train_flops")),
            _num(r.get("valid_loss")),
            _num(r.get("valid_ppl"), 1),
            f"{r.get('tokens_per_s', 0):,.0f}",
            _secs(r.get("wall_s")),
        ]
        for r in runs
    ]
    rows += [
        [
            s["name"],
            s["preset"],
            f"MiniLMv2 from {s['teacher']}",
            f"{s.get('params', 0):,}",
            f"{s.get('steps', 0):,}",
            f"{s.get('tokens_seen', 0):,}",
            _flops(s.get("train_flops")),
            _num(s.get("valid_loss")),
            _num(s.get("valid_ppl"), 1),
            f"{s.get('tokens_per_s', 0):,.0f}",
            _secs(s.get("wall_s")),
        ]
        for s in students
    ]
    lines += _table(
        rows,
        [
            "model",
            "shape",
            "how",
            "params",
            "steps",
            "tokens",
            "train FLOPs",
            "held-out MLM loss",
            "perplexity",
            "tokens/s",
            "seconds",
        ],
    )
    lines += [
        "Train FLOPs count 6 x non-embedding parameters x tokens. A distilled student's held-out MLM loss is "
        "measured after a short fit of its MLM head (its encoder learns only attention relations).",
        "",
    ]
    panels = {
        "masked-LM loss (cross-entropy)": {r["name"]: read_log(Path(r["log"])) for r in runs},
        "MiniLMv2 loss (self-attention relation KL)": {s["name"]: read_log(Path(s["log"])) for s in students},
    }
    if any(c for runs_ in panels.values() for c in runs_.values()):
        name = plot_loss_curves(panels, figs / "loss_curves.png")
        lines += [f"![loss curves](figures/{name})", ""]
    return lines


def _section_models(summary: dict[str, Any], out: Path, figs: Path) -> list[str]:
    evals = summary.get("evals") or []
    if not evals:
        return []
    lines = [
        "## Every model against the baselines",
        "",
        "Baselines: `random:<shape>` (the largest encoder's shape and tokenizer, random weights: the floor a "
        "trained model must clear), `minilm` (all-MiniLM-L6-v2, general domain), `bm25`. Mean ± std over "
        "fine-tuning seeds where a task fine-tunes. Where a learning rate was chosen on dev, `lr (dev)` gives it "
        "and, in brackets, each candidate's dev score.",
        "",
    ]
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for e in evals:
        groups.setdefault((e["task"], e["data"]), []).append(e)
    for (task, data), rows in groups.items():
        results = [EvalResult.from_json(r["result"]) for r in rows]
        extra = [
            k
            for k in ("precision", "recall", "exact_match", "recall@100", "mrr@10", "micro_f1", "accuracy")
            if k in results[0].metrics
        ]
        lines += [f"### {_md(task)}: {_md(data)} ({_md(rows[0]['metric'])})", ""]
        # where a learning rate was chosen on dev, the choice and the dev score of each candidate
        chosen = any((res.info.get("lr_choice") or {}).get("mode") == "auto" for res in results)
        table = [
            [
                r["model"],
                r["kind"],
                _score(r, res),
                *(_num(res.metric(k)) for k in extra),
                *([_lr_cell(res.info.get("lr_choice"))] if chosen else []),
                _secs(r["wall_s"]),
            ]
            for r, res in zip(rows, results, strict=True)
        ]
        lines += _table(
            table, ["model", "kind", rows[0]["metric"], *extra, *(["lr (dev)"] if chosen else []), "seconds"]
        )
    name = plot_models(evals, figs / "models.png")
    return lines + [f"![models](figures/{name})", ""]


def _tradeoff_points(summary: dict[str, Any]) -> list[dict[str, Any]]:
    models = {(m["name"], m["role"]): m for m in summary.get("models", [])}
    latency = summary.get("latency") or {}
    points = []
    for e in summary.get("evals") or []:
        m = models.get((e["model"], e["role"]))
        if m is None or e["value"] is None:
            continue
        if e["role"] == "encoder" and e["model"] in latency:
            ms, label = latency[e["model"]], "ms per sentence (batch 1)"
        elif e["role"] == "retriever" and e.get("latency_ms") is not None:
            ms, label = e["latency_ms"], "ms per query (encode + search)"
        else:
            continue
        points.append(
            {
                "task": f"{e['task']}: {e['data']}",
                "model": e["model"],
                "kind": e["kind"],
                "teacher": m.get("teacher"),
                "metric": e["metric"],
                "value": e["value"],
                "latency_ms": ms,
                "latency_label": label,
            }
        )
    return points


def _section_tradeoff(summary: dict[str, Any], out: Path, figs: Path) -> list[str]:
    points = _tradeoff_points(summary)
    pairs = [
        (p, q) for p in points for q in points if p["teacher"] and q["model"] == p["teacher"] and q["task"] == p["task"]
    ]
    if not points:
        return []
    lines = ["## Quality against cost: the small models against their teachers", ""]
    if pairs:
        rows = [
            [
                s["task"],
                f"{s['model']} (from {t['model']})",
                _num(t["value"]),
                _num(s["value"]),
                f"{100 * s['value'] / t['value']:.1f}%" if t["value"] else "n/a",
                _num(t["latency_ms"], 2),
                _num(s["latency_ms"], 2),
                speedup(t["latency_ms"], s["latency_ms"]),
            ]
            for s, t in pairs
        ]
        lines += _table(
            rows, ["task", "student", "teacher score", "student score", "kept", "teacher ms", "student ms", "speed-up"]
        )
        lines += [
            "Speed-up: teacher ms / student ms, the medians of this run's latency stages (a student of its "
            "teacher's shape reads about 1x).",
            "",
        ]
    name = plot_tradeoff(points, figs / "tradeoff.png")
    return lines + [f"![trade-off](figures/{name})", ""]


def _section_forecast(summary: dict[str, Any], out: Path, figs: Path) -> list[str]:
    forecasts = summary.get("forecast") or {}
    if not forecasts:
        return []
    lines = [
        "## Forecast: does a bigger run pay?",
        "",
        "Each encoder benchmark against the pretraining runs' compute (log-linear) and, separately, through "
        "their held-out MLM loss (linear in the loss, the loss a power law in compute). Intervals: "
        "prediction intervals at the level given; with a handful of runs they are wide, honestly so.",
        "",
    ]
    rows = []
    for name, fc in forecasts.items():
        comp, loss = fc.get("compute"), fc.get("loss")
        if not comp:
            rows.append([name, fc.get("n", 0), "n/a", "n/a", "n/a", fc.get("note", "")])
            continue
        for i, f in enumerate(comp["forecasts"]):
            via = loss["forecasts"][i] if loss else None
            interval = f"[{_num(f['lo'])}, {_num(f['hi'])}]" if f["lo"] is not None else "n/a"
            via_txt = (
                "n/a"
                if via is None
                else (
                    f"{_num(via['y'])} [{_num(via['lo'])}, {_num(via['hi'])}]"
                    if via["lo"] is not None
                    else _num(via["y"])
                )
            )
            rows.append(
                [
                    name,
                    fc["n"],
                    f"{_num(comp['slope_per_decade'])} per 10x (R^2 {_num(comp['r2'], 2)})",
                    Md(f"{f['multiplier']:g}x ({_flops(f['flops'])}): {_num(f['y'])} {interval}"),
                    Md(via_txt),
                    fc.get("note", ""),
                ]
            )
    level = f"{100 * (1 - next(iter(forecasts.values())).get('alpha', 0.1)):.0f}%"
    lines += _table(
        rows,
        [
            "benchmark",
            "runs",
            "gain per decade of compute",
            f"forecast ({level} interval)",
            "via held-out loss",
            "note",
        ],
    )
    drawable = {k: v for k, v in forecasts.items() if v.get("compute")}
    if drawable:
        name = plot_forecast(drawable, {k: v["points"] for k, v in drawable.items()}, figs / "forecast.png")
        lines += [f"![forecast](figures/{name})", ""]
    return lines


def _section_scaling(summary: dict[str, Any], out: Path, figs: Path) -> list[str]:
    scaling = summary.get("scaling")
    if not scaling:
        return []
    s = scaling["summary"]
    folder = _rel(scaling["folder"], out)
    pca = s.get("pca", {})
    lines = [
        "## Observational scaling laws (built-in tables)",
        "",
        f"Capability PCs of {pca.get('n_models', '?')} public models: top 3 explain "
        f"{100 * pca.get('top3', float('nan')):.1f}% of the benchmark variance. Held-out test MSE of the "
        "PC law against log-FLOPs and log-params baselines (arXiv 2405.10938; `indus scaling report`; the "
        f"full report: {_code(folder + '/report.md')}).",
        "",
    ]
    rows = [
        [
            t["task"],
            t["group"],
            f"{t['n_train']} / {t['n_test']}",
            _e(t["pcs_test_mse"]),
            _e(t["flops_test_mse"]),
            _e(t["params_test_mse"]),
        ]
        for t in s.get("tasks", [])
    ]
    lines += _table(rows, ["task", "group", "train / test", "PC law", "log FLOPs", "log params"])
    for png in ("pc1_vs_flops.png", "predictions.png"):
        if (Path(scaling["folder"]) / png).is_file():
            lines += [f"![{png}]({quote(folder + '/' + png)})", ""]
    return lines


def _e(v: Any) -> str:
    return "n/a" if v is None else f"{v:.2e}"


def write_run_report(summary: dict[str, Any], out_dir: str | Path) -> Path:
    """Write ``report.md``, its figures (``figures/``) and ``report.html`` for a pipeline run summary."""
    out = Path(out_dir)
    figs = out / "figures"
    figs.mkdir(parents=True, exist_ok=True)
    ran = [s for s in summary.get("stages", []) if not s["cached"]]
    lines = [
        f"# indus run: {_md(summary['name'])}",
        "",
        f"{len(summary.get('stages', []))} stages, {len(ran)} run now and the rest reused from the cache; "
        f"{summary.get('wall_s', 0):.0f} s in all. Stage outputs: `stages/<stage>/<key>/`.",
        "",
    ]
    for section in (
        _section_fertility,
        _section_pretrain,
        _section_models,
        _section_tradeoff,
        _section_forecast,
        _section_scaling,
    ):
        lines += section(summary, out, figs)
    lines += ["## Stages", ""]
    lines += _table(
        [
            [s["name"], s["key"], "cached" if s["cached"] else "ran", _secs(s["wall_s"])]
            for s in summary.get("stages", [])
        ],
        ["stage", "key", "this run", "seconds (when it ran)"],
    )
    text = "\n".join(lines)
    path = atomic_write_text(out / "report.md", text)
    write_html(text, out, f"indus run: {summary['name']}")
    return path
