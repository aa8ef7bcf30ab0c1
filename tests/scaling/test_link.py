from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from indus.scaling.estimator import ComputeScalingLaw
from indus.scaling.link import SigmoidLink


def _synthetic(coef, intercept, floor, n=200, noise=0.0, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, len(coef)))
    y = (1 - floor) / (1 + np.exp(-(X @ np.asarray(coef) + intercept))) + floor
    return X, y + rng.normal(0, noise, n)


@pytest.mark.parametrize(
    "coef,intercept,floor", [([2.56, 4.63, 4.30], -2.5, 0.0), ([1.5, -0.7], 0.4, 0.12), ([3.0], -1.0, 0.2)]
)
def test_recovers_known_parameters_exactly_without_noise(coef, intercept, floor):
    X, y = _synthetic(coef, intercept, floor)
    link = SigmoidLink().fit(X, y)
    np.testing.assert_allclose(link.coef_, coef, atol=1e-5)
    assert link.intercept_ == pytest.approx(intercept, abs=1e-5)
    assert link.floor_ == pytest.approx(floor, abs=1e-6)


def test_recovers_parameters_under_noise():
    X, y = _synthetic([2.0, -1.0, 0.5], -0.5, 0.1, n=2000, noise=0.02, seed=1)
    link = SigmoidLink().fit(X, y)
    np.testing.assert_allclose(link.coef_, [2.0, -1.0, 0.5], atol=0.1)
    assert link.intercept_ == pytest.approx(-0.5, abs=0.1)
    assert link.floor_ == pytest.approx(0.1, abs=0.02)


def test_floor_stays_in_its_bounds():
    X, y = _synthetic([2.0], 0.0, 0.35)  # true floor above the paper's bound of 0.2
    assert SigmoidLink().fit(X, y).floor_ == pytest.approx(0.2)
    fixed = SigmoidLink(floor_bounds=(0.0, 0.0)).fit(X, y)
    assert fixed.floor_ == 0.0 and len(fixed.params_) == 2


def test_paper_start_alone_can_be_used():
    X, y = _synthetic([1.0, 2.0], -1.0, 0.05)
    np.testing.assert_allclose(SigmoidLink(n_starts=1).fit(X, y).coef_, [1.0, 2.0], atol=1e-4)


def test_predict_before_fit_raises_and_params_are_kept_as_given():
    link = SigmoidLink(floor_bounds=(0.0, 0.1), n_starts=1)
    with pytest.raises(NotFittedError):
        link.predict(np.zeros((1, 1)))
    assert clone(link).get_params() == {"floor_bounds": (0.0, 0.1), "max_nfev": 10000, "n_starts": 1, "tol": 1e-8}


def test_compute_baseline_fits_log_compute():
    flops = np.logspace(-1, 4, 40)
    y = 0.9 / (1 + np.exp(-(1.3 * np.log(flops) - 5))) + 0.1
    law = ComputeScalingLaw().fit(flops, y)
    assert law.coef_[0] == pytest.approx(1.3, abs=1e-3)
    np.testing.assert_allclose(law.predict(flops), y, atol=1e-5)
    with pytest.raises(ValueError):
        law.predict(np.array([np.nan]))
