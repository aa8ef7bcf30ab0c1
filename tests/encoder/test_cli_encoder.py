"""``indus pretrain`` / ``indus distill``: user errors end with one line and exit code 2; a micro run works."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from indus.cli import app
from indus.errors import IndusError


def _run(args: list[str]) -> tuple[int, str]:
    """Invoke the app; an ``IndusError`` (what ``main`` turns into one line and exit 2) comes back as its text."""
    res = CliRunner().invoke(app, args)
    if isinstance(res.exception, IndusError):
        return 2, str(res.exception)
    return res.exit_code, res.output + (repr(res.exception) if res.exception else "")


def test_pretrain_user_errors(tmp_path):
    code, out = _run(["pretrain", "--config", str(tmp_path / "missing.yaml"), "--out", str(tmp_path / "o")])
    assert code == 2 and "config file not found" in out
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("preset: micro\nbogus: 1\n")
    code, out = _run(["pretrain", "--config", str(cfg), "--out", str(tmp_path / "o")])
    assert code == 2 and "unknown setting(s) bogus" in out
    code, out = _run(["pretrain", "--out", str(tmp_path / "o"), "--set", "preset=micro"])
    assert code == 2 and "no run length" in out


def test_distill_user_errors(tmp_path):
    code, out = _run(
        [
            "distill",
            "--teacher",
            str(tmp_path),
            "--student-preset",
            "micro",
            "--out",
            str(tmp_path / "s"),
            "--set",
            "max_steps=1",
        ]
    )
    assert code == 2 and "not a model folder" in out


def test_pretrain_cli_micro_run(tmp_path, micro_cfg):
    import yaml

    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({**micro_cfg, "max_steps": 5}))
    code, out = _run(["pretrain", "--config", str(cfg), "--out", str(tmp_path / "run"), "--set", "log_every=5"])
    assert code == 0, out
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["steps"] == 5
