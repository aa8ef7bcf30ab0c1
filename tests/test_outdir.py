"""The output-folder convention (indus.outdir) and model cards (indus.cards), on the tokenizer, the scaling report
and the folder checks themselves."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

from indus.atomic import atomic_directory
from indus.cards import read_header
from indus.errors import IndusError
from indus.outdir import MARKER, check_flags, prepare_output_dir, read_marker

LINES = [
    "Coronal mass ejections drive geomagnetic storms in the magnetosphere.",
    "Aerosols scatter sunlight and change the radiative balance of the atmosphere.",
] * 30


@pytest.fixture()
def corpus(tmp_path):
    path = tmp_path / "corpus.jsonl"
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in LINES), encoding="utf-8")
    return path


def test_tokenizer_folder_permissions_card_and_no_deleted_files(corpus, tmp_path):
    from indus.tokenizer import train_bpe

    out = tmp_path / "tok"
    mask = os.umask(0o022)
    try:
        train_bpe([corpus], 300, out_dir=out, show_progress=False)
    finally:
        os.umask(mask)
    assert out.stat().st_mode & 0o777 == 0o755  # not owner-only
    assert all(p.stat().st_mode & 0o777 == 0o644 for p in out.iterdir())
    head = read_header(out)
    assert head["library_name"] == "transformers" and "tokenizer" in head["tags"]
    card = (out / "README.md").read_text()
    assert "corpus.jsonl" in card and "| vocab_size | 300 |" in card and LINES[0] not in card
    (out / "notes.txt").write_text("mine")
    with pytest.raises(IndusError, match="not empty .*finished `indus tokenizer train`.*--overwrite"):
        train_bpe([corpus], 320, out_dir=out, show_progress=False)
    tok = train_bpe([corpus], 320, out_dir=out, show_progress=False, overwrite=True)
    assert len(tok) == 320 and (out / "notes.txt").read_text() == "mine"  # replaced what it writes, kept the rest
    assert not [p for p in out.iterdir() if p.name.startswith(".staging")]


def test_a_failed_tokenizer_run_never_blocks_its_retry(corpus, tmp_path):
    from indus.tokenizer import train_bpe

    out = tmp_path / "tok"
    with pytest.raises(Exception):  # noqa: B017 - any failure mid-run (here: a corpus file that does not exist)
        train_bpe([tmp_path / "missing.jsonl"], 300, out_dir=out, show_progress=False)
    marker = read_marker(out)  # the folder is claimed only once the corpus has been read: none, or unfinished
    assert marker is None or marker["status"] == "running"
    assert len(train_bpe([corpus], 300, out_dir=out, show_progress=False)) == 300


def test_the_convention_by_case(tmp_path):
    out = tmp_path / "x"
    prepared = prepare_output_dir(out, command="retriever index")
    assert out.is_dir() and read_marker(out)["status"] == "running" and read_marker(out)["pid"] == os.getpid()
    prepared.complete()
    (out / "index.faiss").write_text("x")
    with pytest.raises(IndusError, match="finished `indus retriever index`.*--overwrite to replace it$"):
        prepare_output_dir(out, command="retriever index")
    with pytest.raises(IndusError, match="holds an `indus retriever index` run, not `indus pretrain`"):
        prepare_output_dir(out, command="pretrain", resumable=True)
    with pytest.raises(IndusError, match="has no --resume"):
        prepare_output_dir(out, command="retriever index", resume=True)
    with pytest.raises(IndusError, match="exclude each other"):
        check_flags(True, True)
    # an unfinished run whose process is alive: a second process is refused
    busy = tmp_path / "busy"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        busy.mkdir()
        (busy / MARKER).write_text(
            json.dumps(
                {"command": "pretrain", "status": "running", "pid": sleeper.pid, "host": read_marker(out)["host"]}
            )
        )
        with pytest.raises(IndusError, match=f"another indus process \\(pid {sleeper.pid}"):
            prepare_output_dir(busy, command="pretrain", resumable=True, resume=True)
    finally:
        sleeper.kill()
        sleeper.wait()
    # ... and once it is gone (a crash), its leftovers without checkpoints are the retry's
    (busy / "config.yaml").write_text("a: 1\n")
    (busy / "checkpoints").mkdir()
    (busy / "checkpoints" / "step-0000010").mkdir()
    with pytest.raises(
        IndusError,
        match="unfinished `indus pretrain` run with checkpoints\\); pass --resume to "
        "continue it or --overwrite to start again",
    ):
        prepare_output_dir(busy, command="pretrain", resumable=True)
    (busy / "checkpoints" / "step-0000010").rmdir()
    prepare_output_dir(busy, command="pretrain", resumable=True)


def test_atomic_directory_keeps_files_it_did_not_write(tmp_path):
    target = tmp_path / "index"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    with atomic_directory(target) as tmp:
        (tmp / "meta.json").write_text("{}")
    assert sorted(p.name for p in target.iterdir()) == ["meta.json", "notes.txt"]


def test_scaling_report_follows_the_convention(tmp_path):
    from typer.testing import CliRunner

    from indus.cli import app

    out = tmp_path / "rep"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    args = ["scaling", "report", str(out), "--task", "gsm8k-naive", "--n-bootstrap", "0", "--n-random", "0"]
    res = CliRunner().invoke(app, args)
    assert isinstance(res.exception, IndusError) and "--overwrite" in str(res.exception)
    res = CliRunner().invoke(app, [*args, "--overwrite"])
    assert res.exit_code == 0, res.output
    assert (out / "report.md").is_file() and (out / "mine.txt").read_text() == "keep"
    assert read_marker(out)["status"] == "complete"
    res = CliRunner().invoke(app, args)
    assert isinstance(res.exception, IndusError) and "finished `indus scaling report`" in str(res.exception)


def test_card_header_is_yaml_with_the_hub_base_model(tmp_path):
    from indus.cards import write_card

    (tmp_path / "m").mkdir()
    write_card(
        tmp_path / "m",
        title="t",
        kind="retriever",
        library_name="sentence-transformers",
        base_model="layers:3@minilm",
        settings={"lr": 2e-5, "note": "a | b"},
        metrics={"x": float("nan")},
    )
    text = (tmp_path / "m" / "README.md").read_text()
    head = yaml.safe_load(text.split("---\n")[1])
    assert head == read_header(tmp_path / "m")
    assert head["base_model"] == "sentence-transformers/all-MiniLM-L6-v2" and head["tags"][:2] == ["indus", "retriever"]
    assert "a &#124; b" in text and "| x | n/a |" in text
