from __future__ import annotations

import json

import pytest

from indus.data.squad import check, load_squad_split, locate_answer, read_squad, squad_splits
from indus.errors import DataFormatError, IndusError

CTX = "Aspirin inhibits cyclooxygenase. It was first made in 1897 by Felix Hoffmann."


def _write(path, data, version=None):
    doc = {"data": data} if version is None else {"version": version, "data": data}
    path.write_text(json.dumps(doc, indent=1))
    return path


def _qa(qid, question, text=None, start=None, impossible=None):
    qa = {"id": qid, "question": question, "answers": [] if text is None else [{"text": text, "answer_start": start}]}
    if impossible is not None:
        qa["is_impossible"] = impossible
    return qa


def test_v1_exact_and_repaired_offsets(tmp_path):
    true = CTX.index("1897")
    path = _write(
        tmp_path / "a.json",
        [
            {
                "title": "t",
                "paragraphs": [
                    {
                        "context": CTX,
                        "qas": [
                            _qa("q1", "What does aspirin inhibit?", "cyclooxygenase", CTX.index("cyclooxygenase")),
                            _qa("q2", "When was it made?", "1897", true + 1),  # stored one too far: shift -1
                            _qa(3, "Who made it?", "Felix Hoffmann", CTX.index("Felix") - 3),  # integer id; shift +3
                        ],
                    }
                ],
            }
        ],
        version="1.1",
    )
    squad = read_squad(path)
    assert squad.version == "1.1" and len(squad) == 3 and not squad.has_unanswerable
    assert [ex.id for ex in squad] == ["q1", "q2", "3"]
    assert squad.examples[1].answers[0].start == true
    assert squad.examples[2].answers[0].start == CTX.index("Felix")
    report = squad.repairs
    assert (report.exact, report.repaired, report.unlocated) == (1, 2, 0)
    assert dict(report.shifts) == {-1: 1, 3: 1}


def test_unlocated_answer_kept_for_scoring_or_strict_error(tmp_path):
    path = _write(tmp_path / "a.json", [{"paragraphs": [{"context": CTX, "qas": [_qa("q1", "Who?", "Bayer", 5)]}]}])
    squad = read_squad(path)
    ans = squad.examples[0].answers[0]
    assert ans.text == "Bayer" and ans.start is None and squad.repairs.unlocated == 1
    assert squad.examples[0].located_answers == () and not squad.examples[0].is_impossible
    where = r"data\[0\]\.paragraphs\[0\]\.qas\[0\]\.answers\[0\] \(id q1\)"
    with pytest.raises(DataFormatError, match=r"a\.json:\d+: " + where):
        read_squad(path, strict=True)


def test_locate_answer_prefers_nearest_and_respects_window():
    ctx = "x " * 100 + "cat " + "y " * 10 + "cat"
    first, second = ctx.index("cat"), ctx.rindex("cat")
    assert locate_answer(ctx, "cat", first + 2) == first
    assert locate_answer(ctx, "cat", second - 1) == second
    assert locate_answer(ctx, "cat", 0, window=50) is None  # 200 characters away


def test_v2_unanswerable(tmp_path):
    path = _write(
        tmp_path / "v2.json",
        [
            {
                "paragraphs": [
                    {
                        "context": CTX,
                        "qas": [
                            _qa(
                                "a",
                                "What does aspirin inhibit?",
                                "cyclooxygenase",
                                CTX.index("cyclooxygenase"),
                                impossible=False,
                            ),
                            {
                                **_qa("b", "Who sold it?", impossible=True),
                                "plausible_answers": [{"text": "Felix", "answer_start": 61}],
                            },
                            _qa("c", "Where?"),  # empty answers: unanswerable even without is_impossible
                        ],
                    }
                ]
            }
        ],
        version="v2.0",
    )
    squad = read_squad(path)
    assert [ex.is_impossible for ex in squad] == [False, True, True] and squad.has_unanswerable
    assert squad.counts()["unanswerable"] == 2


def _article(doc_id, n_questions, tag):
    ctx = f"Article {tag} talks about topic {tag} at length."
    return {
        "paragraphs": [
            {
                "document_id": doc_id,
                "context": ctx,
                "qas": [
                    _qa(f"{tag}-{i}", f"What is {tag}?", f"topic {tag}", ctx.index("topic")) for i in range(n_questions)
                ],
            }
        ]
    }


def test_single_file_split_rule_sorts_by_integer_document_id(tmp_path):
    # 10 articles in shuffled file order; ids sort as integers (100 > 20 > 3), not as strings.
    ids = [100, 3, 20, 7, 55, 9, 41, 12, 88, 64]
    path = _write(tmp_path / "one.json", [_article(d, 1 + (d % 3), f"d{d}") for d in ids])
    splits = squad_splits(path)
    order = sorted(ids)
    expect = {"train": order[:8], "dev": order[8:9], "test": order[9:]}
    for name, docs in expect.items():
        tags = {ex.id.split("-")[0] for ex in splits[name]}
        assert tags == {f"d{d}" for d in docs}, name
        assert splits[name].articles == len(docs)
    contexts = [{ex.context for ex in s} for s in splits.values()]
    assert not (contexts[0] & contexts[1] or contexts[0] & contexts[2] or contexts[1] & contexts[2])
    assert sum(len(s) for s in splits.values()) == sum(1 + (d % 3) for d in ids)
    # a folder holding just that file gives the same split
    assert {k: len(v) for k, v in squad_splits(tmp_path).items()} == {k: len(v) for k, v in splits.items()}


