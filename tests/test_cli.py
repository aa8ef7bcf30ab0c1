from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from indus import __version__
from indus.cli import app

runner = CliRunner()

GROUPS = ["data", "scaling", "tokenizer", "retriever", "eval"]
COMMANDS = ["pretrain", "distill", "run"]


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.output


@pytest.mark.parametrize("name", GROUPS + COMMANDS)
def test_every_group_has_help(name):
    result = runner.invoke(app, [name, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_bad_option_exits_2():
    result = runner.invoke(app, ["data", "list", "--no-such-option"])
    assert result.exit_code == 2


def test_missing_data_root_is_one_line_exit_2(tmp_path):
    """The real entry point: a user error prints one line on stderr, no traceback."""
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "from indus.cli import main; main()",
            "--data-root",
            str(tmp_path / "nope"),
            "data",
            "list",
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0
    assert "nope" in proc.stderr


def test_data_list_counts(tmp_path):
    (tmp_path / "ner" / "toy").mkdir(parents=True)
    (tmp_path / "ner" / "toy" / "train.tsv").write_text("a\tO\nb\tB-X\n\nc\tO\n")
    result = runner.invoke(app, ["--data-root", str(tmp_path), "data", "list"])
    assert result.exit_code == 0, result.output
    assert "toy" in result.output and "train sent: 2" in result.output
