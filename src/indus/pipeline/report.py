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


def _secs(v: Any) -> str:
    return "n/a" if v is None else f"{float(v):.1f}"


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
    lines = ["## Tokenizer: INDUSBPE against general tokenizers", "",
             "Tokens on the held-out corpus (no special tokens); the difference is relative to this run's BPE "
             "(the paper's Table 2: 4.3% fewer tokens than RoBERTa's on ADS abstracts).", ""]
    lines += _table([[r["tokenizer"], f"{r['vocab_size']:,}", f"{r['tokens']:,}", f"{r['tokens_per_word']:.3f}",
                      f"{r['relative_diff_pct']:+.1f}%"] for r in rows],
                     ["tokenizer", "vocabulary", "tokens", "tokens / word", "vs this run's BPE"])
    name = plot_fertility(rows, figs / "fertility.png")
    return lines + [f"![fertility](figures/{name})", ""]


def _section_pretrain(summary: dict[str, Any], out: Path, figs: Path) -> list[str]:
    runs = summary.get("pretrain") or []
    students = summary.get("distill") or []
    if not runs and not students:
        return []
    lines = ["## Encoders: masked-LM pretraining and MiniLMv2 distillation", ""]
    rows = [[r["name"], r["preset"], "pretrain", f"{r.get('params', 0):,}", f"{r.get('steps', 0):,}",
             f"{r.get('tokens_seen', 0):,}", _flops(r.get("train_flops")), _num(r.get("valid_loss")),
             _num(r.get("valid_ppl"), 1), f"{r.get('tokens_per_s', 0):,.0f}", _secs(r.get("wall_s"))] for r in runs]
    rows += [[s["name"], s["preset"], f"MiniLMv2 from {s['teacher']}", f"{s.get('params', 0):,}",
              f"{s.get('steps', 0):,}", f"{s.get('tokens_seen', 0):,}", _flops(s.get("train_flops")),
              _num(s.get("valid_loss")), _num(s.get("valid_ppl"), 1), f"{s.get('tokens_per_s', 0):,.0f}",
              _secs(s.get("wall_s"))] for s in students]
    lines += _table(rows, ["model", "shape", "how", "params", "steps", "tokens", "train FLOPs", "held-out MLM loss",
                           "perplexity", "tokens/s", "seconds"])
    lines += ["Train FLOPs count 6 x non-embedding parameters x tokens. A distilled student's held-out MLM loss is "
              "measured after a short fit of its MLM head (its encoder learns only attention relations).", ""]
    curves = {r["name"]: read_log(Path(r["log"])) for r in [*runs, *students]}
    if any(curves.values()):
        name = plot_loss_curves(curves, figs / "loss_curves.png")
        lines += [f"![loss curves](figures/{name})", ""]
    return lines


def _section_models(summary: dict[str, Any], out: Path, figs: Path) -> list[str]:
    evals = summary.get("evals") or []
    if not evals:
        return []
    lines = ["## Every model against the baselines", "",
             "Baselines: `random:<shape>` (the largest encoder's shape and tokenizer, random weights: the floor a "
             "trained model must clear), `minilm` (all-MiniLM-L6-v2, general domain), `bm25`. Mean ± std over "
             "fine-tuning seeds where a task fine-tunes.", ""]
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for e in evals:
        groups.setdefault((e["task"], e["data"]), []).append(e)
    for (task, data), rows in groups.items():
        res0 = rows[0]["result"]
        extra = [k for k in ("precision", "recall", "exact_match", "recall@100", "mrr@10", "micro_f1", "accuracy")
                 if k in res0]
        lines += [f"### {task}: {data} ({rows[0]['metric']})", ""]
        table = [[r["model"], r["kind"], _pm(r["value"], r["std"]), *(_num(r["result"].get(k)) for k in extra),
                  _secs(r["wall_s"])] for r in rows]
        lines += _table(table, ["model", "kind", rows[0]["metric"], *extra, "seconds"])
    name = plot_models(evals, figs / "models.png")
    return lines + [f"![models](figures/{name})", ""]


def _tradeoff_points(summary: dict[str, Any]) -> list[dict[str, Any]]:
    models = {(m["name"], m["role"]): m for m in summary.get("models", [])}
    latency = summary.get("latency") or {}
    points = []
    for e in summary.get("evals") or []:
        m = models.get((e["model"], e["role"]))
        if m is None:
            continue
        if e["role"] == "encoder" and e["model"] in latency:
            ms, label = latency[e["model"]], "ms per sentence (batch 1)"
        elif e["role"] == "retriever" and e.get("latency_ms") is not None:
            ms, label = e["latency_ms"], "ms per query (encode + search)"
        else:
            continue
        points.append({"task": f"{e['task']}: {e['data']}", "model": e["model"], "kind": e["kind"],
                       "teacher": m.get("teacher"), "metric": e["metric"], "value": e["value"], "latency_ms": ms,
                       "latency_label": label})
    return points