def test_explicit_split_files_take_precedence(tmp_path):
    _write(tmp_path / "train-v1.1.json", [_article(1, 2, "a"), _article(2, 1, "b")])
    _write(tmp_path / "dev-v1.1.json", [_article(3, 1, "c")])
    splits = squad_splits(tmp_path)
    assert {k: len(v) for k, v in splits.items()} == {"train": 3, "dev": 1}
    with pytest.raises(IndusError, match="no 'test' split"):
        load_squad_split(tmp_path, "test")
    assert len(load_squad_split(tmp_path, "validation")) == 1


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d["data"][0]["paragraphs"][0]["qas"][0].update(answers=[{"text": "x"}]), "answer_start"),
        (lambda d: d["data"][0]["paragraphs"][0]["qas"][0].pop("question"), "question"),
        (lambda d: d["data"][0]["paragraphs"][0].pop("context"), '"context"'),
        (
            lambda d: d["data"][0]["paragraphs"][0]["qas"].append(dict(d["data"][0]["paragraphs"][0]["qas"][0])),
            "repeats",
        ),
        (lambda d: d["data"][0]["paragraphs"][0]["qas"][0].update(is_impossible=True), "is_impossible"),
        (lambda d: d.update(data={}), '"data" list'),
    ],
)
def test_malformed_files_name_file_and_question(tmp_path, mutate, message):
    doc = {"data": [{"paragraphs": [{"context": CTX, "qas": [_qa("q7", "Q?", "Aspirin", 0)]}]}]}
    mutate(doc)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc, indent=1))
    with pytest.raises(DataFormatError) as info:
        read_squad(path)
    text = str(info.value)
    assert text.startswith(str(path)) and message in text


def test_error_gives_line_of_question_id(tmp_path):
    doc = {
        "data": [
            {
                "paragraphs": [
                    {
                        "context": CTX,
                        "qas": [
                            _qa("ok", "Q?", "Aspirin", 0),
                            {"id": "bad-one", "question": "Q?", "answers": [{"text": "x"}]},
                        ],
                    }
                ]
            }
        ]
    }
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc, indent=1))
    line = next(i for i, t in enumerate(path.read_text().splitlines(), 1) if '"bad-one"' in t)
    where = r"data\[0\]\.paragraphs\[0\]\.qas\[1\]\.answers\[0\] \(id bad-one\)"
    with pytest.raises(DataFormatError, match=rf"bad\.json:{line}: " + where):
        read_squad(path)


def test_invalid_json_reports_line(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"data": [\n{"paragraphs": [\n}\n')
    with pytest.raises(DataFormatError, match=r"broken\.json:3: invalid JSON"):
        read_squad(path)


def test_check_counts(tmp_path):
    _write(tmp_path / "train.json", [_article(1, 2, "a")])
    _write(tmp_path / "test.json", [_article(2, 3, "b")])
    counts = check(tmp_path)
    assert counts["questions"] == 5 and counts["train questions"] == 2 and counts["test questions"] == 3
    assert counts["answers exact"] == 5 and counts["answers repaired"] == 0


@pytest.mark.data
def test_covid_qa_split_and_repairs(shared_data):
    path = shared_data / "qa" / "covid-qa"
    splits = squad_splits(path)
    assert {k: len(v) for k, v in splits.items()} == {"train": 1041, "dev": 90, "test": 249}
    assert {k: v.articles for k, v in splits.items()} == {"train": 78, "dev": 10, "test": 10}
    counts = check(path)
    assert counts["answers repaired"] == 234 and counts["answers unlocated"] == 0
    assert (counts["repaired shift -1"], counts["repaired shift +2"], counts["repaired shift +3"]) == (196, 10, 28)
    for ex in splits["test"]:
        for ans in ex.answers:
            assert ex.context[ans.start : ans.end] == ans.text


def test_integer_id_error_line(tmp_path):
    doc = {
        "data": [
            {
                "paragraphs": [
                    {
                        "context": CTX,
                        "qas": [
                            {"id": 26, "question": "Q?", "answers": [{"text": "Aspirin", "answer_start": 0}]},
                            {"id": 262, "question": "", "answers": []},
                        ],
                    }
                ]
            }
        ]
    }
    path = tmp_path / "ints.json"
    path.write_text(json.dumps(doc, indent=1))
    line = next(i for i, t in enumerate(path.read_text().splitlines(), 1) if '"id": 262' in t)
    with pytest.raises(DataFormatError, match=rf"ints\.json:{line}: data\[0\]\.paragraphs\[0\]\.qas\[1\] \(id 262\)"):
        read_squad(path)
