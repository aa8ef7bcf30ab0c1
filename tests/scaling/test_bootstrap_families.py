from __future__ import annotations

import numpy as np
import pytest

from indus.scaling.bootstrap import bootstrap_intervals
from indus.scaling.families import effective_compute, family_fits
from indus.scaling.link import SigmoidLink


def test_intervals_cover_new_draws_at_roughly_the_nominal_rate():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 2))
    f = lambda X: 1 / (1 + np.exp(-(1.5 * X[:, 0] - X[:, 1])))  # noqa: E731
    y = f(X) + rng.normal(0, 0.03, 80)
    link = SigmoidLink().fit(X, y)
    X_new = rng.normal(size=(300, 2))
    y_new = f(X_new) + rng.normal(0, 0.03, 300)
    lo, hi = bootstrap_intervals(link, X, y, X_new, n_bootstrap=200, random_state=1)
    assert np.all(lo <= hi)
    covered = np.mean((y_new >= lo) & (y_new <= hi))
    assert 0.8 <= covered <= 0.98
    lo2, hi2 = bootstrap_intervals(link, X, y, X_new, n_bootstrap=200, random_state=1)
    np.testing.assert_array_equal(lo, lo2)  # seeded
    assert np.isnan(bootstrap_intervals(link, X, y, X_new, n_bootstrap=0)[0]).all()


def test_family_fits_and_effective_compute():
    families = np.array(["A"] * 4 + ["B"] * 3 + ["C"] * 2)
    flops = np.array([1, 10, 100, 1000, 2, 20, 200, 5, 50], dtype=float)
    pcs = np.stack([0.5 * np.log(flops) + np.where(families == "B", 1.0, 0.0), np.ones(9)], axis=1)
    fits = family_fits(families, flops, pcs)
    a1 = next(f for f in fits if f.family == "A" and f.pc == 1)
    assert a1.slope == pytest.approx(0.5) and a1.r2 == pytest.approx(1.0) and a1.n == 4
    assert not any(f.family == "C" for f in fits)  # two models: skipped
    eff = effective_compute(pcs[:, 0], families, flops, reference="A")
    np.testing.assert_allclose(eff(pcs[families == "A", 0]), flops[families == "A"])
    # family B is e^2 ~ 7.4x more compute-efficient than A
    np.testing.assert_allclose(eff(pcs[families == "B", 0]) / flops[families == "B"], np.exp(2.0))
    assert effective_compute(pcs[:, 0], families, flops, reference="missing") is None
