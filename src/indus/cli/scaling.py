"""``indus scaling``: observational scaling laws (arXiv 2405.10938).

Each command is a thin call into :mod:`indus.scaling`; heavy libraries are imported inside the commands.
"""

from __future__ import annotations

from pathlib import Path

import typer

from indus.cli.common import console, print_table, write_json
from indus.errors import IndusError

app = typer.Typer(
    help="Observational scaling laws: capability PCs, sigmoid forecasts, model selection.", no_args_is_help=True
)

JSON_OPT = typer.Option(None, "--json", help="Also write the result as JSON to this file.", show_default=False)


@app.callback()
def scaling() -> None:
    """Observational scaling laws: capability PCs, sigmoid forecasts, model selection."""


def _cutoff(value: float | None) -> float | None:
    """``--cutoff-flops`` is in FLOPs (8.4e22); the tables count in units of 1e21."""
    if value is None:
        return None
    if value < 1e15:
        raise IndusError(
            f"--cutoff-flops {value:g} looks like it is in units of 1e21; give training FLOPs, "
            "e.g. 8.4e22 for Llama-2-7B"
        )
    from indus.scaling.scores import FLOPS_UNIT

    return value / FLOPS_UNIT


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3g}"


@app.command("tasks")
def tasks_cmd(json_out: Path | None = JSON_OPT) -> None:
    """List the built-in tasks (stable names), their targets, benchmarks and splits."""
    from indus.scaling.scores import BASE_BENCHMARKS, INSTRUCT_SCORES
    from indus.scaling.tasks import TASKS, load_task

    rows = []
    for task in TASKS.values():
        data = load_task(task)
        dropped = [b for b in BASE_BENCHMARKS if b not in task.benchmarks]
        if task.scores_table == INSTRUCT_SCORES:
            bench = f"instruct ({len(task.benchmarks)})"
        else:
            bench = f"base without {', '.join(dropped)}" if dropped else f"base ({len(task.benchmarks)})"
        lo, hi = task.floor_bounds
        link = "sigmoid" if hi <= lo else f"sigmoid, floor in [{lo:g}, {hi:g}]"
        rows.append(
            {
                "name": task.name,
                "group": task.group,
                "title": task.title,
                "target": task.target,
                "benchmarks": bench,
                "split": task.describe(),
                "link": link,
                "n_train": int(data.train.sum()),
                "n_test": int(data.test.sum()),
            }
        )
    print_table(
        rows,
        title="Built-in scaling tasks",
        columns=["name", "group", "title", "benchmarks", "split", "link", "n_train", "n_test"],
    )
    write_json(json_out, rows)


