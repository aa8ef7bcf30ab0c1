from __future__ import annotations

import gzip
import json

import pytest

from indus.data.classification import check, load_classification_dataset, read_classification
from indus.errors import DataFormatError, IndusError


def write_jsonl(path, rows):
    text = "".join(json.dumps(r) + "\n" for r in rows)
    if path.suffix == ".gz":
        with gzip.open(path, "wt", encoding="utf-8") as fh:
            fh.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def test_folder_with_alias_gzip_and_extra_fields(tmp_path):
    write_jsonl(
        tmp_path / "train.jsonl",
        [{"text": "a b c", "label": "pos", "metadata": {"x": 1}}, {"text": "d", "label": "neg"}],
    )
    write_jsonl(tmp_path / "devel.jsonl.gz", [{"text": "e f", "label": 1}])
    write_jsonl(tmp_path / "test.jsonl", [{"text": "g", "label": "neg"}, {"text": "h", "label": "other"}])
    ds = load_classification_dataset(tmp_path)
    assert list(ds.splits) == ["train", "dev", "test"]
    assert ds.labels == ["1", "neg", "other", "pos"]
    assert ds.splits["train"][0].text == "a b c" and ds.splits["dev"][0].label == "1"
    result = check(tmp_path)
    assert result["splits"]["train"] == {
        "file": "train.jsonl",
        "examples": 2,
        "labels": 2,
        "mean_words": 2.0,
        "max_words": 3,
        "unseen_labels": 0,
    }
    assert result["splits"]["test"]["unseen_labels"] == 1
    assert result["labels"] == {"1": 1, "neg": 2, "other": 1, "pos": 1}


@pytest.mark.parametrize(
    "line, expected",
    [
        ('{"text": "a"}', "missing field(s) label"),
        ('{"text": "", "label": "x"}', "'text' must be a non-empty string"),
        ('{"text": "a", "label": ["x", "y"]}', "'label' must be one class name"),
        ('{"text": "a", "label": true}', "'label' must be one class name"),
        ('{"text": "a", "label": "x"', "expected one JSON object per line"),
    ],
)
def test_malformed_lines(tmp_path, line, expected):
    path = tmp_path / "train.jsonl"
    path.write_text('{"text": "ok", "label": "x"}\n' + line + "\n")
    with pytest.raises(DataFormatError) as err:
        read_classification(path)
    assert f"{path}:2:" in str(err.value) and expected in str(err.value)


def test_empty_and_missing(tmp_path):
    (tmp_path / "train.jsonl").write_text("\n")
    with pytest.raises(DataFormatError, match="no examples"):
        read_classification(tmp_path / "train.jsonl")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(IndusError, match="no classification split files"):
        load_classification_dataset(empty)
