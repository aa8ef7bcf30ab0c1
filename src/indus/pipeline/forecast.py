"""Does a bigger run pay? Forecast a downstream metric at larger pretraining budgets from the run's own models.

Beyond the INDUS paper. Across the encoders a run pretrained (different sizes and budgets) we fit two laws:

- **compute**: ``y = a + b log10(C)``, with ``C`` the training FLOPs (6 N D): the log-linear regime of a
  compute scaling law, which is what a handful of small runs can support;
- **loss**: ``y = a + b L`` with ``L`` the held-out MLM loss, chained with a power law of the loss in compute,
  ``log L = c + d log C``, to carry the forecast to a larger budget.

Intervals are ordinary-least-squares prediction intervals (Student t with n - 2 degrees of freedom); the chained
forecast draws the loss from its predictive distribution and then the metric from its own (Monte Carlo). With three
or four models the intervals are wide, as they should be: read them as how little a few small runs can tell.
Metrics are bounded to [0, 1] (F1, nDCG, EM on that scale).

Example
-------
>>> import numpy as np
>>> c = np.array([1e13, 3e13, 1e14, 3e14])
>>> fit = LogLinearFit.fit(np.log10(c), 0.1 + 0.05 * np.log10(c / 1e13))
>>> round(fit.slope, 3)
0.05
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class LogLinearFit:
    """Ordinary least squares ``y = intercept + slope x`` with what a prediction interval needs."""

    slope: float
    intercept: float
    resid_std: float
    n: int
    x_mean: float
    sxx: float
    r2: float

    @classmethod
    def fit(cls, x: np.ndarray, y: np.ndarray) -> LogLinearFit:
        """Fit on points ``x`` (n,) and ``y`` (n,), n >= 2 with at least two distinct ``x``."""
        x = np.asarray(x, dtype=float)
        y = np.asarray(y, dtype=float)
        if x.shape != y.shape or x.ndim != 1 or len(x) < 2:
            raise ValueError(f"need at least two (x, y) points, got shapes {x.shape} and {y.shape}")
        sxx = float(((x - x.mean()) ** 2).sum())
        if sxx <= 0:
            raise ValueError("all points have the same x; nothing to fit a slope on")
        slope = float(((x - x.mean()) * (y - y.mean())).sum() / sxx)
        intercept = float(y.mean() - slope * x.mean())
        resid = y - (intercept + slope * x)
        dof = len(x) - 2
        resid_std = float(np.sqrt((resid**2).sum() / dof)) if dof > 0 else float("nan")
        sst = float(((y - y.mean()) ** 2).sum())
        r2 = 1.0 - float((resid**2).sum()) / sst if sst > 0 else float("nan")
        return cls(slope, intercept, resid_std, len(x), float(x.mean()), sxx, r2)

    def predict(self, x: np.ndarray | float) -> np.ndarray:
        """The fitted line at ``x``."""
        return self.intercept + self.slope * np.asarray(x, dtype=float)

    def scale(self, x: np.ndarray | float) -> np.ndarray:
        """Standard deviation of a new observation at ``x`` (NaN with fewer than three points)."""
        x = np.asarray(x, dtype=float)
        return self.resid_std * np.sqrt(1 + 1 / self.n + (x - self.x_mean) ** 2 / self.sxx)

    def interval(self, x: np.ndarray | float, alpha: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
        """The ``1 - alpha`` prediction interval at ``x`` (NaN with fewer than three points)."""
        if self.n < 3:
            nan = np.full(np.shape(x), np.nan)
            return nan, nan
        t = stats.t.ppf(1 - alpha / 2, self.n - 2)
        mid, half = self.predict(x), t * self.scale(x)
        return mid - half, mid + half

    def sample(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Draws of new observations at ``x`` (one per element) from the predictive t distribution."""
        return self.predict(x) + self.scale(x) * rng.standard_t(self.n - 2, size=np.shape(x))


@dataclass(frozen=True)
class Point:
    """One pretrained model: its compute, held-out MLM loss and downstream metric."""

    model: str
    flops: float
    loss: float | None
    metric: float


