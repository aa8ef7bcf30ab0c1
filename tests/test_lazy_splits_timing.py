from __future__ import annotations

import pytest

from indus.data.conll import load_ner_dataset
from indus.data.splits import canonical_split
from indus.errors import IndusError
from indus.lazy import lazy_attr
from indus.timing import latencies_ms


def test_every_reader_shares_the_split_aliases(tmp_path):
    assert [canonical_split(s) for s in ("validation", "VAL", "devel", "training", "testing")] == [
        "dev",
        "dev",
        "dev",
        "train",
        "test",
    ]
    (tmp_path / "train.tsv").write_text("a\tO\n")
    (tmp_path / "val.tsv").write_text("b\tB-X\n")
    ds = load_ner_dataset(tmp_path)
    assert list(ds.splits) == ["train", "dev"]
    assert ds.split("validation") == ds.split("dev") and len(ds.split("dev")) == 1
    with pytest.raises(IndusError, match="no 'test' split"):
        ds.split("test")


def test_lazy_attr_imports_on_use_and_names_unknown_keys():
    registry = {"sqrt": "math:sqrt", "gone": "math:no_such_thing", "nomod": "indus.no_such_module:x"}
    assert lazy_attr(registry, "sqrt")(16) == 4
    with pytest.raises(IndusError, match=r"here: unknown widget 'cube'; known: sqrt, gone, nomod"):
        lazy_attr(registry, "cube", what="widget", where="here")
    for key in ("gone", "nomod"):
        with pytest.raises(IndusError, match="not available in this version"):
            lazy_attr(registry, key)


def test_latencies_skip_the_warmup_calls():
    seen = []
    times = latencies_ms(seen.append, [1, 2, 3], warmup=[0])
    assert seen == [0, 1, 2, 3] and len(times) == 3 and min(times) >= 0
