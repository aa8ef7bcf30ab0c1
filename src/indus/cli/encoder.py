"""``indus pretrain`` and ``indus distill``: INDUS encoders."""

from __future__ import annotations

from pathlib import Path

import typer

from indus._extras import require_extra

RESUME_HELP = (
    "Continue from the newest complete checkpoint in --out (from the start if there is none); the "
    "settings that change the loss curve must match."
)
OVERWRITE_HELP = "Start again in a non-empty --out (its earlier run's checkpoints go; files indus did not write stay)."


def register(app: typer.Typer) -> None:
    """Add the encoder commands to the main app."""

    @app.command()
    def pretrain(
        config: Path | None = typer.Option(None, "--config", help="YAML file of PretrainConfig settings."),
        overrides: list[str] = typer.Option([], "--set", help="Override a setting: key=value (repeatable)."),
        out: Path = typer.Option(..., "--out", help="Output folder (model, tokenizer, metrics.json, checkpoints)."),
        init_from: str | None = typer.Option(
            None,
            "--init-from",
            help="Continue from a general encoder ('minilm' "
            "or a model folder) with its own tokenizer: domain adaptation.",
        ),
        masking: str | None = typer.Option(
            None,
            "--masking",
            help="random (RoBERTa, 15%) or keyword (INDUS-SDE: 30%, most masks on each document's TF-IDF keywords).",
        ),
        resume: bool = typer.Option(False, "--resume", help=RESUME_HELP),
        overwrite: bool = typer.Option(False, "--overwrite", help=OVERWRITE_HELP),
    ) -> None:
        """Masked-LM pretraining of a RoBERTa-style encoder (RoBERTa's recipe; many GPUs via accelerate launch)."""
        require_extra("train", what="indus pretrain")
        from indus.cli.common import console, print_table
        from indus.config import load_config
        from indus.encoder.configs import PretrainConfig
        from indus.encoder.pretrain import pretrain as run
        from indus.outdir import check_flags

        check_flags(resume, overwrite)
        extra = ([f"init_from={init_from}"] if init_from else []) + ([f"masking={masking}"] if masking else [])
        metrics = run(
            load_config(PretrainConfig, config, [*extra, *overrides]), out, resume=resume, overwrite=overwrite
        )
        print_table([_summary(metrics)], title=f"pretrained {out}")
        console.print(f"wrote {out} (loads with AutoModelForMaskedLM.from_pretrained)")

    @app.command()
    def distill(
        teacher: str | None = typer.Option(None, "--teacher", help="Teacher model folder (overrides the config)."),
        student_preset: str | None = typer.Option(None, "--student-preset", help="Student shape: small, tiny, nano."),
        config: Path | None = typer.Option(None, "--config", help="YAML file of DistillConfig settings."),
        overrides: list[str] = typer.Option([], "--set", help="Override a setting: key=value (repeatable)."),
        out: Path = typer.Option(..., "--out", help="Output folder of the student."),
        resume: bool = typer.Option(False, "--resume", help=RESUME_HELP),
        overwrite: bool = typer.Option(False, "--overwrite", help=OVERWRITE_HELP),
    ) -> None:
        """MiniLMv2 distillation (Q-Q, K-K, V-V self-attention relations) of a teacher into a smaller student."""
        require_extra("train", what="indus distill")
        from indus.cli.common import console, print_table
        from indus.config import load_config
        from indus.encoder.configs import DistillConfig
        from indus.encoder.distill import distill as run

        extra = ([f"teacher={teacher}"] if teacher else []) + ([f"preset={student_preset}"] if student_preset else [])
        from indus.outdir import check_flags

        check_flags(resume, overwrite)
        metrics = run(load_config(DistillConfig, config, [*extra, *overrides]), out, resume=resume, overwrite=overwrite)
        print_table([_summary(metrics)], title=f"distilled {out}")
        console.print(f"wrote {out} (loads with AutoModelForMaskedLM.from_pretrained)")


def _summary(metrics: dict) -> dict:
    keys = (
        "steps",
        "tokens_seen",
        "params",
        "train_flops",
        "valid_loss",
        "valid_ppl",
        "valid_distill_loss",
        "tokens_per_s",
        "wall_s",
    )
    return {k: metrics[k] for k in keys if metrics.get(k) is not None}
