"""Every shipped config sits in the folder of the command that reads it, and loads with that command's config."""

from __future__ import annotations

from pathlib import Path

import pytest

from indus.config import load_config
from indus.encoder.configs import DistillConfig, PretrainConfig
from indus.pipeline import PipelineConfig
from indus.retriever.distill import RetrieverDistillConfig
from indus.retriever.train import RetrieverTrainConfig

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
COMMANDS = {
    "pipeline": PipelineConfig,
    "pretrain": PretrainConfig,
    "distill": DistillConfig,
    "retriever": RetrieverTrainConfig,
}


def _config_class(path: Path) -> type:
    # configs/retriever/ holds `indus retriever train` and `indus retriever distill` configs
    if path.parent.name == "retriever" and "distill" in path.stem:
        return RetrieverDistillConfig
    return COMMANDS[path.parent.name]


def test_configs_are_grouped_by_command() -> None:
    loose = sorted(p.name for p in CONFIGS.glob("*.yaml"))
    assert not loose, f"configs/ holds YAML outside a command folder: {loose}"
    assert {p.name for p in CONFIGS.iterdir() if p.is_dir()} == {*COMMANDS, "slurm"}


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*/*.yaml")), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_config_loads_with_its_command(path: Path) -> None:
    cfg = load_config(_config_class(path), path)
    assert isinstance(cfg, _config_class(path))