@app.command("fit")
def fit_cmd(
    task: str | None = typer.Option(
        None, "--task", help="Built-in task (see `indus scaling tasks`).", show_default=False
    ),
    scores: Path | None = typer.Option(
        None,
        "--scores",
        help="Your scores CSV (schema of the built-in tables: "
        "Model, Model Family, Model Size (B), Pretraining Data Size (T), "
        "FLOPs (1E21), benchmark columns).",
        show_default=False,
    ),
    target: str | None = typer.Option(None, "--target", help="Target column (with --scores).", show_default=False),
    targets: Path | None = typer.Option(
        None,
        "--targets",
        help="CSV with Model and the target column; default: the target is a column of --scores.",
        show_default=False,
    ),
    cutoff_flops: float | None = typer.Option(
        None,
        "--cutoff-flops",
        help="Train on models with at most this "
        "many training FLOPs, e.g. 8.4e22 (default: the task's; 8.4e22 for "
        "--scores).",
        show_default=False,
    ),
    n_pcs: int = typer.Option(3, "--n-pcs", min=1, help="Capability PCs K."),
    drop_benchmark: list[str] = typer.Option(
        [], "--drop-benchmark", help="Leave this benchmark out of the capabilities (repeatable).", show_default=False
    ),
    metric_range: tuple[float, float] = typer.Option(
        (0.0, 1.0),
        "--metric-range",
        help="With --scores: raw target values mapped to 0 and 1 (random-guess floor, perfect score).",
    ),
    ref_family: str = typer.Option(
        "Llama-2", "--ref-family", help="Family defining effective compute (with --scores)."
    ),
    floor_max: float | None = typer.Option(
        None,
        "--floor-max",
        min=0.0,
        max=0.99,
        help="Upper bound of the "
        "sigmoid's floor b, for the law and its FLOPs/params baselines (0: a "
        "plain sigmoid; default: the task's, 0.2 for --scores).",
        show_default=False,
    ),
    n_bootstrap: int = typer.Option(
        200, "--n-bootstrap", min=0, help="Bootstrap rounds for the 90% prediction intervals (0: none)."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the bootstrap."),
    json_out: Path | None = JSON_OPT,
    plot: Path | None = typer.Option(
        None, "--plot", help="Write the fit figure (PNG) to this file.", show_default=False
    ),
) -> None:
    """Fit an observational scaling law on the weaker models and forecast the stronger ones.

    With --task, a built-in task; with --scores/--target, your own tables. Reports the fitted law, test MSE against
    the log-FLOPs and log-parameters baselines, and every model's forecast with a 90% bootstrap interval.
    """
    from indus.scaling.holdout import fit_holdout
    from indus.scaling.tasks import load_task, load_user_task

    if (task is None) == (scores is None):
        raise IndusError("give either --task NAME or --scores CSV --target COLUMN")
    if task is not None:
        if target is not None or targets is not None:
            raise IndusError("--target/--targets go with --scores; a built-in task has its own target")
        from indus.scaling.tasks import get_task

        if cutoff_flops is not None and get_task(task).split != "cutoff":
            raise IndusError(f"task {task!r} holds out its best models, not a FLOPs cutoff; drop --cutoff-flops")
        data = load_task(task, cutoff=_cutoff(cutoff_flops))
        unknown = [b for b in drop_benchmark if b not in data.benchmarks]
        if unknown:
            raise IndusError(
                f"task {task!r}: unknown benchmark {', '.join(map(repr, unknown))}; its benchmarks: "
                f"{', '.join(data.benchmarks)}"
            )
        data.benchmarks = [b for b in data.benchmarks if b not in set(drop_benchmark)]
        if floor_max is not None:
            data.floor_bounds = (0.0, floor_max)
    else:
        if target is None:
            raise IndusError("--scores needs --target COLUMN (the metric to forecast)")
        cut = _cutoff(cutoff_flops)
        data = load_user_task(
            scores,
            target,
            targets,
            cutoff=84.0 if cut is None else cut,
            drop_benchmarks=drop_benchmark,
            metric_range=metric_range,
            reference_family=ref_family,
            floor_bounds=(0.0, 0.2 if floor_max is None else floor_max),
        )
    result = fit_holdout(data, n_components=n_pcs, n_bootstrap=n_bootstrap, random_state=seed)
    doc = result.to_json()
    console.print(
        f"[bold]{data.name}[/bold]: {data.description}; {doc['n_train']} train / {doc['n_test']} test "
        f"models; capabilities from {', '.join(data.benchmarks)}"
    )
    console.print(f"fitted law: y = {result.formula()}")
    console.print("variance explained by the PCs: " + ", ".join(f"{v:.1%}" for v in doc["explained_variance_ratio"]))
    print_table(
        [
            {
                "predictor": "capability PCs",
                "train MSE": _fmt(result.pcs_train_mse),
                "test MSE": _fmt(result.pcs_test_mse),
            },
            {"predictor": "log FLOPs", "train MSE": "", "test MSE": _fmt(result.flops_test_mse)},
            {"predictor": "log params", "train MSE": "", "test MSE": _fmt(result.params_test_mse)},
        ],
        title="Held-out error",
    )
    test_rows = [p for p in doc["predictions"] if p["split"] == "test"]
    print_table(
        [
            {
                "model": p["model"],
                "family": p["family"],
                "observed": _fmt(p["y"]),
                "forecast": _fmt(p["y_pred"]),
                "90% interval": f"[{_fmt(p['lo'])}, {_fmt(p['hi'])}]",
            }
            for p in test_rows
        ],
        title="Test-model forecasts",
    )
    write_json(json_out, doc)
    if plot is not None:
        from indus.scaling.plots import plot_fit

        console.print(f"wrote {plot_fit(result, plot)}")


@app.command("pca")
def pca_cmd(
    scores: Path | None = typer.Option(
        None,
        "--scores",
        help="Your scores CSV (default: the packaged table, the paper's 77 default base models).",
        show_default=False,
    ),
    n_pcs: int = typer.Option(3, "--n-pcs", min=1, help="PCs to show loadings and family fits for."),
    drop_benchmark: list[str] = typer.Option(
        [], "--drop-benchmark", help="Leave this benchmark out (repeatable).", show_default=False
    ),
    train_only: bool = typer.Option(
        False,
        "--train-only",
        help="Fit on the models below --cutoff-flops only (default: all models, as in the paper's Sec. 3).",
    ),
    cutoff_flops: float = typer.Option(8.4e22, "--cutoff-flops", help="Cutoff for --train-only, in FLOPs."),
    json_out: Path | None = JSON_OPT,
) -> None:
    """Variance explained by the capability PCs, their loadings, and per-family fits against log compute."""
    import numpy as np

    from indus.scaling.families import pca_analysis
    from indus.scaling.scores import BASE_BENCHMARKS, BASE_SCORES, FLOPS, load_builtin, read_scores, require_columns
    from indus.scaling.tasks import default_models

    if scores is None:
        frame, benchmarks, source = default_models(load_builtin(BASE_SCORES)), list(BASE_BENCHMARKS), "default set"
    else:
        frame, benchmarks = read_scores(scores)
        source = str(scores)
    require_columns(frame[benchmarks], drop_benchmark, scores or BASE_SCORES, "benchmark column")
    benchmarks = [b for b in benchmarks if b not in set(drop_benchmark)]
    if n_pcs > len(benchmarks):
        raise IndusError(f"--n-pcs {n_pcs} is more than the {len(benchmarks)} benchmarks")
    rows = None
    if train_only:
        if FLOPS not in frame:
            raise IndusError(f"--train-only needs a {FLOPS!r} column")
        rows = np.nan_to_num(frame[FLOPS].to_numpy(dtype=float), nan=np.inf) <= _cutoff(cutoff_flops)
    n_fit = len(frame) if rows is None else int(rows.sum())
    if n_pcs > n_fit:
        raise IndusError(f"{source}: --n-pcs {n_pcs} is more than the {n_fit} models the PCs are fitted on")
    try:
        analysis = pca_analysis(frame, benchmarks, n_components=n_pcs, fit_rows=rows)
    except ValueError as exc:  # e.g. a benchmark with no score among the fitted models
        raise IndusError(f"{source}: {exc}") from None
    evr = analysis.explained_variance_ratio
    console.print(
        f"[bold]Capability PCs[/bold] of {source}: {len(analysis.models)} models "
        f"(fitted on {analysis.n_fit}), {len(benchmarks)} benchmarks"
    )
    print_table(
        [
            {"PC": f"PC-{k + 1}", "variance": f"{v:.1%}", "cumulative": f"{sum(evr[: k + 1]):.1%}"}
            for k, v in enumerate(evr)
        ],
        title="Variance explained",
    )
    print_table(
        [
            {"benchmark": b, **{f"PC-{k + 1}": f"{analysis.loadings[k, j]:+.3f}" for k in range(n_pcs)}}
            for j, b in enumerate(benchmarks)
        ],
        title="Loadings",
    )
    print_table(
        [
            {
                "family": f.family,
                "PC": f"PC-{f.pc}",
                "n": f.n,
                "slope / ln FLOPs": f"{f.slope:.3f}",
                "R^2": f"{f.r2:.3f}",
            }
            for f in analysis.fits
            if f.pc == 1
        ],
        title="PC-1 against log training FLOPs within each family (families with >= 3 models)",
    )
    write_json(json_out, analysis.to_json())


@app.command("select")
def select_cmd(
    budget: int = typer.Option(..., "--budget", min=1, help="Most models to choose (M)."),
    task: str = typer.Option("gsm8k-cot", "--task", help="Task whose held-out test MSE scores the choice."),
    unit: str = typer.Option("family", "--unit", help="Choose whole families (as the paper) or single models."),
    method: str = typer.Option("auto", "--method", help="auto | exact | greedy-exchange."),
    n_random: int = typer.Option(20, "--n-random", min=0, help="Random subsets to compare against."),
    seed: int = typer.Option(0, "--seed", help="Seed of the search restarts and the random subsets."),
    json_out: Path | None = JSON_OPT,
) -> None:
    """Choose at most M training models by V-optimality, and compare their forecasts with all and random models."""
    import numpy as np

    from indus.scaling.scores import BASE_BENCHMARKS, MODEL
    from indus.scaling.selection import candidate_pool, select_subset, selection_curve
    from indus.scaling.tasks import load_task

    if method not in {"auto", "exact", "greedy-exchange"}:
        raise IndusError(f"--method must be auto, exact or greedy-exchange, got {method!r}")
    if unit not in {"family", "model"}:
        raise IndusError(f"--unit must be family or model, got {unit!r}")
    data = load_task(task)
    criterion = (
        [b for b in BASE_BENCHMARKS if b in data.frame]
        if "Winogrande" not in data.benchmarks
        else list(data.benchmarks)
    )
    pool, S = candidate_pool(data, criterion)
    groups = pool["Model Family"].to_numpy() if unit == "family" else None
    chosen = select_subset(S, budget, groups=groups, method=method, random_state=seed)
    points, all_mse = selection_curve(
        data, [budget], unit=unit, criterion_benchmarks=criterion, n_random=n_random, method=method, random_state=seed
    )
    point = points[0].to_dict()
    rnd = np.array([v for v in point["random_test_mse"] if np.isfinite(v)])
    models = pool.loc[chosen.rows, MODEL].tolist()
    doc = {
        "task": task,
        "budget": budget,
        "unit": unit,
        "method": chosen.method,
        "n_evaluated": chosen.n_evaluated,
        "criterion": chosen.criterion,
        "units": chosen.units,
        "models": models,
        "n_models": chosen.n_models,
        "n_candidates": len(pool),
        "test_mse": point["test_mse"],
        "all_test_mse": all_mse,
        "n_train_all": int(data.train.sum()),
        "random": {
            "n": len(rnd),
            "test_mse_median": float(np.median(rnd)) if len(rnd) else None,
            "test_mse_q25": float(np.quantile(rnd, 0.25)) if len(rnd) else None,
            "test_mse_q75": float(np.quantile(rnd, 0.75)) if len(rnd) else None,
            "criterion_median": point["random_criterion_median"],
        },
    }
    console.print(
        f"[bold]{task}[/bold]: chose {chosen.n_models} of {len(pool)} candidate models "
        f"({unit} units, {chosen.method} search over {chosen.n_evaluated} subsets), "
        f"criterion {chosen.criterion:.3f}"
    )
    console.print("units: " + ", ".join(chosen.units))
    console.print("models: " + ", ".join(models))
    print_table(
        [
            {"fitted on": f"V-optimal {chosen.n_models}", "test MSE": _fmt(doc["test_mse"])},
            {"fitted on": f"all {doc['n_train_all']} training models", "test MSE": _fmt(all_mse)},
            {"fitted on": f"random subsets (median of {len(rnd)})", "test MSE": _fmt(doc["random"]["test_mse_median"])},
        ],
        title="Held-out test MSE",
    )
    write_json(json_out, doc)


@app.command("predict")
def predict_cmd(
    scores: Path = typer.Option(
        ..., "--scores", help="CSV with Model and the benchmark columns of the built-in tables (your own models)."
    ),
    task: list[str] = typer.Option(
        [],
        "--task",
        help="Built-in task(s) to forecast (repeatable; default: every task whose benchmarks the CSV has).",
        show_default=False,
    ),
    holdout: bool = typer.Option(
        False,
        "--holdout",
        help="Fit each law on the task's training split only (default: on every model with a score).",
    ),
    n_bootstrap: int = typer.Option(200, "--n-bootstrap", min=0, help="Bootstrap rounds for 90% intervals."),
    seed: int = typer.Option(0, "--seed", help="Seed of the bootstrap."),
    json_out: Path | None = JSON_OPT,
) -> None:
    """Forecast built-in task metrics for new models from their benchmark scores alone.

    Forecasts are in each metric's own units (accuracy, AgentBench score, AgentBoard %), with 90% bootstrap
    intervals and the reference family's equivalent training compute.
    """
    import numpy as np

    from indus.scaling.bootstrap import bootstrap_intervals
    from indus.scaling.holdout import TARGET, fit_holdout
    from indus.scaling.scores import MODEL, read_scores
    from indus.scaling.tasks import TASKS, get_task, load_task

    frame, _ = read_scores(scores)
    names = task or list(TASKS)
    rows, skipped = [], []
    for name in names:
        spec = get_task(name)
        missing = [b for b in spec.benchmarks if b not in frame.columns]
        if missing:
            if task:
                raise IndusError(f"{scores}: task {name!r} needs benchmark column(s) {', '.join(map(repr, missing))}")
            skipped.append(name)
            continue
        data = load_task(spec)
        if not holdout:
            data.train = np.ones(len(data.frame), dtype=bool)
        result = fit_holdout(data, n_bootstrap=0, baselines=False)
        law = result.law
        S_new = law.capabilities(frame[data.benchmarks])
        S_train = law.capabilities(data.frame.loc[data.train, data.benchmarks])
        y_new = law.link_.predict(S_new)
        lo, hi = bootstrap_intervals(
            law.link_,
            S_train,
            data.frame.loc[data.train, TARGET].to_numpy(),
            S_new,
            n_bootstrap=n_bootstrap,
            random_state=seed,
        )
        low, high = spec.metric_range
        eff = result.effective(law.link_.decision_function(S_new)) if result.effective else np.full(len(y_new), np.nan)
        for i, model in enumerate(frame[MODEL]):
            rows.append(
                {
                    "model": model,
                    "task": name,
                    "metric": spec.target,
                    "forecast": float(low + (high - low) * y_new[i]),
                    "lo": None if np.isnan(lo[i]) else float(low + (high - low) * lo[i]),
                    "hi": None if np.isnan(hi[i]) else float(low + (high - low) * hi[i]),
                    "effective_flops": None if np.isnan(eff[i]) else float(eff[i] * 1e21),
                    "reference_family": spec.reference_family,
                }
            )
    if not rows:
        raise IndusError(
            f"{scores}: no built-in task can use these columns; base tasks need "
            "MMLU, ARC-C, HellaSwag, Winograd, TruthfulQA, (GSM8K,) XWinograd, HumanEval"
        )
    print_table(
        [
            {
                "model": r["model"],
                "task": r["task"],
                "forecast": _fmt(r["forecast"]),
                "90% interval": f"[{_fmt(r['lo'])}, {_fmt(r['hi'])}]",
                "eff. FLOPs": "n/a" if r["effective_flops"] is None else f"{r['effective_flops']:.2g}",
            }
            for r in rows
        ],
        title="Forecasts (metric units; eff. FLOPs: reference-family equivalent)",
    )
    if skipped:
        console.print(f"skipped (benchmark columns missing): {', '.join(skipped)}")
    write_json(json_out, rows)


@app.command("report")
def report_cmd(
    out_dir: Path = typer.Argument(..., help="Folder for report.md, report.json and the figures."),
    task: list[str] = typer.Option(
        [], "--task", help="Only these tasks (repeatable; default: all).", show_default=False
    ),
    n_bootstrap: int = typer.Option(100, "--n-bootstrap", min=0, help="Bootstrap rounds per task."),
    n_random: int = typer.Option(10, "--n-random", min=0, help="Random subsets per budget in the selection curve."),
    seed: int = typer.Option(0, "--seed", help="Seed of the bootstrap and the random subsets."),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Write into a non-empty folder (the report's files replaced, other files kept)."
    ),
) -> None:
    """Every built-in task in one markdown table (PC vs FLOPs vs params test MSE) plus the paper's figures."""
    from rich.progress import Progress

    from indus.outdir import prepare_output_dir
    from indus.scaling.report import write_report
    from indus.scaling.tasks import TASKS, get_task

    names = [get_task(t).name for t in task] or list(TASKS)
    folder = prepare_output_dir(out_dir, command="scaling report", overwrite=overwrite)
    with Progress(console=console, transient=True) as bar:
        job = bar.add_task("scaling report", total=len(names) + 2)

        def step(msg: str) -> None:
            bar.update(job, description=msg, advance=1)

        summary = write_report(
            out_dir, tasks=names, n_bootstrap=n_bootstrap, n_random=n_random, random_state=seed, progress=step
        )
    folder.complete()
    print_table(
        [
            {
                "task": r["task"],
                "train/test": f"{r['n_train']}/{r['n_test']}",
                "PC": _fmt(r["pcs_test_mse"]),
                "FLOPs": _fmt(r["flops_test_mse"]),
                "params": _fmt(r["params_test_mse"]),
            }
            for r in summary["tasks"]
        ],
        title="Held-out test MSE",
    )
    console.print(f"wrote {out_dir / 'report.md'} and {', '.join(f for f in summary['files'] if f != 'report.md')}")
