from __future__ import annotations

import itertools

import numpy as np
import pytest

from indus.scaling.selection import count_subsets, random_subsets, select_subset, v_optimality


def _brute_force(S, budget, groups):
    labels = list(dict.fromkeys(groups))
    best, best_set = -np.inf, None
    for r in range(1, len(labels) + 1):
        for combo in itertools.combinations(labels, r):
            rows = [i for i, g in enumerate(groups) if g in combo]
            if len(rows) <= budget:
                value = v_optimality(S, S[rows])
                if value > best:
                    best, best_set = value, sorted(combo)
    return best, best_set


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exact_search_finds_the_brute_force_optimum_over_families(seed):
    rng = np.random.default_rng(seed)
    groups = list(rng.choice(list("ABCDEFGHIJ"), size=30))
    S = rng.normal(size=(30, 3))
    best, best_set = _brute_force(S, 9, groups)
    res = select_subset(S, 9, groups=groups, method="exact")
    assert res.method == "exact"
    assert res.criterion == pytest.approx(best)
    assert sorted(res.units) == best_set
    assert res.n_models <= 9


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_fast_search_matches_exact_on_a_small_pool(seed):
    S = np.random.default_rng(seed).normal(size=(16, 3))
    exact = select_subset(S, 5, method="exact")
    assert exact.n_evaluated == sum(__import__("math").comb(16, r) for r in range(1, 6))
    fast = select_subset(S, 5, method="greedy-exchange", random_state=seed)
    assert fast.criterion == pytest.approx(exact.criterion)
    assert fast.n_models == 5


def test_auto_switches_to_the_fast_search_on_large_pools():
    S = np.random.default_rng(0).normal(size=(60, 3))
    assert select_subset(S, 12, method="auto").method == "greedy-exchange"
    assert select_subset(S[:10], 3, method="auto").method == "exact"


def test_criterion_properties():
    S = np.random.default_rng(0).normal(size=(20, 3))
    assert v_optimality(S, S[:2]) == -np.inf  # rank below K
    assert v_optimality(S, S) == pytest.approx(-3.0)  # trace of the identity
    assert v_optimality(S, S[:10]) < v_optimality(S, S[:15])  # more models never hurt


def test_counting_and_random_subsets():
    sizes = [1, 2, 2, 3, 5]
    brute = sum(1 for r in range(1, 6) for c in itertools.combinations(sizes, r) if sum(c) <= 6)
    assert count_subsets(sizes, 6) == brute
    draws = random_subsets(sizes, 6, 20, min_models=3, random_state=0)
    assert draws and all(4 <= sum(sizes[u] for u in d) <= 6 for d in draws)
    assert len({tuple(d) for d in draws}) == len(draws)  # without replacement
