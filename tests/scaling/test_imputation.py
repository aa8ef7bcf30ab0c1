from __future__ import annotations

import numpy as np
import pytest

from indus.scaling.imputation import PCAImputer


def _low_rank(n=80, d=8, seed=0, noise=0.002):
    rng = np.random.default_rng(seed)
    skill = rng.normal(size=(n, 1))
    loadings = rng.uniform(0.3, 1.0, size=(1, d))
    offsets = rng.uniform(0.3, 0.6, size=(1, d))
    return np.clip(offsets + 0.08 * skill @ loadings + rng.normal(0, noise, (n, d)), 0, 1)


def test_recovers_hidden_entries_of_a_low_rank_matrix():
    truth = _low_rank()
    rng = np.random.default_rng(1)
    hidden = rng.random(truth.shape) < 0.08
    X = truth.copy()
    X[hidden] = np.nan
    imputer = PCAImputer()
    filled = imputer.fit_transform(X)
    err = np.abs(filled[hidden] - truth[hidden])
    mean_err = np.abs(np.nanmean(X, axis=0)[np.nonzero(hidden)[1]] - truth[hidden])
    assert err.max() < 0.02  # within a few noise standard deviations
    assert err.mean() < 0.1 * mean_err.mean()  # far better than filling with the column mean
    np.testing.assert_array_equal(filled[~hidden], truth[~hidden])  # observed scores untouched
    assert 1 <= imputer.n_iter_ < imputer.max_iter


def test_new_rows_are_filled_with_the_training_fit_only():
    truth = _low_rank(n=120)
    train, test = truth[:80].copy(), truth[80:].copy()
    train[np.random.default_rng(2).random(train.shape) < 0.05] = np.nan
    hidden = np.zeros(test.shape, dtype=bool)
    hidden[::3, 2] = True
    X_test = test.copy()
    X_test[hidden] = np.nan
    imputer = PCAImputer().fit(train)
    before = (imputer.scaler_.mean_.copy(), imputer.pca_.components_.copy())
    filled = imputer.transform(X_test)
    np.testing.assert_allclose(filled[hidden], test[hidden], atol=0.02)
    np.testing.assert_array_equal(before[0], imputer.scaler_.mean_)  # transform never refits
    np.testing.assert_array_equal(before[1], imputer.pca_.components_)


def test_complete_training_rows_still_allow_filling_new_rows():
    truth = _low_rank()
    imputer = PCAImputer().fit(truth[:60])
    row = truth[60:61].copy()
    row[0, 0] = np.nan
    assert imputer.transform(row)[0, 0] == pytest.approx(truth[60, 0], abs=0.02)


def test_clipped_to_valid_scores_and_empty_column_rejected():
    X = np.array([[0.9, 0.95], [0.95, np.nan], [0.2, 0.3], [0.5, 0.6]])
    assert PCAImputer().fit_transform(X)[1, 1] <= 1.0
    with pytest.raises(ValueError, match="no score"):
        PCAImputer().fit(np.array([[0.1, np.nan], [0.2, np.nan], [0.3, np.nan]]))
