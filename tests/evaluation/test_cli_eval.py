from __future__ import annotations

import json

import pytest

from cli_runner import invoke

NER = "a\tB-X\nb\tO\nc\tI-X\n\nd\tO\ne\tB-X\n\n"


@pytest.fixture()
def ner_dir(tmp_path):
    d = tmp_path / "ner"
    d.mkdir()
    (d / "train.tsv").write_text(NER * 2)
    (d / "test.tsv").write_text(NER)
    return d


def test_eval_ner_prints_and_writes_json(monkeypatch, capsys, micro_model_dir, ner_dir, tmp_path):
    out_json = tmp_path / "ner.json"
    code, out, err = invoke(
        monkeypatch,
        capsys,
        "eval",
        "ner",
        "--data",
        ner_dir,
        "--model",
        micro_model_dir,
        "--seeds",
        "1",
        "--epochs",
        "1",
        "--max-train-sentences",
        "3",
        "--json",
        out_json,
        "--set",
        "progress=false",
        "--set",
        "batch_size=2",
    )
    assert code == 0, err
    assert "per type" in out and "f1" in out
    result = json.loads(out_json.read_text())
    assert result["seeds"] == 1 and result["settings"]["batch_size"] == 2
    # lr auto (the default) on data without a dev split: one of the 3 sentences is held out to choose on
    assert result["train_sentences"] == 2 and result["lr_choice"]["mode"] == "auto"
    assert result["lr_choice"]["dev"] == "0.1 of train" and len(result["lr_choice"]["grid"]) == 3
    assert "chosen on 0.1 of train" in out


def test_eval_cls(monkeypatch, capsys, micro_model_dir, tmp_path):
    d = tmp_path / "cls"
    d.mkdir()
    rows = "".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in [("a b", "p"), ("c", "q")])
    (d / "train.jsonl").write_text(rows)
    (d / "test.jsonl").write_text(rows)
    code, out, err = invoke(
        monkeypatch,
        capsys,
        "eval",
        "cls",
        "--data",
        d,
        "--model",
        micro_model_dir,
        "--seeds",
        "1",
        "--set",
        "max_steps=1",
        "--primary",
        "micro_f1",
        "--bf16",
        "--class-weights",
        "balanced",
    )
    assert code == 0, err
    assert "macro_f1" in out and "majority class" in out and "chosen on" in out
    # one step on two texts predicts one class: shown as collapsed, or (when it does not) with its per-label table
    assert "collapsed" in out or "per label" in out


@pytest.mark.parametrize(
    "args, expected",
    [
        (["eval", "ner", "--data", "{tmp}/missing", "--model", "random:micro"], "missing"),
        (["eval", "ner", "--data", "{ner}", "--model", "random:nope"], "nope: model not found"),
        (["eval", "ner", "--data", "{ner}", "--model", "random:micro", "--seeds", "0"], "seeds must be >= 1"),
        (
            ["eval", "ner", "--data", "{ner}", "--model", "random:micro", "--set", "colour=red"],
            "unknown setting(s) colour",
        ),
        (["eval", "ner", "--data", "{ner}", "--model", "random:micro", "--split", "dev"], "no 'dev' split"),
        (["eval", "suite", "--model", "random:micro", "--suite", "{tmp}/none.yaml"], "suite file not found"),
    ],
)
def test_bad_input_is_one_line_exit_2(monkeypatch, capsys, ner_dir, tmp_path, args, expected):
    args = [a.format(tmp=tmp_path, ner=ner_dir) for a in args]
    code, _, err = invoke(monkeypatch, capsys, *args)
    assert code == 2, err
    assert err.startswith("error: ") and err.strip().count("\n") == 0 and expected in err


def test_eval_suite_table(monkeypatch, capsys, micro_model_dir, ner_dir, tmp_path):
    suite = tmp_path / "s.yaml"
    suite.write_text(
        f"tasks:\n  - {{task: ner, data: {ner_dir}, settings: {{seeds: 1, max_steps: 1, progress: false}}}}\n"
    )
    code, out, err = invoke(
        monkeypatch,
        capsys,
        "eval",
        "suite",
        "--model",
        micro_model_dir,
        "--suite",
        suite,
        "--json",
        tmp_path / "suite.json",
    )
    assert code == 0, err
    assert "suite s" in out and "ner" in out
    assert json.loads((tmp_path / "suite.json").read_text())["rows"][0]["metric"] == "f1"
