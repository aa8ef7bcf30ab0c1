from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from seqeval.metrics.sequence_labeling import get_entities

from indus.data.conll import (
    check,
    detect_scheme,
    label_list,
    load_ner_dataset,
    read_conll,
    read_conll_file,
    scheme_violations,
    to_iob2,
    write_conll,
)
from indus.errors import DataFormatError, IndusError

IOB2_TSV = "Selegiline\tB-Chemical\n-\tO\ninduced\tO\npostural\tB-Disease\nhypotension\tI-Disease\n\nA\tO\nb\tO\n"
# SciERC dialect: space separated, dummy POS column, -DOCSTART-, IOB1 (B- only between adjacent same-type entities)
SCIIE_TXT = (
    "-DOCSTART- NN O O\n\n"
    "English NN O I-Material\nis NN O O\nshown NN O O\n\n"
    "word NN O I-Method\nsense NN O I-Method\nlexicon NN O B-Method\n.\tNN\tO\tO\n"
)


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_iob2_tab_file(tmp_path):
    path = write(tmp_path, "train.tsv", IOB2_TSV)
    f = read_conll_file(path)
    assert f.scheme == "IOB2" and f.repaired == 0 and f.columns == 2
    assert [len(s) for s in f.sentences] == [5, 2]
    assert f.sentences[0].tags == ("B-Chemical", "O", "O", "B-Disease", "I-Disease")
    assert f.sentences[1].line == 7


def test_sciie_dialect_is_iob1_and_converted(tmp_path):
    path = write(tmp_path, "train.txt", SCIIE_TXT)
    f = read_conll_file(path)
    assert f.scheme == "IOB1" and f.columns == 4
    assert [s.tokens[0] for s in f.sentences] == ["English", "word"]  # -DOCSTART- skipped
    assert f.sentences[0].tags == ("B-Material", "O", "O")
    assert f.sentences[1].tags == ("B-Method", "I-Method", "B-Method", "O")
    assert read_conll(path, scheme="IOB1") == f.sentences  # valid strict IOB1 too


def test_bioes_and_bilou(tmp_path):
    bioes = write(tmp_path, "a.conll", "a S-G\nb B-G\nc I-G\nd E-G\ne O\n")
    f = read_conll_file(bioes)
    assert f.scheme == "BIOES"
    assert f.sentences[0].tags == ("B-G", "B-G", "I-G", "I-G", "O")
    bilou = write(tmp_path, "b.iob", "a U-G\nb B-G\nc L-G\n")
    assert read_conll_file(bilou).scheme == "BILOU"
    assert read_conll(bilou)[0].tags == ("B-G", "B-G", "I-G")
    assert read_conll(bioes, scheme="IOBES") == f.sentences


def test_mixed_bioes_bilou_is_an_error(tmp_path):
    with pytest.raises(DataFormatError, match="mix BIOES"):
        read_conll(write(tmp_path, "x.conll", "a S-G\nb U-G\n"))


def test_iob2_violation_repaired_in_auto_rejected_when_declared(tmp_path):
    text = "a\tB-X\nb\tO\nc\tB-X\n\nd\tO\ne\tI-X\nf\tI-X\n"  # line 6: I- after O
    path = write(tmp_path, "test.tsv", text)
    f = read_conll_file(path)
    assert f.scheme == "IOB2" and f.repaired == 1  # two B- starts outnumber one I- start
    assert f.sentences[1].tags == ("O", "B-X", "I-X")  # conlleval's reading
    with pytest.raises(DataFormatError) as err:
        read_conll(path, scheme="IOB2")
    assert f"{path}:6:" in str(err.value) and "B-X" in str(err.value)


def test_declared_bioes_violation_names_line(tmp_path):
    path = write(tmp_path, "dev.tsv", "a\tB-G\nb\tO\n")
    with pytest.raises(DataFormatError, match=r"dev\.tsv:1: 'B-G' must be followed by I-G or E-G"):
        read_conll(path, scheme="BIOES")
    assert read_conll_file(path, scheme="auto").scheme == "IOB2"