def forecast_metric(
    points: Sequence[Point],
    multipliers: Sequence[float] = (10.0, 100.0),
    *,
    alpha: float = 0.1,
    bounds: tuple[float, float] = (0.0, 1.0),
    n_draws: int = 20000,
    random_state: int = 0,
) -> dict[str, Any]:
    """Fit the compute and loss laws on ``points`` and forecast at ``multipliers`` x the largest budget.

    Returns
    -------
    dict
        ``n``, ``compute`` (slope per decade of compute, intercept, r2, and ``forecasts``: a list of
        ``{"multiplier", "flops", "y", "lo", "hi"}``), ``loss`` (the same through the loss law, or ``None`` when a
        model lacks a loss), and ``note`` when too few models were built for an interval.
    """
    pts = [p for p in points if np.isfinite(p.flops) and p.flops > 0 and np.isfinite(p.metric)]
    out: dict[str, Any] = {"n": len(pts), "models": [p.model for p in pts], "alpha": alpha}
    if len({p.flops for p in pts}) < 2:
        out["note"] = "needs at least two pretrained models with different compute"
        out["compute"] = out["loss"] = None
        return out
    lo_b, hi_b = bounds
    logc = np.log10([p.flops for p in pts])
    y = np.array([p.metric for p in pts])
    c_max = float(max(p.flops for p in pts))
    targets = np.log10([c_max * m for m in multipliers])

    comp = LogLinearFit.fit(logc, y)
    lo, hi = comp.interval(targets, alpha)
    out["compute"] = {
        "slope_per_decade": comp.slope,
        "intercept": comp.intercept,
        "r2": comp.r2,
        "forecasts": [
            {
                "multiplier": float(m),
                "flops": float(10**t),
                "y": float(np.clip(comp.predict(t), lo_b, hi_b)),
                "lo": _clip(lo[i], bounds),
                "hi": _clip(hi[i], bounds),
            }
            for i, (m, t) in enumerate(zip(multipliers, targets, strict=True))
        ],
    }
    if len(pts) < 3:
        out["note"] = "intervals need at least three pretrained models"

    losses = [p.loss for p in pts]
    if any(v is None or not np.isfinite(v) or v <= 0 for v in losses):
        out["loss"] = None
        return out
    loss = np.array(losses, dtype=float)
    power = LogLinearFit.fit(logc, np.log(loss))  # log L = c + d log10 C
    metric_on_loss = LogLinearFit.fit(loss, y)
    forecasts = []
    rng = np.random.default_rng(random_state)
    for m, t in zip(multipliers, targets, strict=True):
        l_hat = float(np.exp(power.predict(t)))
        y_hat = float(metric_on_loss.predict(l_hat))
        f = {
            "multiplier": float(m),
            "flops": float(10**t),
            "loss": l_hat,
            "y": float(np.clip(y_hat, lo_b, hi_b)),
            "lo": None,
            "hi": None,
        }
        if len(pts) >= 3:
            # a poorly fitted loss law can draw absurd losses; bound them so exp() stays finite
            log_l = np.clip(power.sample(np.full(n_draws, t), rng), np.log(1e-3), np.log(1e3))  # (n_draws,)
            y_draws = metric_on_loss.sample(np.exp(log_l), rng)  # (n_draws,)
            q_lo, q_hi = np.quantile(y_draws, [alpha / 2, 1 - alpha / 2])
            f["lo"], f["hi"] = _clip(q_lo, bounds), _clip(q_hi, bounds)
        forecasts.append(f)
    out["loss"] = {
        "loss_exponent_per_decade": power.slope,
        "slope_per_loss": metric_on_loss.slope,
        "r2_loss_vs_compute": power.r2,
        "r2_metric_vs_loss": metric_on_loss.r2,
        "forecasts": forecasts,
    }
    return out


def _clip(v: float, bounds: tuple[float, float]) -> float | None:
    return None if not np.isfinite(v) else float(np.clip(v, *bounds))
