"""Which few models to evaluate: V-optimal subset selection (arXiv 2405.10938, Sec. 5).

Fitting an observational law on a subset ``M`` of the available models estimates a regression on their capability
PCs; the V-optimality criterion of optimal experimental design measures how well such a fit predicts over all
models::

    J(M) = -trace(S^T S (S_M^T S_M)^-1)          S: PCs of all candidate models, S_M: rows of the chosen ones

(larger is better; ``-inf`` when ``S_M`` has rank below ``K``). The paper chooses whole model families (a family
brings all its training models) under a budget on the number of models, by enumerating family subsets. Here the
units can be families or single models:

- ``exact`` enumerates every subset of units within the budget (about a million subsets take 10 s);
- ``greedy-exchange`` grows a subset greedily, then applies the best improving add or swap until none is left
  (a Fedorov-style exchange), from the greedy start and from random starts, keeping the best.

``method="auto"`` counts the feasible subsets first and enumerates them when there are at most ``max_exact``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.decomposition import PCA

from indus.errors import IndusError
from indus.scaling.estimator import orient_components
from indus.scaling.holdout import ScalingData, fit_holdout
from indus.scaling.scores import FAMILY, MODEL


def v_optimality(S_all: np.ndarray, S_subset: np.ndarray) -> float:
    """``-trace(S^T S (S_M^T S_M)^-1)`` for PCs of all models (n, K) and of a subset (m, K); ``-inf`` if singular."""
    S_all = np.asarray(S_all, dtype=float)
    S_subset = np.asarray(S_subset, dtype=float)
    return float(_criterion(S_all.T @ S_all, (S_subset.T @ S_subset)[None])[0])


def _criterion(A: np.ndarray, grams: np.ndarray) -> np.ndarray:
    """Vectorised criterion for a stack of Gram matrices (N, K, K); singular ones score ``-inf``."""
    K = A.shape[0]
    out = np.full(len(grams), -np.inf)
    if len(grams) == 0:
        return out
    eig_min = np.linalg.eigvalsh(grams)[:, 0]  # (N,)
    ok = eig_min > 1e-10 * max(np.trace(A), 1e-300) / K
    if ok.any():
        inv = np.linalg.inv(grams[ok])  # (N_ok, K, K)
        out[ok] = -np.einsum("ij,nji->n", A, inv)
    return out


@dataclass
class SelectionResult:
    """A chosen subset.

    Attributes
    ----------
    units
        Labels of the chosen units (families, or model indices as strings when choosing single models).
    rows
        Row indices of the chosen models in the candidate pool.
    criterion
        ``J`` of the subset.
    n_models
        Number of chosen models.
    method
        ``exact`` or ``greedy-exchange``.
    n_evaluated
        Subsets whose criterion was computed.
    """

    units: list[str]
    rows: list[int]
    criterion: float
    n_models: int
    method: str
    n_evaluated: int


class _Units:
    """Candidate units (families or single models) with their Gram matrices and sizes."""

    def __init__(self, S: np.ndarray, groups: Sequence[object] | None) -> None:
        S = np.asarray(S, dtype=float)  # (n, K)
        if groups is None:
            labels = [str(i) for i in range(len(S))]
            members = [np.array([i]) for i in range(len(S))]
        else:
            groups = np.asarray(groups, dtype=object)
            labels = [str(g) for g in dict.fromkeys(groups)]
            members = [np.flatnonzero(groups == g) for g in dict.fromkeys(groups)]
        self.labels = labels
        self.members = members
        self.sizes = np.array([len(m) for m in members])
        self.grams = np.stack([S[m].T @ S[m] for m in members])  # (U, K, K)
        self.A = S.T @ S  # (K, K)

    def rows(self, chosen: Sequence[int]) -> list[int]:
        return sorted(int(r) for u in chosen for r in self.members[u])


def count_subsets(sizes: Sequence[int], budget: int, cap: int | None = None) -> int:
    """Number of non-empty subsets of units whose sizes sum to at most ``budget`` (stops counting above ``cap``)."""
    ways = np.zeros(budget + 1, dtype=object)  # ways[s]: subsets with total size s (exact integers)
    ways[0] = 1
    for size in sizes:
        if size <= budget:
            ways[size:] = ways[size:] + ways[: budget + 1 - size].copy()
        if cap is not None and int(ways.sum()) - 1 > cap:
            return int(ways.sum()) - 1
    return int(ways.sum()) - 1


def select_subset(
    S: np.ndarray,
    budget: int,
    *,
    groups: Sequence[object] | None = None,
    method: str = "auto",
    max_exact: int = 200_000,
    n_restarts: int = 20,
    random_state: int | np.random.Generator | None = 0,
) -> SelectionResult:
    """Choose at most ``budget`` models maximising the V-optimality criterion over the PCs ``S``.

    Parameters
    ----------
    S
        Capability PCs of the candidate models, shape (n, K).
    budget
        Most models to choose.
    groups
        Unit of each model (e.g. its family): units are chosen whole. ``None`` chooses single models.
    method
        ``auto``, ``exact`` or ``greedy-exchange``.
    max_exact
        ``auto`` enumerates when at most this many subsets fit the budget.
    n_restarts
        Random starts of the exchange search, besides the greedy start.
    random_state
        Seed or generator for the random starts.

    Examples
    --------
    >>> import numpy as np
    >>> S = np.random.default_rng(0).normal(size=(12, 2))
    >>> exact = select_subset(S, 4, method="exact")
    >>> fast = select_subset(S, 4, method="greedy-exchange")
    >>> bool(np.isclose(exact.criterion, fast.criterion))
    True
    """
    units = _Units(S, groups)
    if method not in {"auto", "exact", "greedy-exchange"}:
        raise ValueError(f"unknown method {method!r}")
    if budget < 1:
        raise ValueError("budget must be at least 1")
    if method == "auto":
        method = "exact" if count_subsets(units.sizes, budget, cap=max_exact) <= max_exact else "greedy-exchange"
    if method == "exact":
        chosen, value, evaluated = _exact(units, budget)
    else:
        chosen, value, evaluated = _exchange_search(units, budget, n_restarts, np.random.default_rng(random_state))
    rows = units.rows(chosen)
    return SelectionResult([units.labels[u] for u in chosen], rows, float(value), len(rows), method, evaluated)


def _exact(units: _Units, budget: int) -> tuple[list[int], float, int]:
    """Depth-first enumeration of all unit subsets within the budget, scored in one batch."""
    K = units.A.shape[0]
    grams: list[np.ndarray] = []
    subsets: list[tuple[int, ...]] = []
    order = np.argsort(units.sizes, kind="stable")
    sizes = units.sizes

    def walk(start: int, room: int, gram: np.ndarray, chosen: tuple[int, ...]) -> None:
        for pos in range(start, len(order)):
            u = int(order[pos])
            if sizes[u] > room:
                break  # units are visited by increasing size
            g = gram + units.grams[u]
            c = chosen + (u,)
            grams.append(g)
            subsets.append(c)
            walk(pos + 1, room - int(sizes[u]), g, c)

    walk(0, budget, np.zeros((K, K)), ())
    if not subsets:
        return [], -np.inf, 0
    values = _criterion(units.A, np.stack(grams))
    best = int(np.argmax(values))
    return sorted(subsets[best]), float(values[best]), len(subsets)


def _exchange_search(
    units: _Units, budget: int, n_restarts: int, rng: np.random.Generator
) -> tuple[list[int], float, int]:
    K = units.A.shape[0]
    ridge = 1e-6 * np.trace(units.A) / K  # lets the greedy start score subsets that are still rank-deficient
    evaluated = 0

    def score(sets: list[list[int]], regularised: bool = False) -> np.ndarray:
        nonlocal evaluated
        evaluated += len(sets)
        grams = np.stack([units.grams[s].sum(axis=0) for s in sets])
        if regularised:
            grams = grams + ridge * np.eye(K)
        return _criterion(units.A, grams)

    def greedy(start: list[int]) -> list[int]:
        chosen = list(start)
        while True:
            room = budget - int(units.sizes[chosen].sum()) if chosen else budget
            cands = [u for u in range(len(units.sizes)) if u not in chosen and units.sizes[u] <= room]
            if not cands:
                return chosen
            values = score([chosen + [u] for u in cands], regularised=True)
            chosen.append(cands[int(np.argmax(values))])

    def exchange(chosen: list[int]) -> tuple[list[int], float]:
        current = float(score([chosen])[0])
        while True:
            used = int(units.sizes[chosen].sum())
            outside = [u for u in range(len(units.sizes)) if u not in chosen]
            moves: list[list[int]] = []
            for v in outside:  # additions
                if used + units.sizes[v] <= budget:
                    moves.append(chosen + [v])
            for i, u in enumerate(chosen):  # swaps
                for v in outside:
                    if used - units.sizes[u] + units.sizes[v] <= budget:
                        moves.append(chosen[:i] + chosen[i + 1 :] + [v])
            if not moves:
                return chosen, current
            values = score(moves)
            best = int(np.argmax(values))
            bar = current + 1e-12 * abs(current) if np.isfinite(current) else -np.inf
            if not values[best] > bar:
                return chosen, current
            chosen, current = moves[best], float(values[best])

    best_set, best_value = exchange(greedy([]))
    for _ in range(n_restarts):
        order = rng.permutation(len(units.sizes))
        start: list[int] = []
        used = 0
        for u in order:  # a random feasible subset, filled in random order
            if used + units.sizes[u] <= budget:
                start.append(int(u))
                used += int(units.sizes[u])
        chosen, value = exchange(start)
        if value > best_value:
            best_set, best_value = chosen, value
    return sorted(best_set), best_value, evaluated


def random_subsets(
    sizes: Sequence[int],
    budget: int,
    n: int,
    *,
    min_models: int = 3,
    slack: int = 2,
    max_enumerate: int = 200_000,
    random_state: int | np.random.Generator | None = 0,
) -> list[list[int]]:
    """Random unit subsets with between ``max(budget - slack, min_models)`` and ``budget`` models.

    The paper's baseline: when the feasible subsets can be enumerated, draw uniformly (without replacement) among
    those in the size window; otherwise fill random permutations of the units up to the budget.
    """
    rng = np.random.default_rng(random_state)
    sizes = np.asarray(sizes, dtype=int)
    low = max(budget - slack, min_models)
    if count_subsets(sizes, budget, cap=max_enumerate) <= max_enumerate:
        pool: list[list[int]] = []

        def walk(start: int, used: int, chosen: list[int]) -> None:
            for u in range(start, len(sizes)):
                if used + sizes[u] <= budget:
                    c = chosen + [u]
                    if used + sizes[u] >= low:
                        pool.append(c)
                    walk(u + 1, used + int(sizes[u]), c)

        walk(0, 0, [])
        if not pool:
            return []
        picks = rng.choice(len(pool), size=min(n, len(pool)), replace=False)
        return [pool[i] for i in picks]
    out = []
    for _ in range(n):
        chosen, used = [], 0
        for u in rng.permutation(len(sizes)):
            if used + sizes[u] <= budget:
                chosen.append(int(u))
                used += int(sizes[u])
        out.append(sorted(chosen))
    return out


@dataclass
class SelectionPoint:
    """One budget of a selection curve: the chosen subset, random subsets, and their held-out test MSE."""

    budget: int
    n_models: int
    criterion: float
    units: list[str]
    test_mse: float | None
    random_test_mse: list[float]
    random_criterion: list[float]
    method: str

    def to_dict(self) -> dict[str, object]:
        """JSON-ready dict with summary statistics of the random subsets."""
        rnd = np.array([v for v in self.random_test_mse if np.isfinite(v)])
        return {
            "budget": self.budget,
            "n_models": self.n_models,
            "criterion": self.criterion,
            "units": self.units,
            "method": self.method,
            "test_mse": self.test_mse,
            "random_test_mse_median": float(np.median(rnd)) if len(rnd) else None,
            "random_test_mse_mean": float(np.mean(rnd)) if len(rnd) else None,
            "random_test_mse": [float(v) for v in self.random_test_mse],
            "random_criterion_median": (float(np.median(self.random_criterion)) if self.random_criterion else None),
        }


def candidate_pool(
    data: ScalingData, benchmarks: Sequence[str] | None = None, n_components: int = 3
) -> tuple[pd.DataFrame, np.ndarray]:
    """Training models with every criterion benchmark scored, and their PCs for the criterion.

    The paper scores subsets with PCs of all eight standard benchmarks over the candidate pool (complete rows
    only), whatever benchmarks the task's own law uses: the choice depends on the benchmark table alone.
    """
    cols = list(benchmarks) if benchmarks is not None else list(data.benchmarks)
    missing = [c for c in cols if c not in data.frame]
    if missing:
        raise IndusError(f"criterion benchmark(s) not in the table: {', '.join(missing)}")
    pool = data.frame.loc[data.train].dropna(subset=cols).reset_index(drop=True)
    if len(pool) <= n_components:
        raise IndusError(f"only {len(pool)} training models with complete scores; need more than {n_components}")
    pca = PCA(n_components=n_components, svd_solver="full").fit(pool[cols].to_numpy())
    pca.components_ = orient_components(pca.components_)
    return pool, pca.transform(pool[cols].to_numpy())


def selection_curve(
    data: ScalingData,
    budgets: Sequence[int],
    *,
    unit: str = "family",
    criterion_benchmarks: Sequence[str] | None = None,
    n_components: int = 3,
    n_random: int = 10,
    method: str = "auto",
    random_state: int = 0,
) -> tuple[list[SelectionPoint], float | None]:
    """Held-out test MSE of laws fitted on V-optimal subsets, on random subsets, and on all training models.

    Parameters
    ----------
    data
        Task data; its training models are the candidates, its test models score every fit.
    budgets
        Model budgets ``M``.
    unit
        ``family`` (whole families, as in the paper) or ``model``.
    criterion_benchmarks
        Benchmarks whose PCs define the criterion (default: the task's benchmarks).
    n_random
        Random subsets per budget (drawn as in :func:`random_subsets`).

    Returns
    -------
    (points, all_mse)
        One :class:`SelectionPoint` per budget, and the test MSE of the law fitted on all training models.
    """
    if unit not in {"family", "model"}:
        raise IndusError(f"unit must be 'family' or 'model', got {unit!r}")
    pool, S = candidate_pool(data, criterion_benchmarks, n_components)
    groups = pool[FAMILY].to_numpy() if unit == "family" else None
    units = _Units(S, groups)
    all_mse = fit_holdout(data, n_components=n_components, n_bootstrap=0, baselines=False).pcs_test_mse

    def test_mse(rows: list[int]) -> float:
        try:
            fit = fit_holdout(
                data.subset(pool.loc[rows, MODEL].tolist()), n_components=n_components, n_bootstrap=0, baselines=False
            )
        except IndusError:
            return float("nan")
        return float("nan") if fit.pcs_test_mse is None else fit.pcs_test_mse

    points = []
    for i, budget in enumerate(budgets):
        chosen = select_subset(S, budget, groups=groups, method=method, random_state=random_state)
        draws = random_subsets(
            units.sizes, budget, n_random, min_models=n_components, random_state=random_state + 1000 * (i + 1)
        )
        rnd_rows = [units.rows(d) for d in draws]
        points.append(
            SelectionPoint(
                budget=budget,
                n_models=chosen.n_models,
                criterion=chosen.criterion,
                units=chosen.units,
                test_mse=test_mse(chosen.rows) if chosen.rows else None,
                random_test_mse=[test_mse(r) for r in rnd_rows],
                random_criterion=[v for v in (v_optimality(S, S[r]) for r in rnd_rows) if np.isfinite(v)],
                method=chosen.method,
            )
        )
    return points, all_mse
