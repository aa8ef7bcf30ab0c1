from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from indus.config import load_config
from indus.errors import IndusError
from indus.pipeline import PipelineConfig

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["demo.yaml", "paper.yaml"])
def test_shipped_configs_load(name):
    cfg = load_config(PipelineConfig, REPO / "configs" / "pipeline" / name)
    assert cfg.pretrain.runs and cfg.eval.tasks


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "pretrain: {runs: [{name: a}]}\ndistill: [{name: s, teacher: nobody}]\n",
            "teacher 'nobody' is not a pretrain",
        ),
        ("pretrain: {runs: [{name: a}, {name: a}]}\n", "repeated: a"),
        ("eval: {baselines: [gpt]}\n", "unknown baseline"),
        ("tokenizer: {vocab_sise: 100}\n", "unknown setting"),
    ],
)
def test_bad_configs_are_clear(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(IndusError, match=message):
        load_config(PipelineConfig, path)


def test_cli_bad_config_is_one_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("retriever: [{name: r, model: 'pretrain:none', pairs: [x]}]\n")
    proc = subprocess.run(
        [sys.executable, "-m", "indus", "run", str(path), "--out", str(tmp_path / "o")], capture_output=True, text=True
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "names no pretrain run" in proc.stderr and proc.stderr.strip().count("\n") == 0