def test_unknown_scheme(tmp_path):
    with pytest.raises(IndusError, match="unknown tag scheme"):
        read_conll(write(tmp_path, "a.tsv", "a\tO\n"), scheme="IOE2")


@pytest.mark.parametrize(
    "text, line, expected",
    [
        ("a\tO\nb\n", 2, "found one column"),
        ("a\tO\nb\tX-Foo\n", 2, "found 'X-Foo'"),
        ("a NN O\nb O\n", 2, "expected 3 columns like line 1, found 2"),
        ("a\tO\nb\tB-\n", 2, "found 'B-'"),
        ("a\tO\nb\to\n", 2, "found 'o'"),
    ],
)
def test_malformed_lines_name_file_and_line(tmp_path, text, line, expected):
    path = write(tmp_path, "train.tsv", text)
    with pytest.raises(DataFormatError) as err:
        read_conll(path)
    assert err.value.line == line and expected in str(err.value) and str(path) in str(err.value)


def test_empty_and_binary_files(tmp_path):
    with pytest.raises(DataFormatError, match="no sentences"):
        read_conll(write(tmp_path, "e.tsv", "\n-DOCSTART- O\n\n"))
    bad = tmp_path / "b.tsv"
    bad.write_bytes(b"a\tO\n\xff\xfe\tO\n")
    with pytest.raises(DataFormatError, match=r"b\.tsv:2: expected UTF-8"):
        read_conll(bad)
    with pytest.raises(IndusError, match="file not found"):
        read_conll(tmp_path / "missing.tsv")


def test_dataset_folder_devel_alias_and_labels(tmp_path):
    write(tmp_path, "train.tsv", IOB2_TSV)
    write(tmp_path, "devel.tsv", "x\tB-Gene\n")
    write(tmp_path, "test.tsv", "y\tO\n")
    write(tmp_path, "notes.md", "ignored")
    ds = load_ner_dataset(tmp_path)
    assert list(ds.splits) == ["train", "dev", "test"]
    assert ds.labels == ["O", "B-Chemical", "I-Chemical", "B-Disease", "I-Disease", "B-Gene", "I-Gene"]
    assert ds.entity_types == ["Chemical", "Disease", "Gene"]
    assert ds.split("valid") == ds.split("dev")  # one alias table (indus.data.splits) for every reader
    with pytest.raises(IndusError, match="no 'heldout' split"):
        ds.split("heldout")
    write(tmp_path, "dev.tsv", "z\tO\n")
    with pytest.raises(IndusError, match="two files for the dev split"):
        load_ner_dataset(tmp_path)


def test_dataset_scheme_detected_over_all_splits(tmp_path):
    # The test split alone looks like IOB2 (no I- starts); together with train it is IOB1.
    write(tmp_path, "train.txt", "a I-X\nb I-X\n\nc I-Y\n")
    write(tmp_path, "test.txt", "d I-X\ne B-X\n")
    ds = load_ner_dataset(tmp_path)
    assert ds.scheme == "IOB1" and ds.repaired == {"train": 0, "test": 0}
    assert ds.splits["test"][0].tags == ("B-X", "B-X")


def test_empty_folder(tmp_path):
    with pytest.raises(IndusError, match="no NER split files"):
        load_ner_dataset(tmp_path)


def test_check_counts(tmp_path):
    write(tmp_path, "train.tsv", IOB2_TSV)
    write(tmp_path, "test.tsv", "a\tB-Chemical\nb\tI-Chemical\nc\tB-Chemical\n")
    result = check(tmp_path)
    assert result["scheme"] == "IOB2"
    assert result["splits"]["train"] == {
        "file": "train.tsv",
        "sentences": 2,
        "tokens": 7,
        "entities": 2,
        "types": 2,
        "max_tokens": 5,
        "repaired": 0,
    }
    assert result["splits"]["test"]["entities"] == 2
    assert result["entity_types"] == {"Chemical": 3, "Disease": 1}
    single = check(tmp_path / "test.tsv")
    assert list(single["splits"]) == ["test"]


