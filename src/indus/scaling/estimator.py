"""The observational scaling law as a scikit-learn regressor, and the compute-based baselines.

:class:`ObservationalScalingLaw` chains the paper's three steps (arXiv 2405.10938, Sec. 3):

1. fill missing benchmark scores (:class:`~indus.scaling.imputation.PCAImputer`, fitted on the training models);
2. project the scores on their first ``K`` principal components, the *capabilities* ``S`` (PCA on the mean-centred,
   unscaled accuracies, fitted on the training models);
3. map ``S`` to the downstream metric with :class:`~indus.scaling.link.SigmoidLink`.

:class:`ComputeScalingLaw` is the baseline the paper compares against: the same sigmoid on log training FLOPs (or
log parameters).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.decomposition import PCA
from sklearn.utils.validation import check_is_fitted

from indus.scaling.imputation import PCAImputer
from indus.scaling.link import SigmoidLink


def orient_components(components: np.ndarray) -> np.ndarray:
    """Fix the sign of each principal axis so fitted coefficients are comparable across runs and with the paper.

    PC-1 points towards higher scores (its loadings sum to a positive number: more capable models have larger
    PC-1); every later component has its largest-magnitude loading positive. Both rules depend only on the
    loadings, so they do not change when benchmark columns are reordered.

    Parameters
    ----------
    components
        Array of shape (n_components, n_benchmarks); a flipped copy is returned.
    """
    out = np.array(components, dtype=float, copy=True)
    for k in range(out.shape[0]):
        row = out[k]
        sign = np.sign(row.sum()) if k == 0 else np.sign(row[np.argmax(np.abs(row))])
        if sign < 0:
            out[k] = -row
    return out


class ObservationalScalingLaw(RegressorMixin, BaseEstimator):
    """Predict a downstream metric from standard benchmark scores through a few capability dimensions.

    Parameters
    ----------
    n_components
        Number of capability PCs ``K`` (3 in the paper).
    impute
        Fill missing scores with :class:`PCAImputer` (otherwise missing scores are an error).
    imputer_max_iter, imputer_tol
        Passed to :class:`PCAImputer`.
    floor_bounds
        Bounds of the sigmoid floor ``b`` (``[0, 0.2]`` in the paper).
    n_starts
        Starts of the sigmoid fit (see :class:`SigmoidLink`).

    Attributes
    ----------
    feature_names_in_ : ndarray of str
        Benchmark columns seen in :meth:`fit` when ``X`` was a DataFrame; later frames are matched by name.
    imputer_ : PCAImputer or None
    pca_ : PCA
        Fitted on the imputed training scores, with oriented components (see :func:`orient_components`).
    link_ : SigmoidLink
    coef_, intercept_, floor_ : ndarray, float, float
        ``beta``, ``alpha`` and ``b`` of ``Y = (1 - b) sigmoid(beta . S + alpha) + b``.
    explained_variance_ratio_ : ndarray of shape (n_components,)
    components_ : ndarray of shape (n_components, n_benchmarks)
        Loadings of each capability PC.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> skill = rng.normal(size=60)
    >>> X = 0.5 + 0.1 * skill[:, None] * np.array([1.0, 0.8, 1.2]) + rng.normal(0, 0.01, (60, 3))
    >>> y = 1 / (1 + np.exp(-3 * skill))
    >>> law = ObservationalScalingLaw(n_components=1).fit(X, y)
    >>> bool(np.mean((law.predict(X) - y) ** 2) < 1e-2)
    True
    """

    def __init__(
        self,
        *,
        n_components: int = 3,
        impute: bool = True,
        imputer_max_iter: int = 1000,
        imputer_tol: float = 1e-4,
        floor_bounds: tuple[float, float] = (0.0, 0.2),
        n_starts: int = 2,
    ) -> None:
        self.n_components = n_components
        self.impute = impute
        self.imputer_max_iter = imputer_max_iter
        self.imputer_tol = imputer_tol
        self.floor_bounds = floor_bounds
        self.n_starts = n_starts

    def fit(self, X: np.ndarray | pd.DataFrame, y: np.ndarray) -> ObservationalScalingLaw:
        """Fit imputation, PCA and link on training scores ``X`` (n_models, n_benchmarks) and targets ``y``."""
        if isinstance(X, pd.DataFrame):
            self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        elif hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        X = np.asarray(X, dtype=float)
        y = np.asarray(y, dtype=float)
        if X.shape[0] != y.shape[0]:
            raise ValueError(f"{X.shape[0]} score rows but {y.shape[0]} targets")
        if not 1 <= self.n_components <= min(X.shape):
            raise ValueError(
                f"n_components must be in [1, min(n_models, n_benchmarks)] = [1, {min(X.shape)}], "
                f"got {self.n_components}"
            )
        self.n_features_in_ = X.shape[1]
        if self.impute:
            self.imputer_ = PCAImputer(max_iter=self.imputer_max_iter, tol=self.imputer_tol)
            X = self.imputer_.fit_transform(X)
        else:
            self.imputer_ = None
            if np.isnan(X).any():
                raise ValueError("missing benchmark scores; use impute=True")
        self.pca_ = PCA(n_components=self.n_components, svd_solver="full").fit(X)
        self.pca_.components_ = orient_components(self.pca_.components_)
        S = self.pca_.transform(X)  # (n, K)
        self.link_ = SigmoidLink(floor_bounds=self.floor_bounds, n_starts=self.n_starts).fit(S, y)
        self.coef_ = self.link_.coef_
        self.intercept_ = self.link_.intercept_
        self.floor_ = self.link_.floor_
        self.components_ = self.pca_.components_
        self.explained_variance_ratio_ = self.pca_.explained_variance_ratio_
        self.train_capabilities_ = S
        self.train_mse_ = float(np.mean((self.link_.predict(S) - y) ** 2))
        return self

    def _scores(self, X: np.ndarray | pd.DataFrame) -> np.ndarray:
        check_is_fitted(self, "link_")
        if isinstance(X, pd.DataFrame) and hasattr(self, "feature_names_in_"):
            missing = [c for c in self.feature_names_in_ if c not in X.columns]
            if missing:
                raise ValueError(f"benchmark column(s) missing: {', '.join(missing)}")
            X = X.loc[:, list(self.feature_names_in_)]
        X = np.asarray(X, dtype=float)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ValueError(f"expected {self.n_features_in_} benchmark columns, got shape {X.shape}")
        if self.imputer_ is not None:
            X = self.imputer_.transform(X)
        elif np.isnan(X).any():
            raise ValueError("missing benchmark scores; use impute=True")
        return X

    def imputed(self, X: np.ndarray | pd.DataFrame) -> np.ndarray:
        """Scores with gaps filled by the fitted imputer, shape (n, n_benchmarks)."""
        return self._scores(X)

    def capabilities(self, X: np.ndarray | pd.DataFrame) -> np.ndarray:
        """The capability PCs ``S`` of each row, shape (n, n_components)."""
        X = self._scores(X)
        return self.pca_.transform(X)

    def decision_function(self, X: np.ndarray | pd.DataFrame) -> np.ndarray:
        """The linear score ``beta . S + alpha`` (before the sigmoid), shape (n,)."""
        S = self.capabilities(X)
        return self.link_.decision_function(S)

    def predict(self, X: np.ndarray | pd.DataFrame) -> np.ndarray:
        """Predicted downstream metric for each row of benchmark scores, shape (n,)."""
        S = self.capabilities(X)
        return self.link_.predict(S)


class ComputeScalingLaw(RegressorMixin, BaseEstimator):
    """The paper's baseline: the floor-sigmoid on log training compute (or log parameter count).

    Parameters
    ----------
    floor_bounds
        Bounds of the floor, as in :class:`SigmoidLink`.
    eps
        Added before the logarithm (the authors' ``log(x + 1e-9)``).

    Examples
    --------
    >>> import numpy as np
    >>> flops = np.logspace(0, 3, 30)
    >>> y = 1 / (1 + np.exp(-(np.log(flops) - 4)))
    >>> bool(np.allclose(ComputeScalingLaw().fit(flops, y).predict(flops), y, atol=1e-3))
    True
    """

    def __init__(self, *, floor_bounds: tuple[float, float] = (0.0, 0.2), eps: float = 1e-9) -> None:
        self.floor_bounds = floor_bounds
        self.eps = eps

    def _log(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=float).reshape(-1)
        if (x <= -self.eps).any() or np.isnan(x).any():
            raise ValueError("compute must be a positive number for every model")
        return np.log(x + self.eps)[:, None]  # (n, 1)

    def fit(self, x: np.ndarray, y: np.ndarray) -> ComputeScalingLaw:
        """Fit on compute ``x`` (n,) in any fixed unit and targets ``y`` (n,)."""
        self.link_ = SigmoidLink(floor_bounds=self.floor_bounds).fit(self._log(x), np.asarray(y, dtype=float))
        self.coef_, self.intercept_, self.floor_ = self.link_.coef_, self.link_.intercept_, self.link_.floor_
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Predicted metric for compute ``x`` (n,)."""
        check_is_fitted(self, "link_")
        return self.link_.predict(self._log(x))
