"""Bootstrap prediction intervals for held-out forecasts (beyond the paper, which reports point predictions).

For each of ``B`` rounds the training models are resampled with replacement and the sigmoid link is refitted on
their capabilities (warm-started at the full-data solution, so a round costs a few Jacobian evaluations). A
prediction for a new model is the refitted curve at its capabilities plus one training residual drawn at random,
inflated by ``sqrt(n / (n - p))`` for the fitted parameters; the ``alpha / 2`` and ``1 - alpha / 2`` quantiles over
rounds bound the interval, clipped to the range the target can take (at least [0, 1]). Refitting the link covers the
uncertainty of the fitted law, the residual covers the scatter of single models around it.

The capability PCs are held fixed across rounds: they come from the benchmark table, not from the target, and
refitting the PCA would only rotate the same subspace.
"""

from __future__ import annotations

import numpy as np

from indus.scaling.link import SigmoidLink


def bootstrap_intervals(
    link: SigmoidLink,
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_new: np.ndarray,
    *,
    n_bootstrap: int = 200,
    alpha: float = 0.1,
    random_state: int | np.random.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper prediction bounds for ``X_new`` under a fitted link.

    Parameters
    ----------
    link
        The link fitted on ``(X_train, y_train)``.
    X_train, y_train
        Training features (n, k) and targets (n,).
    X_new
        Features of the models to bound, shape (m, k).
    n_bootstrap
        Resampling rounds (0 returns NaN bounds).
    alpha
        Miscoverage: ``0.1`` gives 90% intervals.
    random_state
        Seed or generator for the resampling.

    Returns
    -------
    (lo, hi) : tuple of ndarray of shape (m,)
    """
    X_train = np.asarray(X_train, dtype=float)
    y_train = np.asarray(y_train, dtype=float)
    X_new = np.asarray(X_new, dtype=float)
    m = X_new.shape[0]
    if n_bootstrap <= 0 or m == 0:
        return np.full(m, np.nan), np.full(m, np.nan)
    rng = np.random.default_rng(random_state)
    n = len(y_train)
    n_params = len(link.params_)
    resid = link.predict(X_train) - y_train  # (n,)
    resid = (resid - resid.mean()) * np.sqrt(n / max(n - n_params, 1))
    draws = np.empty((n_bootstrap, m))  # (B, m)
    refit = SigmoidLink(floor_bounds=link.floor_bounds, max_nfev=200, n_starts=1, tol=1e-5)
    for b in range(n_bootstrap):
        rows = rng.integers(0, n, size=n)
        refit.fit(X_train[rows], y_train[rows], init=link.params_)
        draws[b] = refit.predict(X_new) + rng.choice(resid, size=m)
    lo, hi = np.quantile(draws, [alpha / 2, 1 - alpha / 2], axis=0)
    # a residual can push a draw past what the metric can take; the observed range (at least [0, 1]) bounds it
    floor, ceiling = min(0.0, float(y_train.min())), max(1.0, float(y_train.max()))
    return np.clip(lo, floor, ceiling), np.clip(hi, floor, ceiling)
