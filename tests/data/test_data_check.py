from __future__ import annotations

import gzip
import json

import pytest

from cli_runner import invoke
from indus.data.check import check, detect_format, summary_rows
from indus.errors import IndusError


def jsonl(path, rows):
    text = "".join(json.dumps(r) + "\n" for r in rows)
    if path.suffix == ".gz":
        with gzip.open(path, "wt", encoding="utf-8") as fh:
            fh.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture()
def formats(tmp_path):
    """One small valid dataset of every format."""
    ner = tmp_path / "ner" / "toy"
    ner.mkdir(parents=True)
    (ner / "train.tsv").write_text("a\tB-X\nb\tO\n\nc\tO\n")
    (ner / "devel.tsv").write_text("d\tI-X\n")
    sciie = tmp_path / "sciie.txt"
    sciie.write_text("-DOCSTART- NN O O\n\nEnglish NN O I-Material\nis NN O O\n")
    cls = tmp_path / "classification" / "cls"
    cls.mkdir(parents=True)
    jsonl(cls / "train.jsonl", [{"text": "a", "label": "x"}, {"text": "b", "label": "y"}])
    pairs = jsonl(tmp_path / "pairs.jsonl.gz", [{"anchor": "q", "positive": "p"}, {"anchor": "q", "positive": "r"}])
    corpus = jsonl(tmp_path / "corpus.jsonl", [{"text": "one two"}, {"text": ""}])
    plain = tmp_path / "plain.txt"
    plain.write_text("The sun is a star.\n\nIt is hot.\n")
    squad = tmp_path / "squad.json"
    squad.write_text(
        json.dumps(
            {
                "version": "1.1",
                "data": [
                    {
                        "title": "t",
                        "paragraphs": [
                            {
                                "context": "The sun is hot.",
                                "qas": [
                                    {
                                        "id": "1",
                                        "question": "What is hot?",
                                        "answers": [{"text": "The sun", "answer_start": 0}],
                                    }
                                ],
                            }
                        ],
                    }
                ],
            }
        )
    )
    beir = tmp_path / "ir" / "toy"
    (beir / "qrels").mkdir(parents=True)
    jsonl(beir / "corpus.jsonl", [{"_id": "d1", "title": "", "text": "sun"}])
    jsonl(beir / "queries.jsonl", [{"_id": "q1", "text": "sun?"}])
    (beir / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    return {
        "ner": ner,
        "sciie": sciie,
        "classification": cls,
        "pairs": pairs,
        "corpus": corpus,
        "plain": plain,
        "squad": squad,
        "beir": beir,
        "root": tmp_path,
    }


@pytest.mark.parametrize(
    "key, fmt",
    [
        ("ner", "ner"),
        ("sciie", "ner"),
        ("classification", "classification"),
        ("pairs", "pairs"),
        ("corpus", "corpus"),
        ("plain", "corpus"),
        ("squad", "squad"),
        ("beir", "beir"),
    ],
)
def test_detect_format(formats, key, fmt):
    assert detect_format(formats[key]) == fmt


def test_check_counts_per_format(formats):
    ner = check(formats["ner"])
    assert ner["format"] == "ner" and ner["splits"]["dev"]["entities"] == 1 and ner["splits"]["dev"]["repaired"] == 1
    assert check(formats["sciie"])["scheme"] == "IOB1"
    assert check(formats["classification"])["splits"]["train"]["labels"] == 2
    pairs = check(formats["pairs"])
    assert pairs["pairs"] == 2 and pairs["files"]["pairs.jsonl.gz"]["anchors"] == 1
    corpus = check(formats["corpus"])
    assert corpus["files"]["corpus.jsonl"] == {"split": "train", "texts": 2, "empty": 1, "characters": 7, "words": 2}
    assert check(formats["plain"])["texts"] == 2


def test_names_resolve_through_the_data_root(formats):
    with pytest.raises(IndusError, match="ambiguous"):  # ner/toy and ir/toy
        check("toy", root=formats["root"])
    assert check("cls", root=formats["root"])["format"] == "classification"
    assert check("ner/toy", root=formats["root"])["format"] == "ner"


def test_summary_rows_split_tables_from_scalars(formats):
    summary, tables = summary_rows(check(formats["ner"]))
    assert {r["key"] for r in summary} == {"format", "path", "scheme", "entity_types"}
    assert [r["split"] for r in tables["splits"]] == ["train", "dev"]


def test_unrecognised_inputs(formats, tmp_path):
    with pytest.raises(IndusError, match="looks like a data root"):
        detect_format(formats["root"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(IndusError, match="no dataset files recognised"):
        detect_format(tmp_path / "empty")
    (tmp_path / "x.xlsx").write_text("a,b\n")
    with pytest.raises(IndusError, match="unknown file type"):
        detect_format(tmp_path / "x.xlsx")
    (tmp_path / "x.csv").write_text("Model,MMLU\nm1,0.5\n")
    assert detect_format(tmp_path / "x.csv") == "scores"
    jsonl(tmp_path / "odd.jsonl", [{"foo": 1}])
    with pytest.raises(IndusError, match="unrecognised JSON lines"):
        detect_format(tmp_path / "odd.jsonl")
    with pytest.raises(IndusError, match="unknown data format"):
        check(formats["ner"], "xml")


def test_cli_check_prints_tables_and_json(monkeypatch, capsys, formats, tmp_path):
    code, out, _ = invoke(monkeypatch, capsys, "data", "check", formats["ner"], "--json", tmp_path / "c.json")
    assert code == 0 and "sentences" in out and "IOB2" in out
    assert json.loads((tmp_path / "c.json").read_text())["splits"]["train"]["sentences"] == 2


def _malformed(tmp_path):
    ner = tmp_path / "ner"
    ner.mkdir()
    (ner / "train.tsv").write_text("a\tO\nb\tX-Foo\n")
    cls = tmp_path / "cls"
    cls.mkdir()
    (cls / "train.jsonl").write_text('{"text": "a", "label": "x"}\n{"text": "b"}\n')
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text('{"anchor": "a", "positive": "b"}\n{"anchor": "a", "positive": ""}\n')
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text('{"text": "a"}\n{"text": 3}\n')
    squad = tmp_path / "squad.json"
    squad.write_text(
        '{"data": [{"paragraphs": [{"context": "x", "qas": [{"id": "1", "question": "q", '
        '"answers": [{"text": "x", "answer_start": "zero"}]}]}]}]}'
    )
    beir = tmp_path / "beir"
    (beir / "qrels").mkdir(parents=True)
    (beir / "corpus.jsonl").write_text('{"_id": "d1", "text": "a"}\nnot json\n')
    (beir / "queries.jsonl").write_text('{"_id": "q1", "text": "a"}\n')
    (beir / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\n")
    return {
        "ner": (ner, "train.tsv:2"),
        "classification": (cls, "train.jsonl:2"),
        "pairs": (pairs, "pairs.jsonl:2"),
        "corpus": (corpus, "corpus.jsonl:2"),
        "squad": (squad, "squad.json"),
        "beir": (beir, ""),
    }


@pytest.mark.parametrize("fmt", ["ner", "classification", "pairs", "corpus", "squad", "beir"])
def test_cli_malformed_file_is_one_line_exit_2(monkeypatch, capsys, tmp_path, fmt):
    path, where = _malformed(tmp_path)[fmt]
    code, _, err = invoke(monkeypatch, capsys, "data", "check", path)
    assert code == 2
    assert "Traceback" not in err and err.strip().count("\n") == 0
    assert err.startswith("error: ") and where in err


def test_cli_missing_path_exit_2(monkeypatch, capsys, tmp_path):
    code, _, err = invoke(monkeypatch, capsys, "--data-root", tmp_path, "data", "check", "nope")
    assert code == 2 and "nope" in err and err.strip().count("\n") == 0
