"""Pretraining reads the corpus by dataset name (training file for training, held-out file for the held-out loss:
:func:`indus.encoder.data.corpus_split`, tested in tests/data) and refuses a held-out file among the training ones."""

from __future__ import annotations

import json
import math
import shutil

import yaml

from cli_runner import run_cli


def test_pretrain_by_name_and_refusal(micro_cfg, corpus_dir, tmp_path, monkeypatch, capsys):
    root = tmp_path / "data"
    shutil.copytree(corpus_dir, root / "corpus")
    monkeypatch.setenv("INDUS_DATA", str(root))
    cfg = {
        **micro_cfg,
        "train_files": ["corpus"],
        "valid_files": ["corpus"],
        "max_steps": 2,
        "eval_every": 2,
        "checkpoint_every": 2,
    }
    (tmp_path / "ok.yaml").write_text(yaml.safe_dump(cfg))
    code, err = run_cli(["pretrain", "--config", str(tmp_path / "ok.yaml"), "--out", str(tmp_path / "ok")], capsys)
    assert code == 0, err
    metrics = json.loads((tmp_path / "ok" / "metrics.json").read_text())
    assert metrics["steps"] == 2 and math.isfinite(metrics["valid_loss"])

    bad = {**cfg, "valid_files": [str(root / "corpus" / "train.jsonl")]}
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    code, err = run_cli(["pretrain", "--config", str(tmp_path / "bad.yaml"), "--out", str(tmp_path / "bad")], capsys)
    assert code == 2 and "training and as held-out" in err
    assert len([line for line in err.splitlines() if line.strip()]) == 1
