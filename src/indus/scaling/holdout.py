"""The paper's holdout protocol: fit on weaker models, forecast stronger ones, compare with compute baselines.

A :class:`ScalingData` holds one target over a set of models (a built-in task or a user's tables) and which of them
are training models. :func:`fit_holdout` fits the observational law on the training models, the same sigmoid on log
FLOPs and on log parameters as baselines, adds bootstrap intervals, and returns everything the CLI, the report and
the plots need. Test MSE of the compute baselines is over the test models whose compute is known (the paper drops
the others), which :attr:`HoldoutResult.pcs_test_mse_known_compute` lets you compare like for like.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from indus.errors import IndusError
from indus.scaling.bootstrap import bootstrap_intervals
from indus.scaling.estimator import ComputeScalingLaw, ObservationalScalingLaw
from indus.scaling.families import EffectiveCompute, effective_compute
from indus.scaling.scores import FAMILY, FLOPS, MODEL, SIZE

TARGET = "target"  # the column of ScalingData.frame holding the normalised target


@dataclass
class ScalingData:
    """One downstream target over a set of models, with the train/test split.

    Attributes
    ----------
    name
        Task name (or the user's target column).
    frame
        One row per model: ``Model``, ``Model Family``, compute columns, the benchmark columns, and ``target``
        (the metric mapped to [0, 1] by the metric range). Rows without a target are already dropped.
    benchmarks
        Benchmark columns the capabilities are built from.
    train
        Boolean mask over ``frame`` rows: the models the law is fitted on; the rest are test models.
    reference_family
        Family whose compute defines effective compute (``None`` to skip).
    metric_range
        ``(low, high)`` mapped to ``(0, 1)``: ``target = (raw - low) / (high - low)``.
    description
        How the split was made, in words.
    floor_bounds
        Bounds of the link's floor ``b`` for the law and its compute baselines (``(0, 0)``: a plain sigmoid).
    """

    name: str
    frame: pd.DataFrame
    benchmarks: list[str]
    train: np.ndarray
    reference_family: str | None = "Llama-2"
    metric_range: tuple[float, float] = (0.0, 1.0)
    description: str = ""
    floor_bounds: tuple[float, float] = (0.0, 0.2)

    @property
    def test(self) -> np.ndarray:
        """Boolean mask of the test models."""
        return ~self.train

    def subset(self, train_models: set[str] | list[str]) -> ScalingData:
        """The same data with only ``train_models`` kept for training (the test models are unchanged)."""
        keep = self.frame[MODEL].isin(set(train_models)).to_numpy() & self.train
        rows = keep | self.test
        return ScalingData(
            self.name,
            self.frame.loc[rows].reset_index(drop=True),
            list(self.benchmarks),
            keep[rows],
            self.reference_family,
            self.metric_range,
            self.description,
            self.floor_bounds,
        )


@dataclass
class HoldoutResult:
    """Everything one holdout fit produced.

    ``frame`` is ``data.frame`` plus ``split``, ``y_pred``, ``lo``, ``hi``, ``score`` (the linear score
    ``beta . S + alpha``), ``effective_flops`` (in 1e21 FLOPs of the reference family) and the PCs ``PC-1..K``.
    """

    data: ScalingData
    law: ObservationalScalingLaw
    frame: pd.DataFrame
    pcs_train_mse: float
    pcs_test_mse: float | None
    flops_test_mse: float | None
    params_test_mse: float | None
    pcs_test_mse_known_compute: float | None
    n_test_known_compute: int
    effective: EffectiveCompute | None
    flops_law: ComputeScalingLaw | None = None
    params_law: ComputeScalingLaw | None = None
    alpha: float = 0.1

    def to_json(self) -> dict[str, object]:
        """The ``indus scaling fit --json`` document."""
        law = self.law
        return {
            "task": self.data.name,
            "n_train": int(self.data.train.sum()),
            "n_test": int(self.data.test.sum()),
            "explained_variance_ratio": [float(v) for v in law.explained_variance_ratio_],
            "pcs": {
                "coef": [float(v) for v in law.coef_],
                "intercept": float(law.intercept_),
                "floor": float(law.floor_),
                "train_mse": self.pcs_train_mse,
                "test_mse": self.pcs_test_mse,
            },
            "flops": {"test_mse": self.flops_test_mse},
            "params": {"test_mse": self.params_test_mse},
            "predictions": [
                {
                    "model": r[MODEL],
                    "family": _text(r[FAMILY]),
                    "split": r["split"],
                    "y": float(r[TARGET]),
                    "y_pred": float(r["y_pred"]),
                    "lo": _num(r["lo"]),
                    "hi": _num(r["hi"]),
                }
                for _, r in self.frame.iterrows()
            ],
        }

    def formula(self, digits: int = 2) -> str:
        """The fitted law as text, e.g. ``0.05 + 0.95 * sigmoid(2.56 PC1 + 4.63 PC2 + 4.30 PC3 - 2.50)``."""
        terms = " ".join(
            f"{'+' if c >= 0 else '-'} {abs(c):.{digits}f} PC{k + 1}" for k, c in enumerate(self.law.coef_)
        ).lstrip("+ ")
        a = self.law.intercept_
        inner = f"{terms} {'+' if a >= 0 else '-'} {abs(a):.{digits}f}"
        b = self.law.floor_
        if round(b, digits) == 0:
            return f"sigmoid({inner})"
        return f"{b:.{digits}f} + {1 - b:.{digits}f} * sigmoid({inner})"


def _num(v: object) -> float | None:
    return None if v is None or (isinstance(v, float) and np.isnan(v)) else float(v)


def _text(v: object) -> str | None:
    return None if v is None or (isinstance(v, float) and np.isnan(v)) else str(v)


def _mse(pred: np.ndarray, y: np.ndarray) -> float | None:
    return float(np.mean((pred - y) ** 2)) if len(y) else None


def fit_holdout(
    data: ScalingData,
    *,
    n_components: int = 3,
    n_bootstrap: int = 200,
    alpha: float = 0.1,
    baselines: bool = True,
    random_state: int | None = 0,
) -> HoldoutResult:
    """Fit the observational law on the training models of ``data`` and score it on the test models.

    Parameters
    ----------
    data
        Target, benchmarks and split.
    n_components
        Capability PCs ``K``.
    n_bootstrap
        Bootstrap rounds for the prediction intervals (0: no intervals).
    alpha
        Miscoverage of the intervals (0.1: 90% intervals).
    baselines
        Also fit the log-FLOPs and log-parameters sigmoids.
    random_state
        Seed of the bootstrap.
    """
    frame = data.frame.reset_index(drop=True)
    train, test = np.asarray(data.train, dtype=bool), ~np.asarray(data.train, dtype=bool)
    n_train = int(train.sum())
    if n_train < max(n_components, 2):
        raise IndusError(
            f"{data.name}: {n_train} training models is too few for {n_components} capability PCs "
            f"(need at least {max(n_components, 2)})"
        )
    X = frame[data.benchmarks]
    y = frame[TARGET].to_numpy(dtype=float)
    try:
        law = ObservationalScalingLaw(n_components=n_components, floor_bounds=data.floor_bounds).fit(
            X.loc[train], y[train]
        )
    except ValueError as exc:
        raise IndusError(f"{data.name}: {exc}") from exc
    S = law.capabilities(X)  # (n, K)
    pred = law.link_.predict(S)
    lo, hi = bootstrap_intervals(
        law.link_, S[train], y[train], S, n_bootstrap=n_bootstrap, alpha=alpha, random_state=random_state
    )
    out = frame.copy()
    out["split"] = np.where(train, "train", "test")
    out["y_pred"], out["lo"], out["hi"] = pred, lo, hi
    out["score"] = law.link_.decision_function(S)
    for k in range(n_components):
        out[f"PC-{k + 1}"] = S[:, k]
    effective = None
    if data.reference_family and FAMILY in frame and FLOPS in frame:
        effective = effective_compute(
            out["score"].to_numpy(), frame[FAMILY].to_numpy(), frame[FLOPS].to_numpy(), data.reference_family
        )
    out["effective_flops"] = effective(out["score"].to_numpy()) if effective else np.nan

    flops_mse = params_mse = pcs_known = None
    flops_law = params_law = None
    n_known = 0
    if baselines:
        flops_law, flops_mse, known = _compute_baseline(frame, FLOPS, train, test, y, data.floor_bounds)
        params_law, params_mse, _ = _compute_baseline(frame, SIZE, train, test, y, data.floor_bounds)
        n_known = int(known.sum())
        pcs_known = _mse(pred[known], y[known])
    return HoldoutResult(
        data=data,
        law=law,
        frame=out,
        pcs_train_mse=float(law.train_mse_),
        pcs_test_mse=_mse(pred[test], y[test]),
        flops_test_mse=flops_mse,
        params_test_mse=params_mse,
        pcs_test_mse_known_compute=pcs_known,
        n_test_known_compute=n_known,
        effective=effective,
        flops_law=flops_law,
        params_law=params_law,
        alpha=alpha,
    )


def _compute_baseline(
    frame: pd.DataFrame,
    column: str,
    train: np.ndarray,
    test: np.ndarray,
    y: np.ndarray,
    floor_bounds: tuple[float, float],
) -> tuple[ComputeScalingLaw | None, float | None, np.ndarray]:
    """The task's link on log ``column``; test MSE over the test models where the column is known."""
    if column not in frame:
        return None, None, np.zeros(len(frame), dtype=bool)
    x = frame[column].to_numpy(dtype=float)
    known = np.isfinite(x) & (x > 0)
    fit_rows = train & known
    if fit_rows.sum() < 3:
        return None, None, test & known
    law = ComputeScalingLaw(floor_bounds=floor_bounds).fit(x[fit_rows], y[fit_rows])
    rows = test & known
    return law, (_mse(law.predict(x[rows]), y[rows]) if rows.any() else None), rows
