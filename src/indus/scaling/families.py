"""Within-family compute scaling of the capabilities, and effective compute (arXiv 2405.10938, Sec. 3.3-3.4).

Inside one model family each capability PC is close to linear in log training compute,
``S_k = theta_f,k log C + nu_f,k``: families differ in how efficiently they turn FLOPs into capabilities, not in the
shape of the relation. Effective compute maps any model's predicted linear score ``beta . S + alpha`` back onto the
log-FLOPs of one reference family (Llama-2 by default): "this model is as capable, for this task, as a Llama-2
trained with C FLOPs".
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy.stats import linregress

from indus.scaling.estimator import orient_components
from indus.scaling.imputation import PCAImputer
from indus.scaling.scores import FAMILY, FLOPS, MODEL


@dataclass(frozen=True)
class FamilyFit:
    """One least-squares line ``pc = slope * ln(FLOPs / 1e21) + intercept`` within a family."""

    family: str
    pc: int
    n: int
    slope: float
    intercept: float
    r2: float

    def to_dict(self) -> dict[str, object]:
        """Plain JSON-ready dict."""
        return asdict(self)


def family_fits(
    families: np.ndarray, flops: np.ndarray, capabilities: np.ndarray, *, min_models: int = 3
) -> list[FamilyFit]:
    """Fit every capability PC against log compute within each family.

    Parameters
    ----------
    families
        Family label of each model, shape (n,).
    flops
        Training compute of each model (any fixed unit; NaN where unknown), shape (n,).
    capabilities
        Capability PCs of each model, shape (n, K).
    min_models
        Families with fewer models with known compute are skipped (two points always fit a line exactly).

    Returns
    -------
    list of FamilyFit
        One entry per (family, PC), families in order of first appearance.
    """
    families = np.asarray(families, dtype=object)
    flops = np.asarray(flops, dtype=float)
    capabilities = np.asarray(capabilities, dtype=float)
    out: list[FamilyFit] = []
    for family in dict.fromkeys(families):
        rows = (families == family) & np.isfinite(flops) & (flops > 0)
        logc = np.log(flops[rows])
        if rows.sum() < min_models or np.ptp(logc) == 0:
            continue
        for k in range(capabilities.shape[1]):
            fit = linregress(logc, capabilities[rows, k])
            out.append(
                FamilyFit(
                    str(family), k + 1, int(rows.sum()), float(fit.slope), float(fit.intercept), float(fit.rvalue**2)
                )
            )
    return out


@dataclass(frozen=True)
class EffectiveCompute:
    """The reference family's line ``score = slope * ln(FLOPs) + intercept`` and its inverse.

    ``flops`` are in the unit of the table they were fitted on (1e21 FLOPs for the packaged tables).
    """

    family: str
    slope: float
    intercept: float
    n: int

    def __call__(self, score: np.ndarray) -> np.ndarray:
        """Effective compute (same unit as the fitted FLOPs) for linear scores ``beta . S + alpha``."""
        return np.exp((np.asarray(score, dtype=float) - self.intercept) / self.slope)

    def score(self, flops: np.ndarray) -> np.ndarray:
        """The reference family's linear score at compute ``flops``."""
        return self.slope * np.log(np.asarray(flops, dtype=float)) + self.intercept


def effective_compute(
    scores: np.ndarray, families: np.ndarray, flops: np.ndarray, reference: str = "Llama-2"
) -> EffectiveCompute | None:
    """Fit the reference family's linear scores against its log compute, as the paper does for its x-axes.

    Parameters
    ----------
    scores
        Linear scores ``beta . S + alpha`` of all models (train and test), shape (n,).
    families, flops
        Family labels and training compute, shape (n,).
    reference
        The family whose compute defines the axis.

    Returns
    -------
    EffectiveCompute or None
        ``None`` when the reference family has fewer than two models with distinct known compute.
    """
    families = np.asarray(families, dtype=object)
    flops = np.asarray(flops, dtype=float)
    rows = (families == reference) & np.isfinite(flops) & (flops > 0)
    if rows.sum() < 2 or np.ptp(np.log(flops[rows])) == 0:
        return None
    fit = linregress(np.log(flops[rows]), np.asarray(scores, dtype=float)[rows])
    if fit.slope == 0:
        return None
    return EffectiveCompute(reference, float(fit.slope), float(fit.intercept), int(rows.sum()))


@dataclass
class CapabilityAnalysis:
    """PCA of a benchmark table: variance explained, loadings, capabilities and within-family compute fits."""

    benchmarks: list[str]
    models: list[str]
    families: list[str | None]
    explained_variance_ratio: list[float]
    loadings: np.ndarray  # (K, n_benchmarks)
    capabilities: np.ndarray  # (n_models, K)
    fits: list[FamilyFit]
    n_fit: int

    def to_json(self) -> dict[str, object]:
        """JSON-ready summary (loadings keyed by benchmark)."""
        return {
            "n_models": len(self.models),
            "n_fit": self.n_fit,
            "benchmarks": self.benchmarks,
            "explained_variance_ratio": self.explained_variance_ratio,
            "loadings": [{b: float(v) for b, v in zip(self.benchmarks, row, strict=True)} for row in self.loadings],
            "family_fits": [f.to_dict() for f in self.fits],
        }


def pca_analysis(
    frame: pd.DataFrame, benchmarks: list[str], *, n_components: int = 3, fit_rows: np.ndarray | None = None
) -> CapabilityAnalysis:
    """Impute, fit the PCA (all components, for the variance spectrum) and fit PCs against compute per family.

    Parameters
    ----------
    frame
        Models with ``Model``, optional ``Model Family`` / ``FLOPs (1E21)``, and the benchmark columns.
    benchmarks
        Columns to analyse.
    n_components
        PCs kept for the loadings and the family fits.
    fit_rows
        Rows the imputation and PCA are fitted on (default: all rows).
    """
    from sklearn.decomposition import PCA

    X = frame[benchmarks].to_numpy(dtype=float)
    rows = np.ones(len(frame), dtype=bool) if fit_rows is None else np.asarray(fit_rows, dtype=bool)
    imputer = PCAImputer().fit(X[rows])
    filled = imputer.transform(X)
    pca = PCA(svd_solver="full").fit(filled[rows])
    pca.components_ = orient_components(pca.components_)
    S = pca.transform(filled)[:, :n_components]
    families = frame[FAMILY].to_numpy(dtype=object) if FAMILY in frame else np.full(len(frame), None)
    flops = frame[FLOPS].to_numpy(dtype=float) if FLOPS in frame else np.full(len(frame), np.nan)
    fits = family_fits(families, flops, S) if FAMILY in frame and FLOPS in frame else []
    return CapabilityAnalysis(
        list(benchmarks),
        frame[MODEL].tolist(),
        [None if f is None else str(f) for f in families],
        [float(v) for v in pca.explained_variance_ratio_],
        pca.components_[:n_components],
        S,
        fits,
        int(rows.sum()),
    )