def test_write_conll_round_trip(tmp_path):
    sentences = read_conll(write(tmp_path, "a.tsv", IOB2_TSV))
    out = write_conll(tmp_path / "pred.conll", ((s.tokens, s.tags, s.tags) for s in sentences))
    again = read_conll(out)
    assert [(s.tokens, s.tags) for s in again] == [(s.tokens, s.tags) for s in sentences]
    assert out.read_text().splitlines()[0] == "Selegiline B-Chemical B-Chemical"


def test_label_list_and_violations():
    assert label_list(["b", "a", "a"]) == ["O", "B-a", "I-a", "B-b", "I-b"]
    assert scheme_violations(["B-X", "I-X", "O"], "IOB2") == []
    assert [i for i, _ in scheme_violations(["O", "I-X", "I-Y"], "IOB2")] == [1, 2]
    assert [i for i, _ in scheme_violations(["B-X", "E-X", "S-X", "I-X"], "BIOES")] == [3]


# ------------------------------------------------------------------- property: every scheme round-trips to IOB2


@st.composite
def spans(draw):
    """A sentence length and non-overlapping typed spans (start, end inclusive)."""
    n = draw(st.integers(1, 12))
    out, i = [], 0
    while i < n:
        if draw(st.booleans()):
            length = draw(st.integers(1, min(3, n - i)))
            out.append((draw(st.sampled_from("XY")), i, i + length - 1))
            i += length
        else:
            i += draw(st.integers(1, 2))
    return min(n, max([e for _, _, e in out], default=0) + 1 + draw(st.integers(0, 2))), out


def encode(n, entities, scheme):
    tags = ["O"] * n
    prev_end: dict[str, int] = {}
    for typ, s, e in entities:
        for i in range(s, e + 1):
            if scheme == "IOB2":
                tags[i] = ("B-" if i == s else "I-") + typ
            elif scheme == "IOB1":
                adjacent = prev_end.get(typ) == s - 1 and s > 0 and tags[s - 1].endswith(typ)
                tags[i] = ("B-" if i == s and adjacent else "I-") + typ
            else:
                b, i_, e_, s_ = ("B", "I", "E", "S") if scheme == "BIOES" else ("B", "I", "L", "U")
                prefix = s_ if s == e else b if i == s else e_ if i == e else i_
                tags[i] = f"{prefix}-{typ}"
        prev_end[typ] = e
    return tags


@settings(max_examples=200, deadline=None)
@given(spans(), st.sampled_from(["IOB1", "IOB2", "BIOES", "BILOU"]))
def test_every_scheme_converts_to_the_same_iob2_entities(sample, scheme):
    n, entities = sample
    tags = encode(n, entities, scheme)
    assert scheme_violations(tags, scheme) == []
    converted = to_iob2(tags)
    assert scheme_violations(converted, "IOB2") == []
    assert sorted(get_entities(converted)) == sorted(entities)
    assert converted == encode(n, entities, "IOB2")
    if entities and scheme != "IOB2":
        assert detect_scheme([tags]) == scheme
    elif scheme == "IOB2":
        assert detect_scheme([tags]) == "IOB2"


# ------------------------------------------------------------------- the shared data: counts in its README


@pytest.mark.data
@pytest.mark.parametrize(
    "name, split, sentences, tokens, entities, scheme",
    [
        ("bc5cdr", "train", 4560, 118170, 9385, "IOB2"),
        ("bc5cdr", "test", 4797, 124750, 9809, "IOB2"),
        ("sciie", "train", 1861, 45412, 5572, "IOB1"),
        ("sciie", "test", 551, 13401, 1683, "IOB1"),
    ],
)
def test_shared_ner_counts(shared_data, name, split, sentences, tokens, entities, scheme):
    result = check(shared_data / "ner" / name)
    assert result["scheme"] == scheme
    counts = result["splits"][split]
    assert (counts["sentences"], counts["tokens"], counts["entities"], counts["repaired"]) == (
        sentences,
        tokens,
        entities,
        0,
    )
