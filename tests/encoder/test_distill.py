"""MiniLMv2 distillation end to end on micro models: the relation loss falls, the student loads in transformers,
and the teacher / relation-head settings are checked."""

from __future__ import annotations

import json

import pytest

from indus.config import build_config
from indus.encoder.configs import DistillConfig
from indus.encoder.distill import distill
from indus.encoder.runlog import read_log
from indus.errors import IndusError


@pytest.fixture(scope="module")
def teacher_dir(bpe_dir, tmp_path_factory):
    """A micro teacher with sharp attention (large random weights), so its relations are far from uniform."""
    import torch
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    from indus.encoder.presets import config_for_tokenizer

    tok = AutoTokenizer.from_pretrained(str(bpe_dir))
    torch.manual_seed(0)
    model = AutoModelForMaskedLM.from_config(config_for_tokenizer("micro", tok, initializer_range=0.3))
    out = tmp_path_factory.mktemp("teacher")
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def test_distill_micro_end_to_end(micro_cfg, teacher_dir, tmp_path):
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    settings = {k: v for k, v in micro_cfg.items() if k != "tokenizer"}
    cfg = build_config(
        DistillConfig,
        {**settings, "teacher": str(teacher_dir), "preset": "micro", "max_steps": 20, "head_fit_steps": 5, "lr": 5e-3},
    )
    out = tmp_path / "student"
    metrics = distill(cfg, out)
    assert metrics["teacher_layer"] == 1 and metrics["relation_heads"] == 2
    log = read_log(out / "log.jsonl")
    losses = [r["loss"] for r in log if "loss" in r]
    assert len(losses) == 20 and sum(losses[-3:]) < 0.7 * sum(losses[:3])
    valid = [r["valid_loss"] for r in log if "valid_loss" in r]
    assert metrics["valid_distill_loss"] == pytest.approx(valid[-1]) and valid[-1] < valid[0]
    assert metrics["valid_loss"] > 0 and metrics["head_fit_steps"] == 5
    assert json.loads((out / "metrics.json").read_text())["kind"] == "distill"
    student = AutoModelForMaskedLM.from_pretrained(str(out))
    tok = AutoTokenizer.from_pretrained(str(out))
    assert len(tok) == student.config.vocab_size == 300, "the student takes the teacher's tokenizer"


def test_distill_rejects_bad_settings(micro_cfg, teacher_dir, tmp_path):
    settings = {k: v for k, v in micro_cfg.items() if k != "tokenizer"}
    base = {**settings, "teacher": str(teacher_dir), "preset": "micro", "max_steps": 2}
    with pytest.raises(IndusError, match="relation_heads=3 must divide"):
        distill(build_config(DistillConfig, {**base, "relation_heads": 3}), tmp_path / "a")
    with pytest.raises(IndusError, match="layers 1..2"):
        distill(build_config(DistillConfig, {**base, "teacher_layer": 5}), tmp_path / "b")
    with pytest.raises(IndusError, match="not a model folder"):
        distill(build_config(DistillConfig, {**base, "teacher": str(tmp_path)}), tmp_path / "c")
