"""Pretraining end to end on micro models: the loss falls, outputs load in transformers, resume continues the same
loss curve (also after SIGKILL), and damaged checkpoints are refused."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from indus.config import build_config
from indus.encoder.checkpoint import CheckpointError, checkpoint_dirs
from indus.encoder.configs import PretrainConfig
from indus.encoder.pretrain import pretrain
from indus.encoder.runlog import read_log
from indus.errors import IndusError


def _losses(out: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in read_log(out / "log.jsonl") if "loss" in r}


def test_short_run_lowers_loss_and_loads_in_transformers(micro_cfg, tmp_path):
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    out = tmp_path / "run"
    metrics = pretrain(build_config(PretrainConfig, micro_cfg), out)
    losses = list(_losses(out).values())
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.5
    valid = [r["valid_loss"] for r in read_log(out / "log.jsonl") if "valid_loss" in r]
    assert valid[-1] < valid[0] and metrics["valid_loss"] == pytest.approx(valid[-1])
    assert metrics["steps"] == 30 and metrics["tokens_seen"] == 30 * 8 * 32
    assert metrics["train_flops"] == 6 * metrics["params_non_embedding"] * metrics["tokens_seen"]
    assert metrics["train_flops_with_embeddings"] == 6 * metrics["params"] * metrics["tokens_seen"]
    for key in ("valid_ppl", "tokens_per_s", "wall_s", "params"):
        assert metrics[key] > 0
    assert json.loads((out / "metrics.json").read_text())["steps"] == 30
    assert (out / "loss_curve.png").stat().st_size > 1000
    model = AutoModelForMaskedLM.from_pretrained(str(out))
    tok = AutoTokenizer.from_pretrained(str(out))
    assert model.config.vocab_size == len(tok) == 300 and model.config.num_hidden_layers == 2
    assert model.lm_head.decoder.weight.data_ptr() == model.roberta.embeddings.word_embeddings.weight.data_ptr()
    assert len(checkpoint_dirs(out / "checkpoints")) == 2, "keep_checkpoints=2"
    with pytest.raises(IndusError, match="not empty"):
        pretrain(build_config(PretrainConfig, micro_cfg), out)


def test_pretraining_dropout_is_used_in_training_and_the_saved_model_keeps_0_1(micro_cfg, tmp_path):
    import torch
    from transformers import AutoModelForMaskedLM

    from indus.encoder.pretrain import build_model, load_pretrain_tokenizer

    cfg = build_config(PretrainConfig, {**micro_cfg, "dropout": 0.0, "max_steps": 3})
    model = build_model(cfg, load_pretrain_tokenizer(cfg.tokenizer))
    drops = [m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)]
    assert drops and set(drops) == {0.0}
    out = tmp_path / "run"
    pretrain(cfg, out)
    saved = AutoModelForMaskedLM.from_pretrained(str(out))
    assert saved.config.hidden_dropout_prob == saved.config.attention_probs_dropout_prob == 0.1
    assert {m.p for m in saved.modules() if isinstance(m, torch.nn.Dropout)} == {0.1}
    with pytest.raises(IndusError, match="dropout must be in"):
        build_config(PretrainConfig, {**micro_cfg, "dropout": 1.5})


def test_weight_decay_skips_biases_and_layernorm():
    from transformers import AutoModelForMaskedLM

    from indus.encoder.loop import param_groups
    from indus.encoder.presets import roberta_config

    model = AutoModelForMaskedLM.from_config(roberta_config("micro", vocab_size=100, max_length=16))
    decay, no_decay = param_groups(model, 0.01)
    names = {id(p): n for n, p in model.named_parameters()}
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    assert all(
        "LayerNorm" in names[id(p)] or "layer_norm" in names[id(p)] or names[id(p)].endswith("bias")
        for p in no_decay["params"]
    )
    assert all(p.ndim == 2 for p in decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


def test_resume_in_process_continues_the_same_curve(micro_cfg, tmp_path):
    cfg = build_config(PretrainConfig, {**micro_cfg, "max_steps": 20})
    full = tmp_path / "full"
    pretrain(cfg, full)
    # the same run "interrupted" after step 10: its newest checkpoint and final model removed
    import shutil

    part = tmp_path / "part"
    shutil.copytree(full, part)
    shutil.rmtree(checkpoint_dirs(part / "checkpoints")[-1])
    (part / "metrics.json").unlink()
    metrics = pretrain(cfg, part, resume=True)
    assert sorted(_losses(part)) == list(range(1, 21))
    assert _losses(part) == _losses(full)
    assert metrics["valid_loss"] == json.loads((full / "metrics.json").read_text())["valid_loss"]


@pytest.fixture()
def ten_step_run(micro_cfg, tmp_path) -> Path:
    """A finished 10-step run whose final checkpoint a test may damage (metrics.json removed to allow resume)."""
    out = tmp_path / "run"
    pretrain(build_config(PretrainConfig, {**micro_cfg, "max_steps": 10}), out)
    (out / "metrics.json").unlink()
    return out


def test_damaged_checkpoint_is_refused(micro_cfg, ten_step_run):
    cfg = build_config(PretrainConfig, {**micro_cfg, "max_steps": 10})
    ckpt = checkpoint_dirs(ten_step_run / "checkpoints")[-1]
    weights = ckpt / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        pretrain(cfg, ten_step_run, resume=True)
    weights.write_bytes(data[:-10] + bytes([data[-10] ^ 0xFF]) + data[-9:])
    with pytest.raises(CheckpointError, match="corrupt"):
        pretrain(cfg, ten_step_run, resume=True)
    weights.write_bytes(data)
    (ckpt / "optimizer.pt").unlink()
    with pytest.raises(CheckpointError, match="missing"):
        pretrain(cfg, ten_step_run, resume=True)
    (ckpt / "manifest.json").unlink()  # a save cut short: skipped, and with no other checkpoint, a fresh start
    metrics = pretrain(cfg, ten_step_run, resume=True)
    assert metrics["steps"] == 10 and min(_losses(ten_step_run)) == 1


def test_resume_refuses_changed_settings(micro_cfg, ten_step_run):
    with pytest.raises(IndusError, match="lr"):
        pretrain(build_config(PretrainConfig, {**micro_cfg, "max_steps": 10, "lr": 1e-2}), ten_step_run, resume=True)


def _cli(cfg_path: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "indus", "pretrain", "--config", str(cfg_path), "--out", str(out), *extra]


@pytest.mark.slow
def test_sigkill_mid_run_then_resume_gives_the_same_losses(micro_cfg, tmp_path):
    """RELIABILITY: kill -9 after a checkpoint, resume, and get the uninterrupted run's per-step losses.

    Slow (three interpreter start-ups, ~15 s): ``make test-all`` or ``pytest -m slow`` runs it.
    """
    cfg = {**micro_cfg, "max_steps": 60, "checkpoint_every": 10, "eval_every": 20}
    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    # a reference run, uninterrupted (it also builds the token cache the other runs read)
    subprocess.run(_cli(cfg_path, tmp_path / "ref"), env=env, check=True, capture_output=True)

    out = tmp_path / "killed"
    proc = subprocess.Popen(_cli(cfg_path, out), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (out / "checkpoints" / "step-0000010").is_dir():
        assert proc.poll() is None, "the run ended before its first checkpoint"
        assert time.time() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "metrics.json").exists(), "killed before the end"
    killed_at = max(_losses(out))
    assert 10 <= killed_at < 60

    subprocess.run(_cli(cfg_path, out, "--resume"), env=env, check=True, capture_output=True)
    ref, resumed = _losses(tmp_path / "ref"), _losses(out)
    assert sorted(resumed) == list(range(1, 61))
    assert resumed == ref, "per-step losses after resume must equal the uninterrupted run's, bit for bit"
    ref_metrics = json.loads((tmp_path / "ref" / "metrics.json").read_text())
    assert json.loads((out / "metrics.json").read_text())["valid_loss"] == ref_metrics["valid_loss"]
