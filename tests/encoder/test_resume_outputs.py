"""Encoder runs and their output folders: a failed run never blocks its retry, --overwrite and --resume do what
they say, resume takes the newest complete checkpoint and refuses another world size, and the folder carries a
model card."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import yaml

from indus.cards import read_header
from indus.config import build_config
from indus.encoder.checkpoint import checkpoint_dirs, write_manifest
from indus.encoder.configs import DistillConfig, PretrainConfig
from indus.encoder.distill import distill
from indus.encoder.pretrain import pretrain
from indus.encoder.runlog import read_log
from indus.errors import IndusError
from indus.outdir import MARKER, read_marker


def _cfg(micro_cfg: dict, **kw) -> PretrainConfig:
    return build_config(PretrainConfig, {**micro_cfg, **kw})


def _losses(out: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in read_log(out / "log.jsonl") if "loss" in r}


def test_a_failed_run_never_blocks_its_retry(micro_cfg, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(IndusError):  # fails after the folder was prepared: the tokenizer does not exist
        pretrain(_cfg(micro_cfg, max_steps=2, tokenizer=str(tmp_path / "no-such-tokenizer")), out)
    assert out.is_dir() and read_marker(out)["status"] == "running"
    (out / "config.yaml").write_text("left: over\n")  # what a failure inside the loop leaves (issue 14, item 3)
    metrics = pretrain(_cfg(micro_cfg, max_steps=2, lr=1e-3), out)  # the retry, fixed settings, no flag
    assert metrics["steps"] == 2 and read_marker(out)["status"] == "complete"
    assert yaml.safe_load((out / "config.yaml").read_text())["lr"] == 1e-3


def test_resume_without_a_checkpoint_starts_fresh_whatever_the_settings(micro_cfg, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / MARKER).write_text(json.dumps({"command": "pretrain", "status": "running", "pid": 0}))
    (out / "config.yaml").write_text("lr: 0.5\n")
    metrics = pretrain(_cfg(micro_cfg, max_steps=2), out, resume=True)
    assert metrics["steps"] == 2


def test_finished_or_foreign_folders_need_a_flag_and_overwrite_keeps_foreign_files(micro_cfg, tmp_path):
    out = tmp_path / "run"
    pretrain(_cfg(micro_cfg, max_steps=2, checkpoint_every=1, keep_checkpoints=5), out)
    with pytest.raises(IndusError, match="not empty .*finished.*--overwrite"):
        pretrain(_cfg(micro_cfg, max_steps=2), out)
    (out / "notes.txt").write_text("mine")
    metrics = pretrain(_cfg(micro_cfg, max_steps=1, checkpoint_every=1), out, overwrite=True)
    assert metrics["steps"] == 1 and (out / "notes.txt").read_text() == "mine"
    assert [p.name for p in checkpoint_dirs(out / "checkpoints")] == ["step-0000001"]  # the old run's are gone
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "data.csv").write_text("a,b\n")
    with pytest.raises(IndusError, match="not empty .*--overwrite"):
        pretrain(_cfg(micro_cfg, max_steps=1), foreign)


def test_resume_takes_the_newest_complete_checkpoint(micro_cfg, tmp_path):
    full = tmp_path / "full"
    pretrain(_cfg(micro_cfg, max_steps=20, checkpoint_every=5, keep_checkpoints=4), full)
    part = tmp_path / "part"
    import shutil

    shutil.copytree(full, part)
    (part / "metrics.json").unlink()
    (part / MARKER).write_text(json.dumps({"command": "pretrain", "status": "running", "pid": 0}))
    ckpts = checkpoint_dirs(part / "checkpoints")
    for late in ckpts[-2:]:  # step 15 cut short mid-save (no manifest), step 20 gone
        shutil.rmtree(late)
    partial = part / "checkpoints" / "step-0000015"
    partial.mkdir()
    (partial / "model.safetensors").write_bytes(b"\0" * 10)
    metrics = pretrain(_cfg(micro_cfg, max_steps=20, checkpoint_every=5, keep_checkpoints=4), part, resume=True)
    assert metrics["steps"] == 20
    assert _losses(part) == _losses(full)  # resumed from step 10, the same curve


def test_resume_on_another_world_size_is_refused(micro_cfg, tmp_path):
    out = tmp_path / "run"
    cfg = _cfg(micro_cfg, max_steps=10)
    pretrain(cfg, out)
    (out / "metrics.json").unlink()
    ckpt = checkpoint_dirs(out / "checkpoints")[-1]
    state = torch.load(ckpt / "state.pt", weights_only=True)
    assert state["world_size"] == 1 and json.loads((ckpt / "state.json").read_text())["world_size"] == 1
    # the same checkpoint as two processes would have written it
    state["world_size"], state["rng"] = 2, state["rng"] * 2
    torch.save(state, ckpt / "state.pt")
    (ckpt / "state.json").write_text(json.dumps({**json.loads((ckpt / "state.json").read_text()), "world_size": 2}))
    write_manifest(ckpt)
    with pytest.raises(IndusError, match="2 processes, this launch has 1"):
        pretrain(cfg, out, resume=True)


def _card_text(folder: Path) -> str:
    return (folder / "README.md").read_text(encoding="utf-8")


def test_encoder_and_student_folders_carry_a_model_card(micro_cfg, corpus_dir, tmp_path):
    teacher = tmp_path / "teacher"
    pretrain(_cfg(micro_cfg, max_steps=2), teacher)
    head = read_header(teacher)
    assert head["library_name"] == "transformers" and "indus" in head["tags"] and "base_model" not in head
    text = _card_text(teacher)
    train = corpus_dir / "train.jsonl"
    import hashlib

    assert hashlib.sha256(train.read_bytes()).hexdigest() in text  # the data file, hashed
    assert "preset `micro`" in text and "valid_loss" in text and "Steps trained: 2" in text
    assert "indus 0.1.0" in text and "Command:" in text
    first_doc = json.loads(train.read_text().splitlines()[0])["text"]
    assert first_doc[:40] not in text  # names data, never quotes it
    student = tmp_path / "student"
    distill(
        build_config(
            DistillConfig,
            {**micro_cfg, "teacher": str(teacher), "preset": "micro", "max_steps": 2, "head_fit_steps": 1},
        ),
        student,
    )
    head = read_header(student)
    assert "distilled-encoder" in head["tags"]
    assert f"Base model: `{teacher}`" in _card_text(student) and "valid_distill_loss" in _card_text(student)
    assert os.stat(student / "README.md").st_mode & 0o044 == 0o044


def test_cli_pretrain_has_overwrite_and_refuses_it_with_resume(micro_cfg, tmp_path):
    from typer.testing import CliRunner

    from indus.cli import app

    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({**micro_cfg, "max_steps": 1}))
    out = tmp_path / "run"
    base = ["pretrain", "--config", str(cfg), "--out", str(out)]
    assert CliRunner().invoke(app, base).exit_code == 0
    res = CliRunner().invoke(app, base)
    assert isinstance(res.exception, IndusError) and "--overwrite" in str(res.exception)
    res = CliRunner().invoke(app, [*base, "--resume", "--overwrite"])
    assert isinstance(res.exception, IndusError) and "exclude each other" in str(res.exception)
    res = CliRunner().invoke(app, [*base, "--overwrite", "--set", "max_steps=2"])
    assert res.exit_code == 0, res.output
    assert json.loads((out / "metrics.json").read_text())["steps"] == 2
