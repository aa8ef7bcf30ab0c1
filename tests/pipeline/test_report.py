from __future__ import annotations

import json
from html.parser import HTMLParser
from itertools import combinations
from pathlib import Path

import pytest

from indus.pipeline.report import (
    draw_fertility,
    draw_forecast,
    draw_loss_curves,
    draw_models,
    draw_tradeoff,
    markdown_to_html,
    plot_fertility,
    plot_forecast,
    speedup,
    write_run_report,
)


def test_html_is_self_contained(tmp_path):
    name = plot_fertility(
        [{"tokenizer": "ours", "tokens_per_word": 1.3}, {"tokenizer": "minilm", "tokens_per_word": 1.5}],
        tmp_path / "fertility.png",
    )
    html = markdown_to_html(f"# Run\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n![f]({name})\n", tmp_path, "demo")
    assert "<table>" in html and "<title>demo</title>" in html
    assert 'src="data:image/png;base64,' in html and "fertility.png" not in html


def test_forecast_plot_draws_without_intervals(tmp_path):
    fc = {
        "compute": {
            "intercept": 0.1,
            "slope_per_decade": 0.05,
            "forecasts": [{"flops": 1e15, "y": 0.4, "lo": None, "hi": None}],
        },
        "loss": None,
    }
    pts = [{"flops": 1e13, "metric": 0.2}, {"flops": 1e14, "metric": 0.25}]
    assert (tmp_path / plot_forecast({"ner": fc}, {"ner": pts}, tmp_path / "f.png")).stat().st_size > 1000


# ---------------------------------------------------------------- the page escapes what configs and data say

XSS = "<img src=x onerror=alert(1)>"
SCRIPT = "<script>alert(2)</script>"
LINK = "[click](javascript:alert(3))"
PIPE = "a|b"