def _section_tradeoff(summary: dict[str, Any], out: Path, figs: Path) -> list[str]:
    points = _tradeoff_points(summary)
    pairs = [(p, q) for p in points for q in points if p["teacher"] and q["model"] == p["teacher"]
             and q["task"] == p["task"]]
    if not points:
        return []
    lines = ["## Quality against cost: the small models against their teachers", ""]
    if pairs:
        rows = [[s["task"], f"{s['model']} (from {t['model']})", _num(t["value"]), _num(s["value"]),
                 f"{100 * s['value'] / t['value']:.1f}%" if t["value"] else "n/a", _num(t["latency_ms"], 2),
                 _num(s["latency_ms"], 2), f"{t['latency_ms'] / s['latency_ms']:.1f}x" if s["latency_ms"] else "n/a"]
                for s, t in pairs]
        lines += _table(rows, ["task", "student", "teacher score", "student score", "kept", "teacher ms",
                               "student ms", "speed-up"])
    name = plot_tradeoff(points, figs / "tradeoff.png")
    return lines + [f"![trade-off](figures/{name})", ""]


def _section_forecast(summary: dict[str, Any], out: Path, figs: Path) -> list[str]:
    forecasts = summary.get("forecast") or {}
    if not forecasts:
        return []
    lines = ["## Forecast: does a bigger run pay?", "",
             "Each encoder benchmark against the pretraining runs' compute (log-linear) and, separately, through "
             "their held-out MLM loss (linear in the loss, the loss a power law in compute). Intervals: "
             "prediction intervals at the level given; with a handful of runs they are wide, honestly so.", ""]
    rows = []
    for name, fc in forecasts.items():
        comp, loss = fc.get("compute"), fc.get("loss")
        if not comp:
            rows.append([name, fc.get("n", 0), "n/a", "n/a", "n/a", fc.get("note", "")])
            continue
        for i, f in enumerate(comp["forecasts"]):
            via = loss["forecasts"][i] if loss else None
            interval = f"[{_num(f['lo'])}, {_num(f['hi'])}]" if f["lo"] is not None else "n/a"
            via_txt = "n/a" if via is None else (f"{_num(via['y'])} [{_num(via['lo'])}, {_num(via['hi'])}]"
                                                  if via["lo"] is not None else _num(via["y"]))
            rows.append([name, fc["n"], f"{_num(comp['slope_per_decade'])} per 10x (R^2 {_num(comp['r2'], 2)})",
                         f"{f['multiplier']:g}x ({_flops(f['flops'])}): {_num(f['y'])} {interval}", via_txt,
                         fc.get("note", "")])
    level = f"{100 * (1 - next(iter(forecasts.values())).get('alpha', 0.1)):.0f}%"
    lines += _table(rows, ["benchmark", "runs", "gain per decade of compute", f"forecast ({level} interval)",
                           "via held-out loss", "note"])
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
    lines = ["## Observational scaling laws (built-in tables)", "",
             f"Capability PCs of {pca.get('n_models', '?')} public models: top 3 explain "
             f"{100 * pca.get('top3', float('nan')):.1f}% of the benchmark variance. Held-out test MSE of the "
             "PC law against log-FLOPs and log-params baselines (arXiv 2405.10938; `indus scaling report`; the "
             f"full report: `{folder}/report.md`).", ""]
    rows = [[t["task"], t["group"], f"{t['n_train']} / {t['n_test']}", _e(t["pcs_test_mse"]),
             _e(t["flops_test_mse"]), _e(t["params_test_mse"])] for t in s.get("tasks", [])]
    lines += _table(rows, ["task", "group", "train / test", "PC law", "log FLOPs", "log params"])
    for png in ("pc1_vs_flops.png", "predictions.png"):
        if (Path(scaling["folder"]) / png).is_file():
            lines += [f"![{png}]({folder}/{png})", ""]
    return lines


def _e(v: Any) -> str:
    return "n/a" if v is None else f"{v:.2e}"


def write_run_report(summary: dict[str, Any], out_dir: str | Path) -> Path:
    """Write ``report.md``, its figures (``figures/``) and ``report.html`` for a pipeline run summary."""
    out = Path(out_dir)
    figs = out / "figures"
    figs.mkdir(parents=True, exist_ok=True)
    ran = [s for s in summary.get("stages", []) if not s["cached"]]
    lines = [f"# indus run: {summary['name']}", "",
             f"{len(summary.get('stages', []))} stages, {len(ran)} run now and the rest reused from the cache; "
             f"{summary.get('wall_s', 0):.0f} s in all. Stage outputs: `stages/<stage>/<key>/`.", ""]
    for section in (_section_fertility, _section_pretrain, _section_models, _section_tradeoff, _section_forecast,
                    _section_scaling):
        lines += section(summary, out, figs)
    lines += ["## Stages", ""]
    lines += _table([[s["name"], s["key"], "cached" if s["cached"] else "ran", _secs(s["wall_s"])]
                     for s in summary.get("stages", [])], ["stage", "key", "this run", "seconds (when it ran)"])
    text = "\n".join(lines)
    path = atomic_write_text(out / "report.md", text)
    write_html(text, out, f"indus run: {summary['name']}")
    return path
