from __future__ import annotations

import numpy as np
import pytest

from indus.pipeline.forecast import LogLinearFit, Point, forecast_metric


def test_exact_laws_are_recovered_and_extrapolated():
    flops = np.array([1e13, 3e13, 1e14, 3e14])
    loss = 6.0 * (flops / 1e13) ** -0.1  # a power law in compute
    metric = 1.2 - 0.15 * loss  # linear in the loss
    points = [Point(f"m{i}", f, lo, y) for i, (f, lo, y) in enumerate(zip(flops, loss, metric, strict=True))]
    out = forecast_metric(points, multipliers=(10.0,))
    comp, via_loss = out["compute"]["forecasts"][0], out["loss"]["forecasts"][0]
    c_new = 3e15
    truth = 1.2 - 0.15 * 6.0 * (c_new / 1e13) ** -0.1
    assert via_loss["flops"] == pytest.approx(c_new)
    assert via_loss["y"] == pytest.approx(truth, abs=1e-9)
    assert via_loss["lo"] == pytest.approx(truth, abs=1e-6) and via_loss["hi"] == pytest.approx(truth, abs=1e-6)
    # the log-linear law is only an approximation of this curve: it forecasts a value, with a finite interval
    assert comp["lo"] <= comp["y"] <= comp["hi"]


def test_prediction_interval_covers_at_its_level():
    rng = np.random.default_rng(0)
    x = np.log10([1e13, 2e13, 5e13, 1e14, 2e14])
    hits = 0
    trials = 2000
    for _ in range(trials):
        y = 0.3 + 0.04 * x + rng.normal(0, 0.01, size=x.size)
        fit = LogLinearFit.fit(x, y)
        lo, hi = fit.interval(15.0, alpha=0.1)
        new = 0.3 + 0.04 * 15.0 + rng.normal(0, 0.01)
        hits += lo <= new <= hi
    assert 0.87 < hits / trials < 0.93


def test_too_few_models_say_so():
    out = forecast_metric([Point("a", 1e13, 5.0, 0.2)])
    assert out["compute"] is None and "two" in out["note"]
    out = forecast_metric([Point("a", 1e13, 5.0, 0.2), Point("b", 1e14, 4.0, 0.3)])
    assert out["compute"]["forecasts"][0]["lo"] is None and "three" in out["note"]
    assert out["compute"]["slope_per_decade"] == pytest.approx(0.1)


def test_forecasts_stay_in_metric_bounds():
    points = [Point(f"m{i}", 10.0 ** (13 + i), None, 0.3 + 0.3 * i) for i in range(3)]
    out = forecast_metric(points, multipliers=(100.0,))
    f = out["compute"]["forecasts"][0]
    assert f["y"] == 1.0 and out["loss"] is None
