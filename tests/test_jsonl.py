from __future__ import annotations

import gzip

import pytest

from indus.data.jsonl import iter_jsonl
from indus.errors import DataFormatError


def test_reads_plain_and_gzip(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"x": 1}\n\n{"x": 2}\n')
    with gzip.open(tmp_path / "b.jsonl.gz", "wt") as fh:
        fh.write('{"x": 3}\n')
    assert [o["x"] for _, o in iter_jsonl(tmp_path / "a.jsonl", ("x",))] == [1, 2]
    assert [n for n, _ in iter_jsonl(tmp_path / "a.jsonl")] == [1, 3]
    assert [o["x"] for _, o in iter_jsonl(tmp_path / "b.jsonl.gz")] == [3]


@pytest.mark.parametrize(
    "content, line, words",
    [
        ('{"x": 1}\n{"x": \n', 2, "JSON object per line"),
        ('{"x": 1}\n[1, 2]\n', 2, "found list"),
        ('{"x": 1}\n{"y": 1}\n', 2, "missing field"),
    ],
)
def test_errors_name_file_and_line(tmp_path, content, line, words):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(DataFormatError, match=words) as info:
        list(iter_jsonl(path, ("x",)))
    assert info.value.line == line and f"bad.jsonl:{line}" in str(info.value)


def test_corrupt_gzip(tmp_path):
    path = tmp_path / "c.jsonl.gz"
    path.write_bytes(b"not gzip at all")
    with pytest.raises(DataFormatError, match="gzip stream is corrupt"):
        list(iter_jsonl(path))