class _Page(HTMLParser):
    """Every tag with its attributes, the text of <title> and <h1>, the cells per table row."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: dict[str, str] = {"title": "", "h1": ""}
        self.rows: list[int] = []
        self._open: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._open.append(tag)
        if tag == "tr":
            self.rows.append(0)
        if tag in ("td", "th"):
            self.rows[-1] += 1

    def handle_endtag(self, tag):
        if tag in self._open:
            del self._open[len(self._open) - 1 - self._open[::-1].index(tag) :]

    def handle_data(self, data):
        for tag in ("title", "h1"):
            if tag in self._open:
                self.text[tag] += data


def _log(path: Path, losses: list[float]) -> str:
    path.write_text(
        "".join(
            json.dumps({"step": i, "tokens": 100 * (i + 1), "loss": v, "valid_loss": v}) + "\n"
            for i, v in enumerate(losses)
        )
    )
    return str(path)


def _hostile_summary(tmp_path: Path) -> dict:
    """A run summary whose every name comes from a hostile config: run, models, presets, data, tokenizers, tasks."""
    enc, student, ret, ret_student = f"enc{XSS}", f"student{LINK}", f"ret{SCRIPT}", f"rs{PIPE}"
    scaling = tmp_path / "stages" / "scaling" / "k" / "scaling"
    scaling.mkdir(parents=True)
    plot_fertility([{"tokenizer": "t", "tokens_per_word": 1.0}], scaling / "pc1_vs_flops.png")
    evals = []
    for task, data, metric, models in (
        ("ner", f"data{XSS}", "f1", [("minilm", "baseline"), (enc, "built"), (student, "built")]),
        (f"ir{SCRIPT}", f"beir{LINK}", "ndcg@10", [("bm25", "baseline"), (ret, "built"), (ret_student, "built")]),
    ):
        for i, (m, kind) in enumerate(models):
            evals.append(
                {
                    "task": task,
                    "data": data,
                    "model": m,
                    "kind": kind,
                    "metric": metric,
                    "role": "retriever" if task != "ner" else "encoder",
                    "value": 0.5 + 0.1 * i,
                    "std": None,
                    "wall_s": 1.0,
                    "latency_ms": 2.0 + i,
                    "result": {"primary_metric": metric, metric: 0.5 + 0.1 * i},
                }
            )
    point = {"model": enc, "flops": 1e12, "loss": 5.0, "metric": 0.6}
    fc = {
        "n": 1,
        "alpha": 0.1,
        "metric": "f1",
        "note": f"note {XSS}",
        "points": [point],
        "compute": {
            "intercept": 0.1,
            "slope_per_decade": 0.05,
            "r2": 0.9,
            "forecasts": [{"multiplier": 10.0, "flops": 1e13, "y": 0.65, "lo": 0.5, "hi": 0.8}],
        },
        "loss": None,
    }
    return {
        "name": XSS,
        "out_dir": str(tmp_path),
        "wall_s": 3.0,
        "stages": [{"name": f"pretrain/{enc}", "key": f"k{SCRIPT}", "cached": False, "wall_s": 1.0}],
        "fertility": [
            {
                "tokenizer": f"tok{XSS}",
                "vocab_size": 100,
                "tokens": 10,
                "tokens_per_word": 1.1,
                "relative_diff_pct": 0.0,
            },
            {
                "tokenizer": f"other{LINK}",
                "vocab_size": 200,
                "tokens": 11,
                "tokens_per_word": 1.2,
                "relative_diff_pct": 10.0,
            },
        ],
        "pretrain": [
            {
                "name": enc,
                "preset": f"tiny{XSS}",
                "log": _log(tmp_path / "a.jsonl", [6.0, 5.5, 5.2]),
                "params": 10,
                "steps": 3,
                "tokens_seen": 300,
                "train_flops": 1e12,
                "valid_loss": 5.2,
            }
        ],
        "distill": [
            {
                "name": student,
                "teacher": enc,
                "preset": f"nano{SCRIPT}",
                "log": _log(tmp_path / "b.jsonl", [3e-4, 2e-4]),
                "params": 5,
                "steps": 2,
            }
        ],
        "models": [
            {"name": enc, "role": "encoder", "kind": "built", "teacher": None},
            {"name": student, "role": "encoder", "kind": "built", "teacher": enc},
            {"name": "minilm", "role": "encoder", "kind": "baseline", "teacher": None},
            {"name": ret, "role": "retriever", "kind": "built", "teacher": None},
            {"name": ret_student, "role": "retriever", "kind": "built", "teacher": ret},
            {"name": "bm25", "role": "retriever", "kind": "baseline", "teacher": None},
        ],
        "evals": evals,
        "latency": {enc: 2.0, student: 1.0, "minilm": 5.0},
        "forecast": {f"ner:data{XSS}": fc},
        "scaling": {
            "folder": str(scaling),
            "summary": {
                "pca": {"n_models": 3, "top3": 0.9},
                "tasks": [
                    {
                        "task": f"gsm{XSS}",
                        "group": f"g{LINK}",
                        "n_train": 2,
                        "n_test": 1,
                        "pcs_test_mse": 0.1,
                        "flops_test_mse": None,
                        "params_test_mse": 0.2,
                    }
                ],
            },
        },
    }


def test_report_escapes_every_name_that_reaches_the_page(tmp_path):
    summary = _hostile_summary(tmp_path)
    write_run_report(summary, tmp_path)
    text = (tmp_path / "report.html").read_text(encoding="utf-8")
    page = _Page()
    page.feed(text)
    tags = {t for t, _ in page.tags}
    assert not tags & {"script", "iframe", "object", "embed", "svg"}
    assert sum(t == "img" for t, _ in page.tags) == 6  # five figures and the scaling one: no injected image
    for tag, attrs in page.tags:
        assert not any(k.startswith("on") for k in attrs), (tag, attrs)
        if tag == "img":
            assert attrs["src"].startswith("data:image/png;base64,")
        if "href" in attrs:
            assert not attrs["href"].lower().startswith(("javascript:", "data:", "vbscript:")), attrs
    # the hostile names show as themselves, as text
    assert page.text["title"] == f"indus run: {XSS}" and page.text["h1"] == f"indus run: {XSS}"
    for name in (SCRIPT, LINK, f"rs{PIPE}", f"tiny{XSS}", f"tok{XSS}", f"gsm{XSS}", f"note {XSS}"):
        assert name.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;") in text
    # a pipe in a name is no new table column: every row has its header's cells
    tables = text.split("<table>")[1:]
    for table in tables:
        sub = _Page()
        sub.feed(table.split("</table>")[0])
        assert len(set(sub.rows)) == 1, sub.rows
    md = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert "<img" not in md and "<script" not in md and " [click](" not in md and "\\[click\\](" in md


def test_raw_html_and_unsafe_links_in_markdown_are_inert(tmp_path):
    html = markdown_to_html(
        f"# {XSS}\n\n{SCRIPT}\n\n{LINK} [ok](https://example.org) [rel](figures/x.png)\n\n"
        f"![i](../../../etc/passwd.png)\n",
        tmp_path,
        "{{body}}</title><script>x</script>",
    )
    page = _Page()
    page.feed(html)
    assert not {"script"} & {t for t, _ in page.tags}
    assert page.text["title"] == "{{body}}</title><script>x</script>"
    hrefs = [a["href"] for t, a in page.tags if t == "a"]
    assert hrefs == ["#", "https://example.org", "figures/x.png"]
    assert [a["src"] for t, a in page.tags if t == "img"] == ["../../../etc/passwd.png"]  # outside: not inlined


# ---------------------------------------------------------------- pictures that do not mislead


def _boxes_overlap(a, b) -> bool:
    return a.x0 < b.x1 - 0.5 and b.x0 < a.x1 - 0.5 and a.y0 < b.y1 - 0.5 and b.y0 < a.y1 - 0.5


def _rendered(fig):
    fig.canvas.draw()
    return fig.canvas.get_renderer()


def test_loss_curves_give_each_objective_its_own_axis():
    mlm = {
        "a": [{"tokens": 100 * i, "loss": 6 - 0.1 * i} for i in range(1, 6)],
        "b": [{"tokens": 100 * i, "valid_loss": 6 - 0.2 * i} for i in range(6)],
    }
    kl = {"s": [{"tokens": 100 * i, "loss": 3e-4 / i, "valid_loss": 2e-4 / i} for i in range(1, 4)]}
    fig = draw_loss_curves({"masked-LM loss": mlm, "MiniLMv2 loss": kl})
    axes = fig.axes
    assert len(axes) == 2 and [ax.get_ylabel() for ax in axes] == ["masked-LM loss", "MiniLMv2 loss"]
    mlm_y = [y for line in axes[0].get_lines() for y in line.get_ydata()]
    kl_y = [y for line in axes[1].get_lines() for y in line.get_ydata()]
    assert min(mlm_y) > 4 and max(kl_y) < 1e-3  # no curve on the other objective's axis
    lo, hi = axes[0].get_ylim()
    assert lo > 3  # the MLM axis is not stretched down to the distillation loss
    # a run that has only MLM curves draws one panel
    assert len(draw_loss_curves({"masked-LM loss": mlm, "MiniLMv2 loss": {}}).axes) == 1


def test_loss_curves_on_a_log_axis_leave_out_step_zero():
    runs = {"a": [{"tokens": t, "loss": 5.0} for t in (0, 10, 100, 1000, 10_000)]}
    ax = draw_loss_curves({"masked-LM loss": runs}).axes[0]
    assert ax.get_xscale() == "log" and min(ax.get_lines()[0].get_xdata()) == 10


def test_loss_curves_label_a_short_log_axis_without_overlap():
    # 1.6 decades (the demo's range): matplotlib's default also labels minor ticks there, and in the demo's report
    # the labels overlapped; 1-2-5 ticks with SI prefixes instead
    runs = {"a": [{"tokens": t, "loss": 5.0} for t in (20_480, 100_000, 819_200)]}
    fig = draw_loss_curves({"masked-LM loss": runs})
    renderer = _rendered(fig)
    ax = fig.axes[0]
    assert all(t.get_text() == "" for t in ax.xaxis.get_minorticklabels())
    lo, hi = ax.get_xlim()
    shown = [t for t in ax.xaxis.get_majorticklabels() if t.get_text() and lo <= t.get_position()[0] <= hi]
    assert len(shown) >= 3 and "100k" in [t.get_text() for t in shown]
    for a, b in combinations(shown, 2):
        assert not _boxes_overlap(a.get_window_extent(renderer), b.get_window_extent(renderer))


def _tradeoff_points():
    def p(task, model, kind, value, ms, teacher=None):
        return {
            "task": task,
            "model": model,
            "kind": kind,
            "teacher": teacher,
            "metric": "f1",
            "value": value,
            "latency_ms": ms,
            "latency_label": "ms per sentence (batch 1)",
        }

    return [
        p("ner: toy", "minilm", "baseline", 0.31, 16.7),
        p("ner: toy", "micro-s", "built", 0.184, 1.44),
        p("ner: toy", "micro-m", "built", 0.184, 1.40),
        p("ner: toy", "micro-l", "built", 0.213, 1.74),
        p("ner: toy", "micro-student", "built", 0.265, 1.69, "micro-l"),
        p("ner: toy", "a-rather-long-model-name-at-the-right", "built", 0.30, 17.5),
        p("ir: toyir", "bm25", "baseline", 1.0, 1.2),
        p("ir: toyir", "ret", "built", 0.744, 3.60),
        p("ir: toyir", "ret-student", "built", 0.744, 3.33, "ret"),
        p("ir: toyir", "minilm", "baseline", 0.917, 13.0),
    ]


def test_tradeoff_labels_neither_overlap_nor_leave_their_panel(tmp_path):
    fig = draw_tradeoff(_tradeoff_points())
    renderer = _rendered(fig)
    for ax in fig.axes:
        box = ax.get_window_extent(renderer)
        labels = [t for t in ax.texts if t.get_text()]
        boxes = [t.get_window_extent(renderer) for t in labels]
        assert labels
        for t, b in zip(labels, boxes, strict=True):
            assert box.x0 <= b.x0 and b.x1 <= box.x1 and box.y0 <= b.y0 and b.y1 <= box.y1, t.get_text()
            assert not _boxes_overlap(b, ax.get_legend().get_window_extent(renderer)), t.get_text()
        assert not any(_boxes_overlap(a, b) for a, b in combinations(boxes, 2))
        ticks = [t.get_window_extent(renderer) for t in ax.get_xticklabels() if t.get_text() and t.get_visible()]
        assert len(ticks) >= 2 and not any(_boxes_overlap(a, b) for a, b in combinations(ticks, 2))
    # points drawn on one spot share one label, and every model is named
    texts = [t.get_text() for ax in fig.axes for t in ax.texts if t.get_text()]
    assert "micro-m, micro-s" in texts and "ret-student, ret" in texts
    named = {n for t in texts for n in t.split(", ")}
    assert named == {p["model"] for p in _tradeoff_points()}
    # the second panel's y label stays clear of the first panel
    left, right = fig.axes
    assert right.yaxis.label.get_window_extent(renderer).x0 > left.get_window_extent(renderer).x1


def test_forecast_has_its_metric_on_the_y_axis():
    fc = {
        "metric": "f1",
        "alpha": 0.1,
        "compute": {
            "intercept": 0.1,
            "slope_per_decade": 0.05,
            "forecasts": [{"flops": 1e15, "y": 0.4, "lo": 0.3, "hi": 0.5}],
        },
        "loss": None,
    }
    fig = draw_forecast({"ner:toy": fc}, {"ner:toy": [{"flops": 1e13, "metric": 0.2}, {"flops": 1e14, "metric": 0.3}]})
    ax = fig.axes[0]
    assert ax.get_ylabel() == "f1 on ner:toy" and "FLOPs" in ax.get_xlabel()


def test_model_bars_name_their_metric_and_the_legend_covers_no_bar():
    evals = [
        {"task": "ner", "data": "toy", "metric": "f1", "model": m, "kind": k, "value": v, "std": None}
        for m, k, v in (("minilm", "baseline", 0.9), ("a", "built", 0.5))
    ]
    evals += [
        {
            "task": "ir",
            "data": "toyir",
            "metric": "ndcg@10",
            "model": "bm25",
            "kind": "baseline",
            "value": 1.0,
            "std": 0.0,
        }
    ]
    fig = draw_models(evals)
    renderer = _rendered(fig)
    assert [ax.get_xlabel() for ax in fig.axes] == ["f1", "ndcg@10"]
    legend = fig.legends[0].get_window_extent(renderer)
    for ax in fig.axes:
        for patch in ax.patches:
            assert not _boxes_overlap(patch.get_window_extent(renderer), legend)
        box = ax.get_window_extent(renderer)
        assert all(t.get_window_extent(renderer).x1 <= box.x1 for t in ax.texts)  # values inside the panel


def test_fertility_values_stay_inside_the_axes():
    fig = draw_fertility([{"tokenizer": "ours", "tokens_per_word": 1.085}, {"tokenizer": "b", "tokens_per_word": 1.9}])
    renderer = _rendered(fig)
    ax = fig.axes[0]
    assert all(t.get_window_extent(renderer).x1 <= ax.get_window_extent(renderer).x1 for t in ax.texts)


@pytest.mark.parametrize(
    "slow, fast, text",
    [
        (1.74, 1.69, "1.03x"),
        (0.05, 1.0, "0.05x"),
        (3.6, 3.6, "1x"),
        (17.54, 1.0, "17.5x"),
        (1234.0, 1.0, "1,234x"),
        (None, 1.0, "n/a"),
        (1.0, 0.0, "n/a"),
    ],
)
def test_speedup_never_rounds_a_ratio_to_zero(slow, fast, text):
    assert speedup(slow, fast) == text


def test_models_table_shows_the_learning_rate_chosen_on_dev(tmp_path):
    from indus.pipeline.report import _section_models

    def ner(model: str, value: float, lr_choice: dict) -> dict:
        result = {"task": "ner", "primary_metric": "f1", "model": model, "data": "toy", "f1": value, "f1_std": 0.0}
        result["per_seed"] = [{"seed": 0, "f1": value}]
        result["lr_choice"] = lr_choice
        row = {"task": "ner", "data": "toy", "metric": "f1", "model": model, "kind": "built", "value": value}
        return {**row, "std": 0.0, "wall_s": 1.0, "result": result}

    auto = {"mode": "auto", "lr": 3e-4, "grid": {"0.0003": {"dev": 0.38}, "0.001": {"dev": 0.0}}}
    lines = _section_models(
        {"evals": [ner("a", 0.4, auto), ner("b", 0.5, {"mode": "fixed", "lr": 1e-3})]}, tmp_path, tmp_path
    )
    rows = [line for line in lines if line.startswith("| a ") or line.startswith("| b ")]
    assert "lr (dev)" in next(line for line in lines if line.startswith("| model"))
    assert "0.0003 (0.0003: 0.380, 0.001: 0.000)" in rows[0] and "| 0.001 |" in rows[1]
    # a fixed learning rate everywhere: no column
    fixed = _section_models({"evals": [ner("b", 0.5, {"mode": "fixed", "lr": 1e-3})]}, tmp_path, tmp_path)
    assert not any("lr (dev)" in line for line in fixed if line.startswith("| model"))
