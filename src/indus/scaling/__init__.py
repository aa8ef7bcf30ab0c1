"""Observational scaling laws (Ruan, Maddison, Hashimoto, 2024, arXiv 2405.10938).

Forecast a language model's downstream performance from its standard benchmark scores, through a few capability
dimensions fitted across many public model families, without training a model ladder.

Main entry points:

- :class:`ObservationalScalingLaw`: the scikit-learn regressor (imputation, capability PCs, floor-sigmoid link);
- :func:`load_task` / :data:`TASKS`: the paper's experiments on the packaged tables; :func:`load_user_task` for a
  user's own CSVs; :func:`fit_holdout`: the holdout protocol with compute baselines and bootstrap intervals;
- :func:`select_subset` / :func:`selection_curve`: V-optimal model-subset selection;
- :func:`write_report`: every built-in task in one markdown report with figures.
"""

from __future__ import annotations

from indus.scaling.estimator import ComputeScalingLaw, ObservationalScalingLaw, orient_components
from indus.scaling.families import effective_compute, family_fits, pca_analysis
from indus.scaling.holdout import HoldoutResult, ScalingData, fit_holdout
from indus.scaling.imputation import PCAImputer
from indus.scaling.link import SigmoidLink
from indus.scaling.report import write_report
from indus.scaling.selection import select_subset, selection_curve, v_optimality
from indus.scaling.tasks import TASKS, Task, get_task, load_task, load_user_task

__all__ = [
    "ComputeScalingLaw",
    "HoldoutResult",
    "ObservationalScalingLaw",
    "PCAImputer",
    "ScalingData",
    "SigmoidLink",
    "TASKS",
    "Task",
    "effective_compute",
    "family_fits",
    "fit_holdout",
    "get_task",
    "load_task",
    "load_user_task",
    "orient_components",
    "pca_analysis",
    "select_subset",
    "selection_curve",
    "v_optimality",
    "write_report",
]
