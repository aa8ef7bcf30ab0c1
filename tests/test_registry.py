from __future__ import annotations

import pytest

from indus.data.registry import count, discover, resolve_dataset
from indus.errors import IndusError


def _layout(root):
    (root / "ner" / "toy").mkdir(parents=True)
    (root / "ner" / "toy" / "train.tsv").write_text("-DOCSTART-\tO\n\na\tO\n\nb\tO\nc\tO\n")
    (root / "ir" / "toy").mkdir(parents=True)
    (root / "pairs").mkdir()
    (root / "pairs" / "p.jsonl").write_text('{"anchor": "a", "positive": "b"}\n')
    return root


def test_discover_and_resolve(tmp_path):
    root = _layout(tmp_path)
    names = {(e.kind, e.name) for e in discover(root)}
    assert names == {("ner", "toy"), ("ir", "toy"), ("pairs", "pairs")}
    assert resolve_dataset("toy", kind="ner", root=root) == root / "ner" / "toy"
    assert resolve_dataset("pairs/p.jsonl", root=root) == root / "pairs" / "p.jsonl"
    ner = next(e for e in discover(root) if e.kind == "ner")
    assert count(ner) == {"train sent": 2}


def test_ambiguous_and_unknown_names(tmp_path):
    root = _layout(tmp_path)
    with pytest.raises(IndusError, match="ambiguous"):
        resolve_dataset("toy", root=root)
    with pytest.raises(IndusError, match="unknown ner dataset"):
        resolve_dataset("nope", kind="ner", root=root)


def test_no_root_says_how_to_set_one(monkeypatch):
    monkeypatch.delenv("INDUS_DATA", raising=False)
    with pytest.raises(IndusError, match="INDUS_DATA"):
        resolve_dataset("bc5cdr")


def test_shared_data_names(shared_data):
    names = {e.name for e in discover(shared_data)}
    assert {"bc5cdr", "scifact", "covid-qa", "corpus", "pairs", "sciie"} <= names
