from __future__ import annotations

import gzip
import json

import pytest

from indus.data.corpus import iter_texts
from indus.data.pairs import read_pairs
from indus.errors import DataFormatError, IndusError


def test_pairs_folder_sources_and_negative(tmp_path):
    (tmp_path / "a.jsonl").write_text(json.dumps({"anchor": "q", "positive": "p"}) + "\n")
    with gzip.open(tmp_path / "b.jsonl.gz", "wt") as fh:
        fh.write(json.dumps({"anchor": "q2", "positive": "p2", "source": "s", "negative": "n"}) + "\n")
    pairs = read_pairs(tmp_path)
    assert [(p.source, p.negative) for p in pairs] == [("a", None), ("s", "n")]


def test_pairs_missing_field_names_line(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"anchor": "a", "positive": "b"}\n{"anchor": "a"}\n')
    with pytest.raises(DataFormatError, match=r"p\.jsonl:2: missing field\(s\) positive"):
        read_pairs(path)


def test_pairs_empty_text_is_refused(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"anchor": " ", "positive": "b"}\n')
    with pytest.raises(DataFormatError, match="non-empty"):
        read_pairs(path)


def test_corpus_jsonl_and_text(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"text": "doc one"}\n{"text": "doc two"}\n')
    (tmp_path / "b.txt").write_text("line a\n\nline b\n")
    assert list(iter_texts(tmp_path)) == ["doc one", "doc two", "line a", "line b"]
    assert list(iter_texts(tmp_path, limit=3)) == ["doc one", "doc two", "line a"]
    with pytest.raises(IndusError, match="no such file"):
        list(iter_texts(tmp_path / "nope.txt"))


def test_shared_pairs_and_corpus_read(shared_data):
    pairs = read_pairs(shared_data / "pairs" / "scitldr.jsonl.gz", limit=5)
    assert len(pairs) == 5 and pairs[0].source
    assert len(list(iter_texts(shared_data / "corpus" / "valid.jsonl.gz", limit=3))) == 3
