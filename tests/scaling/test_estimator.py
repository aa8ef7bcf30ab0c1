from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from indus.scaling.estimator import ObservationalScalingLaw, orient_components

BENCH = ["MMLU", "ARC-C", "HellaSwag", "Winograd", "TruthfulQA", "XWinograd", "HumanEval"]


def _table(n=60, seed=0):
    rng = np.random.default_rng(seed)
    skill = rng.normal(size=(n, 2))
    W = rng.uniform(0.2, 1.0, size=(2, len(BENCH)))
    X = np.clip(0.45 + 0.08 * skill @ W + rng.normal(0, 0.01, (n, len(BENCH))), 0, 1)
    X[rng.random(X.shape) < 0.03] = np.nan
    y = 1 / (1 + np.exp(-(2.0 * skill[:, 0] + skill[:, 1] - 0.5)))
    return pd.DataFrame(X, columns=BENCH), y


def test_predictions_do_not_change_when_benchmark_columns_are_reordered():
    X, y = _table()
    law = ObservationalScalingLaw().fit(X.iloc[:45], y[:45])
    pred = law.predict(X)
    shuffled = list(np.random.default_rng(3).permutation(BENCH))
    # the same fitted law, fed a frame with reordered columns, matches by name
    np.testing.assert_array_equal(law.predict(X[shuffled]), pred)
    # a law fitted on reordered columns gives the same forecasts and the same coefficients
    refit = ObservationalScalingLaw().fit(X[shuffled].iloc[:45], y[:45])
    np.testing.assert_allclose(refit.predict(X[shuffled]), pred, atol=1e-9)
    np.testing.assert_allclose(refit.coef_, law.coef_, atol=1e-7)
    np.testing.assert_allclose(refit.explained_variance_ratio_, law.explained_variance_ratio_, atol=1e-12)


def test_orientation_rules():
    comps = np.array([[-0.5, -0.6, 0.1], [0.2, -0.9, 0.1], [-0.7, 0.1, 0.6]])
    out = orient_components(comps)
    assert out[0].sum() > 0
    assert out[1][np.argmax(np.abs(out[1]))] > 0 and out[2][np.argmax(np.abs(out[2]))] > 0
    np.testing.assert_allclose(np.abs(out), np.abs(comps))


def test_fitted_state_and_conventions():
    X, y = _table()
    law = ObservationalScalingLaw(n_components=2)
    assert clone(law).get_params()["n_components"] == 2
    with pytest.raises(NotFittedError):
        law.predict(X)
    assert law.fit(X, y) is law
    assert law.capabilities(X).shape == (len(X), 2)
    assert law.components_.shape == (2, len(BENCH))
    assert law.train_mse_ < 0.01
    assert list(law.feature_names_in_) == BENCH
    with pytest.raises(ValueError, match="missing"):
        law.predict(X.drop(columns=["MMLU"]))
    with pytest.raises(ValueError, match="n_components"):
        ObservationalScalingLaw(n_components=9).fit(X, y)
