"""The committed scaling report (which the README cites) is what the code computes today."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from indus.scaling.holdout import fit_holdout
from indus.scaling.tasks import TASKS, load_task

REPORT = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "scaling_report" / "report.json"
ROWS = {r["task"]: r for r in json.loads(REPORT.read_text())["tasks"]}


def test_report_has_every_builtin_task_in_order():
    assert list(ROWS) == list(TASKS)


@pytest.mark.parametrize("name", list(TASKS))
def test_report_row_matches_a_fresh_fit(name):
    # the MSEs and the law do not depend on the bootstrap, so a fit without it must reproduce them
    result = fit_holdout(load_task(name), n_bootstrap=0)
    row = ROWS[name]
    assert (row["n_train"], row["n_test"]) == (int(result.data.train.sum()), int(result.data.test.sum()))
    assert row["formula"] == result.formula()
    for key, value in (
        ("pcs_test_mse", result.pcs_test_mse),
        ("flops_test_mse", result.flops_test_mse),
        ("params_test_mse", result.params_test_mse),
    ):
        assert (row[key] is None) == (value is None)
        if value is not None:
            assert row[key] == pytest.approx(value, rel=1e-6)
