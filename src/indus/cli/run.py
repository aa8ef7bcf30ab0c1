"""``indus run``: the end-to-end pipeline from a corpus to a report."""

from __future__ import annotations

from pathlib import Path

import typer

from indus._extras import require_extra


def register(app: typer.Typer) -> None:
    """Add the pipeline command to the main app."""

    @app.command()
    def run(
        config: Path = typer.Argument(..., help="Pipeline YAML (e.g. configs/pipeline/demo.yaml).", show_default=False),
        out: Path | None = typer.Option(None, "--out", help="Run folder (default: runs/<name>).", show_default=False),
        overrides: list[str] = typer.Option(
            [], "--set", help="Override a setting: key=value, e.g. tokenizer.vocab_size=8000 (repeatable)."
        ),
        force: list[str] = typer.Option(
            [], "--force", help="Rerun this stage even when cached, e.g. pretrain/tiny-s; '*' reruns all (repeatable)."
        ),
        dry_run: bool = typer.Option(
            False,
            "--dry-run",
            help="Build and check the whole plan, print each stage (cached or to run, and why) and run nothing.",
        ),
    ) -> None:
        """Run the whole pipeline: tokenizer, pretrain, distill, retriever, retriever distill, eval, forecast,
        report. The whole plan is built and checked first; finished stages are reused; a changed setting reruns
        that stage and those after it."""
        require_extra("train", "eval", "report", what="indus run")
        from indus.cli.common import console, print_table
        from indus.config import launcher_rank, load_config
        from indus.pipeline import PipelineConfig, build_plan, explain, run_pipeline

        cfg = load_config(PipelineConfig, config, overrides)
        out_dir = out or Path("runs") / cfg.name
        if dry_run:
            for line in explain(build_plan(cfg, out_dir, source=config), force):
                console.print(line, markup=False, highlight=False, soft_wrap=True)
            return
        main_process = launcher_rank()[0] == 0  # under torchrun every rank runs this; one of them reports

        def log(line: str) -> None:
            if main_process:
                console.print(line, markup=False, highlight=False)

        summary = run_pipeline(cfg, out_dir, force=force, log=log, source=config)
        if not main_process:
            return
        rows = [
            {
                "benchmark": f"{e['task']}:{e['data']}",
                "model": e["model"],
                "kind": e["kind"],
                "metric": e["metric"],
                "value": e["value"],
                "std": e["std"] if e["std"] is not None else "",
            }
            for e in summary["evals"]
        ]
        print_table(rows, title="every model against the baselines")
        ran = sum(not s["cached"] for s in summary["stages"])
        console.print(
            f"{len(summary['stages'])} stages ({ran} ran, {len(summary['stages']) - ran} cached) in "
            f"{summary['wall_s']:.0f} s; report: {summary['report']} and {out_dir / 'report.html'}"
        )
