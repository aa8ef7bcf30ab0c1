from __future__ import annotations

from indus.pipeline.report import markdown_to_html, plot_fertility, plot_forecast


def test_html_is_self_contained(tmp_path):
    name = plot_fertility([{"tokenizer": "ours", "tokens_per_word": 1.3}, {"tokenizer": "minilm",
                                                                           "tokens_per_word": 1.5}],
                          tmp_path / "fertility.png")
    html = markdown_to_html(f"# Run\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n![f]({name})\n", tmp_path, "demo")
    assert "<table>" in html and "<title>demo</title>" in html
    assert 'src="data:image/png;base64,' in html and "fertility.png" not in html


def test_forecast_plot_draws_without_intervals(tmp_path):
    fc = {"compute": {"intercept": 0.1, "slope_per_decade": 0.05,
                      "forecasts": [{"flops": 1e15, "y": 0.4, "lo": None, "hi": None}]}, "loss": None}
    pts = [{"flops": 1e13, "metric": 0.2}, {"flops": 1e14, "metric": 0.25}]
    assert (tmp_path / plot_forecast({"ner": fc}, {"ner": pts}, tmp_path / "f.png")).stat().st_size > 1000
