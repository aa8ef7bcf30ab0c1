"""Missing benchmark scores, filled in by iterated low-rank PCA reconstruction (arXiv 2405.10938, Sec. 3.1).

About 1% of the scores in the released tables are missing (a model never run on a benchmark). The paper fills them
by standardising each benchmark on the training models, starting every gap at the column mean, and then alternating
a 1-component PCA fit with replacing the gaps by the rank-1 reconstruction until the filled values stop changing.
New rows (test models, users' models) are filled with the PCA fitted on the training rows, never refitted.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.decomposition import PCA
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted


class PCAImputer(TransformerMixin, BaseEstimator):
    """Fill missing scores with an iterated low-rank PCA reconstruction on standardised columns.

    The reconstruction is learned on the rows given to :meth:`fit` only; :meth:`transform` fills new rows by
    iterating projection and reconstruction with that fixed PCA (the paper's protocol: imputation is fitted on
    training models only, so nothing about a held-out model leaks into the fit).

    Parameters
    ----------
    n_components
        Rank of the reconstruction (1 in the paper).
    max_iter
        Most alternations of fit and fill.
    tol
        Stop once no filled value moves by more than ``tol`` (in standard deviations) in one alternation.
        The authors' code compares the whole matrix, observed entries included, with its reconstruction, which a
        rank-1 model never matches, so it always runs ``max_iter`` rounds; stopping on the filled entries reaches
        the same fixed point sooner.
    clip
        Bounds the filled-in raw scores are clipped to (accuracies live in [0, 1]); ``None`` keeps them as is.

    Attributes
    ----------
    scaler_ : StandardScaler
        Column means and standard deviations of the training rows (missing entries ignored).
    pca_ : PCA
        The reconstruction fitted on the filled training rows.
    n_iter_ : int
        Alternations used in :meth:`fit`.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[0.2, 0.4], [0.4, 0.8], [0.6, np.nan], [0.3, 0.6]])
    >>> PCAImputer().fit_transform(X)[2, 1].round(2)
    np.float64(1.0)
    """

    def __init__(
        self,
        *,
        n_components: int = 1,
        max_iter: int = 1000,
        tol: float = 1e-4,
        clip: tuple[float, float] | None = (0.0, 1.0),
    ) -> None:
        self.n_components = n_components
        self.max_iter = max_iter
        self.tol = tol
        self.clip = clip

    def fit(self, X: np.ndarray, y: None = None) -> PCAImputer:
        """Learn the column scaling and the low-rank reconstruction from ``X`` (n_models, n_benchmarks)."""
        self._fit_fill(X)
        return self

    def fit_transform(self, X: np.ndarray, y: None = None, **fit_params: object) -> np.ndarray:
        """Fit on ``X`` and return it with its gaps filled by the fitted fixed point."""
        return self._fit_fill(X)

    def _fit_fill(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=float)  # (n, d)
        if X.ndim != 2:
            raise ValueError(f"expected a 2-D score matrix, got shape {X.shape}")
        empty = np.isnan(X).all(axis=0)
        if empty.any():
            raise ValueError(
                f"benchmark column(s) {np.flatnonzero(empty).tolist()} have no score among the rows used for fitting"
            )
        if X.shape[0] <= self.n_components:
            raise ValueError(f"need more than {self.n_components} rows to fit the imputation, got {X.shape[0]}")
        self.n_features_in_ = X.shape[1]
        self.scaler_ = StandardScaler().fit(X)  # ignores NaN when computing mean and std
        Z = self.scaler_.transform(X)  # (n, d) standardised
        gaps = np.isnan(Z)
        Z[gaps] = 0.0  # the column mean, in standardised units
        self.n_iter_ = 0
        if gaps.any():
            for self.n_iter_ in range(1, self.max_iter + 1):
                self.pca_ = PCA(n_components=self.n_components, svd_solver="full").fit(Z)
                recon = self.pca_.inverse_transform(self.pca_.transform(Z))  # (n, d)
                step = np.abs(recon[gaps] - Z[gaps]).max()
                Z[gaps] = recon[gaps]
                if step < self.tol:
                    break
        else:
            # nothing to fill in training; still learn the reconstruction so that new rows with gaps can be filled
            self.pca_ = PCA(n_components=self.n_components, svd_solver="full").fit(Z)
        return self._finish(Z, gaps, X)

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Fill the gaps of new rows with the fitted reconstruction (observed scores are returned unchanged)."""
        check_is_fitted(self, "scaler_")
        X = np.asarray(X, dtype=float)  # (m, d)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ValueError(f"expected {self.n_features_in_} benchmark columns, got shape {X.shape}")
        Z = self.scaler_.transform(X)
        gaps = np.isnan(Z)
        Z[gaps] = 0.0
        if gaps.any():
            for _ in range(self.max_iter):
                recon = self.pca_.inverse_transform(self.pca_.transform(Z))
                step = np.abs(recon[gaps] - Z[gaps]).max()
                Z[gaps] = recon[gaps]
                if step < self.tol:
                    break
        return self._finish(Z, gaps, X)

    def _finish(self, Z: np.ndarray, gaps: np.ndarray, X: np.ndarray) -> np.ndarray:
        filled = self.scaler_.inverse_transform(Z)
        if self.clip is not None:
            filled = np.clip(filled, *self.clip)
        out = X.copy()
        out[gaps] = filled[gaps]  # observed scores stay bit-identical
        return out
