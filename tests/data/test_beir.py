from __future__ import annotations

import json

import pytest

from indus.data.beir import check, load_beir, qrels_splits
from indus.errors import DataFormatError, IndusError


def make_beir(root, docs=None, queries=None, qrels=None, split="test"):
    """A BEIR folder: ``docs`` {id: (title, text)}, ``queries`` {id: text}, ``qrels`` raw TSV body lines."""
    root.mkdir(parents=True, exist_ok=True)
    docs = docs if docs is not None else {"d1": ("Cats", "Cats purr."), "d2": ("", "Dogs bark."), 3: ("T", "Eels.")}
    queries = queries if queries is not None else {"q1": "do cats purr", 2: "which animal barks"}
    qrels = qrels if qrels is not None else ["q1\td1\t1", "2\td2\t2", "2\t3\t0"]
    (root / "corpus.jsonl").write_text(
        "".join(json.dumps({"_id": k, "title": t, "text": x}) + "\n" for k, (t, x) in docs.items())
    )
    (root / "queries.jsonl").write_text("".join(json.dumps({"_id": k, "text": t}) + "\n" for k, t in queries.items()))
    (root / "qrels").mkdir(exist_ok=True)
    (root / "qrels" / f"{split}.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(r + "\n" for r in qrels))
    return root


def test_reads_folder(tmp_path):
    data = load_beir(make_beir(tmp_path / "toy"), "test")
    assert list(data.corpus) == ["d1", "d2", "3"]  # integer ids become strings
    assert data.corpus["d2"].full_text() == "Dogs bark." and data.corpus["d1"].full_text() == "Cats Cats purr."
    assert data.qrels == {"q1": {"d1": 1}, "2": {"d2": 2, "3": 0}}
    assert list(data.eval_queries) == ["q1", "2"]
    assert qrels_splits(tmp_path / "toy") == ["test"]


def test_check_counts_and_repeated_rows(tmp_path):
    root = make_beir(tmp_path / "toy", qrels=["q1\td1\t1", "q1\td1\t1", "2\td2\t0"])
    counts = check(root)
    assert counts == {
        "docs": 3,
        "queries": 2,
        "test queries": 2,
        "test qrels": 2,
        "test relevant": 1,
        "test repeated rows": 1,
    }


@pytest.mark.parametrize(
    "qrels, line, message",
    [
        (["q1\td1\t1", "q9\td1\t1"], 3, "query-id 'q9' is not in queries.jsonl"),
        (["q1\tnope\t1"], 2, "corpus-id 'nope' is not in corpus.jsonl"),
        (["q1\td1\thigh"], 2, "score must be an integer"),
        (["q1\td1\t0.5"], 2, "score must be an integer"),
        (["q1 d1 1"], 2, "expected 3 tab-separated fields"),
        (["q1\td1\t1", "q1\td1\t2"], 3, "has score 2 here and 1 at line 2"),
    ],
)
def test_bad_qrels_name_file_and_line(tmp_path, qrels, line, message):
    root = make_beir(tmp_path / "toy", qrels=qrels)
    with pytest.raises(DataFormatError) as info:
        load_beir(root, "test")
    assert str(info.value).startswith(f"{root / 'qrels' / 'test.tsv'}:{line}: ") and message in str(info.value)


def test_missing_header(tmp_path):
    root = make_beir(tmp_path / "toy")
    (root / "qrels" / "test.tsv").write_text("q1\td1\t1\n")
    with pytest.raises(DataFormatError, match=r"test\.tsv:1: expected the header line"):
        load_beir(root, "test")


def test_bad_corpus_and_queries(tmp_path):
    root = make_beir(tmp_path / "toy")
    (root / "corpus.jsonl").write_text('{"_id": "d1", "text": "a"}\n{"_id": "d1", "text": "b"}\n')
    with pytest.raises(DataFormatError, match=r"corpus\.jsonl:2: document id 'd1' repeats line 1"):
        load_beir(root, "test")
    (root / "corpus.jsonl").write_text('{"_id": "d1", "text": "a"}\n{"_id": "d2", "title": "x"}\n')
    with pytest.raises(DataFormatError, match=r"corpus\.jsonl:2: missing field\(s\) text"):
        load_beir(root, "test")
    (root / "corpus.jsonl").write_text('{"_id": "d1", "text": "a"}\nnot json\n')
    with pytest.raises(DataFormatError, match=r"corpus\.jsonl:2: expected one JSON object"):
        load_beir(root, "test")
    root = make_beir(tmp_path / "toy2")
    (root / "queries.jsonl").write_text('{"_id": "q1", "text": ""}\n')
    with pytest.raises(DataFormatError, match=r"queries\.jsonl:1: a query needs"):
        load_beir(root, "test")


def test_missing_files_and_split(tmp_path):
    root = make_beir(tmp_path / "toy")
    with pytest.raises(IndusError, match=r"no qrels/dev\.tsv \(splits found: test\)"):
        load_beir(root, "dev")
    (root / "queries.jsonl").unlink()
    with pytest.raises(IndusError, match="no queries.jsonl"):
        load_beir(root, "test")


@pytest.mark.data
def test_scifact_counts(shared_data):
    counts = check(shared_data / "ir" / "scifact")
    assert counts["docs"] == 5183 and counts["test queries"] == 300 and counts["test qrels"] == 339
