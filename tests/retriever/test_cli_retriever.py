"""``indus retriever`` on the command line: user errors exit 2 with one line naming file and line."""

from __future__ import annotations

import json
import sys

import pytest
from typer.testing import CliRunner

from indus.cli import app, main

runner = CliRunner()


def _main(monkeypatch, capsys, *args):
    monkeypatch.setattr(sys, "argv", ["indus", *args])
    with pytest.raises(SystemExit) as exc:
        main()
    return exc.value.code, capsys.readouterr().err


def test_pairs_file_with_a_missing_field_names_the_line(monkeypatch, capsys, micro_model_dir, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"anchor": "a", "positive": "b"}\n{"anchor": "only an anchor"}\n', encoding="utf-8")
    code, err = _main(
        monkeypatch,
        capsys,
        "retriever",
        "train",
        "--model",
        str(micro_model_dir),
        "--pairs",
        str(bad),
        "--out",
        str(tmp_path / "out"),
    )
    assert code == 2
    assert f"{bad}:2: missing field(s) positive" in err
    assert "Traceback" not in err and err.strip().count("\n") == 0


def test_unknown_setting_is_exit_2(monkeypatch, capsys, pairs_dir, tmp_path):
    code, err = _main(
        monkeypatch,
        capsys,
        "retriever",
        "train",
        "--pairs",
        str(pairs_dir),
        "--out",
        str(tmp_path / "o"),
        "--set",
        "batchsize=8",
    )
    assert code == 2 and "unknown setting(s) batchsize" in err


def test_search_needs_exactly_one_query_source(monkeypatch, capsys, tmp_path):
    code, err = _main(monkeypatch, capsys, "retriever", "search", "--index", str(tmp_path))
    assert code == 2 and "exactly one of --query" in err


def test_cli_train_index_search_round_trip(micro_model_dir, pairs_dir, tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("batch_size: 4\nmax_seq_length: 24\nmax_steps: 2\nsave_steps: 10\n", encoding="utf-8")
    run = tmp_path / "run"
    files = sorted(str(p) for p in pairs_dir.iterdir())
    result = runner.invoke(
        app,
        [
            "retriever",
            "train",
            "--model",
            str(micro_model_dir),
            "--config",
            str(cfg),
            "--set",
            "lr=1e-4",
            "--out",
            str(run),
            "--pairs",
            *files,
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 2 and summary["config"]["lr"] == 1e-4 and len(summary["sources"]) == 3

    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(
        "".join(
            json.dumps({"id": f"doc{i}", "text": t}) + "\n"
            for i, t in enumerate(["sea ice melts", "comet dust trails", "stellar winds blow"])
        )
    )
    result = runner.invoke(
        app, ["retriever", "index", "--model", str(run), "--corpus", str(corpus), "--out", str(tmp_path / "idx")]
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(
        app, ["retriever", "search", "--index", str(tmp_path / "idx"), "--query", "comet dust trails", "-k", "2"]
    )
    assert result.exit_code == 0 and "doc1" in result.output
    queries = tmp_path / "queries.txt"
    queries.write_text("sea ice melts\nstellar winds blow\n")
    result = runner.invoke(
        app,
        [
            "retriever",
            "search",
            "--index",
            str(tmp_path / "idx"),
            "--queries",
            str(queries),
            "-k",
            "1",
            "--out",
            str(tmp_path / "run.trec"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert [line.split()[2] for line in (tmp_path / "run.trec").read_text().splitlines()] == ["doc0", "doc2"]
