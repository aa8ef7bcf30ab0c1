"""The link from capabilities to a downstream metric: a sigmoid with a floor (arXiv 2405.10938, Eq. 7).

    Y = (1 - b) * sigmoid(beta . X + alpha) + b,    b in [0, 0.2]

``b`` is the floor a model reaches by chance (e.g. guessing on a multiple-choice task); the ceiling is fixed at 1.
The parameters are fitted by bounded nonlinear least squares (``scipy.optimize.least_squares``, trust-region
reflective), which is what the authors' ``curve_fit(..., bounds=...)`` call runs.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import least_squares
from scipy.special import expit
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted


class SigmoidLink(RegressorMixin, BaseEstimator):
    """Sigmoid of a linear score with a bounded floor, fitted by bounded least squares.

    Parameters
    ----------
    floor_bounds
        ``(low, high)`` for the floor ``b``; ``(0, 0)`` fixes it at zero (a plain sigmoid).
    max_nfev
        Most function evaluations per start.
    n_starts
        1 uses only the authors' start (``alpha = 0``, ``beta = 0.03``, ``b = 0``; ``init_val`` in their
        ``fit_multivariate_regression_model``); 2 also starts from a linear fit
        of the logit of the clipped targets, and the fit with the lower training loss is kept.
    tol
        ``ftol``, ``xtol`` and ``gtol`` of the solver.

    Attributes
    ----------
    coef_ : ndarray of shape (n_features,)
        ``beta``.
    intercept_ : float
        ``alpha``.
    floor_ : float
        ``b``.
    cost_ : float
        Half the sum of squared training residuals at the solution.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.linspace(-3, 3, 50)[:, None]
    >>> y = 0.9 / (1 + np.exp(-(2 * x[:, 0] - 1))) + 0.1
    >>> link = SigmoidLink().fit(x, y)
    >>> np.round([link.coef_[0], link.intercept_, link.floor_], 3).tolist()
    [2.0, -1.0, 0.1]
    """

    def __init__(
        self,
        *,
        floor_bounds: tuple[float, float] = (0.0, 0.2),
        max_nfev: int = 10000,
        n_starts: int = 2,
        tol: float = 1e-8,
    ) -> None:
        self.floor_bounds = floor_bounds
        self.max_nfev = max_nfev
        self.n_starts = n_starts
        self.tol = tol

    def fit(self, X: np.ndarray, y: np.ndarray, *, init: np.ndarray | None = None) -> SigmoidLink:
        """Fit on features ``X`` (n, k) and targets ``y`` (n,).

        ``init`` (``[alpha, beta..., b]``) replaces the default starts; the bootstrap uses it to warm-start refits.
        """
        X = np.asarray(X, dtype=float)
        y = np.asarray(y, dtype=float)
        if X.ndim != 2 or y.shape != (X.shape[0],):
            raise ValueError(f"expected X (n, k) and y (n,), got {X.shape} and {y.shape}")
        if not np.isfinite(X).all() or not np.isfinite(y).all():
            raise ValueError("features and targets must be finite")
        lo, hi = self.floor_bounds
        if not 0.0 <= lo <= hi < 1.0:
            raise ValueError(f"floor_bounds must satisfy 0 <= low <= high < 1, got {self.floor_bounds}")
        k = X.shape[1]
        free_floor = hi > lo
        self.n_features_in_ = k

        def unpack(p: np.ndarray) -> tuple[float, np.ndarray, float]:
            return p[0], p[1 : k + 1], (p[k + 1] if free_floor else lo)

        def residual(p: np.ndarray) -> np.ndarray:
            a, w, b = unpack(p)
            return (1.0 - b) * expit(X @ w + a) + b - y  # (n,)

        def jacobian(p: np.ndarray) -> np.ndarray:
            a, w, b = unpack(p)
            s = expit(X @ w + a)  # (n,)
            ds = (1.0 - b) * s * (1.0 - s)  # (n,)
            cols = [ds[:, None], ds[:, None] * X]
            if free_floor:
                cols.append((1.0 - s)[:, None])
            return np.hstack(cols)  # (n, k + 1 [+ 1])

        lower = np.full(k + 1, -np.inf)
        upper = np.full(k + 1, np.inf)
        if free_floor:
            lower, upper = np.append(lower, lo), np.append(upper, hi)
        starts = [np.asarray(init, dtype=float)] if init is not None else self._starts(X, y, free_floor, lo)
        best = None
        for p0 in starts:
            p0 = np.clip(p0, lower, upper)  # a warm start or the logit start may sit outside the floor's box
            sol = least_squares(
                residual,
                p0,
                jac=jacobian,
                bounds=(lower, upper),
                method="trf",
                max_nfev=self.max_nfev,
                ftol=self.tol,
                xtol=self.tol,
                gtol=self.tol,
            )
            if best is None or sol.cost < best.cost:
                best = sol
        a, w, b = unpack(best.x)
        self.intercept_, self.coef_, self.floor_ = float(a), np.asarray(w, dtype=float).copy(), float(b)
        self.cost_ = float(best.cost)
        self.params_ = best.x.copy()
        return self

    def _starts(self, X: np.ndarray, y: np.ndarray, free_floor: bool, lo: float) -> list[np.ndarray]:
        k = X.shape[1]
        paper = np.concatenate([[0.0], np.full(k, 3e-2), [lo] if free_floor else []])
        starts = [paper]
        if self.n_starts >= 2:
            # a linear fit of the logit: lands in the right basin when the targets span the sigmoid's bend
            z = np.log(np.clip(y, 0.01, 0.99) / (1 - np.clip(y, 0.01, 0.99)))
            design = np.hstack([np.ones((len(y), 1)), X])
            coef, *_ = np.linalg.lstsq(design, z, rcond=None)
            starts.append(np.concatenate([coef, [lo] if free_floor else []]))
        return starts

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """The linear score ``beta . X + alpha`` (the x-axis the sigmoid acts on)."""
        check_is_fitted(self, "coef_")
        return np.asarray(X, dtype=float) @ self.coef_ + self.intercept_

    def predict(self, X: np.ndarray) -> np.ndarray:
        """``(1 - b) * sigmoid(beta . X + alpha) + b`` for each row of ``X``."""
        check_is_fitted(self, "coef_")
        return (1.0 - self.floor_) * expit(self.decision_function(X)) + self.floor_
