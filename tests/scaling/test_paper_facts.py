"""Headline facts of arXiv 2405.10938 reproduced on the packaged tables (no shared data needed)."""

from __future__ import annotations

import numpy as np
import pytest

from indus.scaling.families import pca_analysis
from indus.scaling.holdout import fit_holdout
from indus.scaling.scores import BASE_BENCHMARKS, BASE_SCORES, FAMILY, load_builtin
from indus.scaling.selection import candidate_pool, select_subset, selection_curve
from indus.scaling.tasks import TASKS, default_models, load_task

STABLE_NAMES = [
    "gsm8k-naive",
    "gsm8k-cot",
    "gsm8k-cot-sc",
    "bbh",
    "word-unscramble",
    "persian-qa",
    "arith-2da",
    "arith-2dm",
    "arith-3da",
    "arith-3ds",
    "agentbench",
    "agentboard",
    "agentboard-progress",
    "gpqa",
    "math-lvl5",
    "bbh-v2",
]


@pytest.fixture(scope="module")
def default_set():
    return default_models(load_builtin(BASE_SCORES))


@pytest.fixture(scope="module")
def fits():
    groups = {"post-training", "emergent", "leaderboard-v2"}
    return {name: fit_holdout(load_task(name), n_bootstrap=0) for name, t in TASKS.items() if t.group in groups}


def test_task_names_are_stable():
    assert list(TASKS) == STABLE_NAMES


def test_default_set_is_77_models_in_21_families_split_47_30(default_set):
    assert len(default_set) == 77
    assert default_set[FAMILY].nunique() == 21
    data = load_task("gsm8k-cot")
    flops = default_set["FLOPs (1E21)"]
    assert int((flops <= 84).sum()) == 47 and int((~(flops <= 84)).sum()) == 30
    assert int(data.train.sum()) == 47  # the post-training table lacks two test models
    assert "mistralai/Mistral-7B-v0.1" in set(data.frame.loc[~data.train, "Model"])  # no FLOPs: a test model


def test_three_pcs_explain_97_percent_and_pc1_80_percent(default_set):
    evr = pca_analysis(default_set, list(BASE_BENCHMARKS)).explained_variance_ratio
    assert evr[0] == pytest.approx(0.80, abs=0.01)
    assert sum(evr[:3]) == pytest.approx(0.97, abs=0.01)


def test_pc1_is_log_linear_in_compute_within_families(default_set):
    r2 = [f.r2 for f in pca_analysis(default_set, list(BASE_BENCHMARKS)).fits if f.pc == 1]
    assert len(r2) >= 12 and np.median(r2) > 0.95 and min(r2) > 0.85


def test_gsm8k_cot_law_matches_table_c1(fits):
    # Table C.1: sigmoid(2.56 PC1 + 4.63 PC2 + 4.30 PC3 - 2.50)
    law = fits["gsm8k-cot"].law
    np.testing.assert_allclose(law.coef_, [2.56, 4.63, 4.30], atol=0.15)
    assert law.intercept_ == pytest.approx(-2.50, abs=0.05)
    assert law.floor_ < 0.01


@pytest.mark.parametrize("name", [n for n, t in TASKS.items() if t.scores_table == BASE_SCORES])
def test_capabilities_beat_compute_on_every_base_model_task(fits, name):
    result = fits[name]
    assert result.flops_test_mse is not None
    assert result.pcs_test_mse_known_compute < result.flops_test_mse
    assert result.pcs_test_mse < result.flops_test_mse


def test_arithmetic_uses_the_lower_cutoff_and_no_gsm8k():
    data = load_task("arith-2dm")
    assert "GSM8K" not in data.benchmarks
    assert data.frame.loc[data.train, "FLOPs (1E21)"].max() <= 22


def test_agents_hold_out_the_top_ten_percent():
    data = load_task("agentbench")
    assert int(data.test.sum()) == 2
    assert set(data.frame.loc[data.test, "Model"]) == {"gpt-4-0613", "claude-2.0"}


def test_selection_reproduces_the_papers_subsets():
    data = load_task("gsm8k-cot")
    pool, S = candidate_pool(data, BASE_BENCHMARKS)
    assert len(pool) == 45 and pool[FAMILY].nunique() == 14
    res = select_subset(S, 12, groups=pool[FAMILY].to_numpy())
    assert res.criterion == pytest.approx(-6.31, abs=0.01)
    assert set(res.units) == {"Llama-2", "Llama", "Qwen1.5", "Phi", "MPT", "StarCoder2", "DeepSeek-Coder"}


def test_twelve_chosen_models_forecast_better_than_random_subsets():
    points, all_mse = selection_curve(
        load_task("gsm8k-naive"), [12], criterion_benchmarks=BASE_BENCHMARKS, n_random=10, random_state=0
    )
    p = points[0]
    assert p.n_models == 12
    assert p.test_mse < 1.5 * all_mse  # about as good as all 45 training models on naive GSM8K
    assert p.test_mse < np.nanmedian(p.random_test_mse)


def test_twelve_single_models_forecast_about_as_well_as_all_training_models():
    points, all_mse = selection_curve(
        load_task("gsm8k-cot"), [12], unit="model", criterion_benchmarks=BASE_BENCHMARKS, n_random=10, random_state=0
    )
    p = points[0]
    assert p.n_models == 12 and p.method == "greedy-exchange"
    assert p.test_mse < 1.5 * all_mse
    assert p.test_mse < 0.5 * np.nanmedian(p.random_test_mse)
