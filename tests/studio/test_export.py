"""``indus studio export``: SQuAD v2 + BEIR that pass ``indus data check`` and that ``indus eval ir`` scores."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from indus.cli import app
from indus.data import beir, squad
from indus.errors import IndusError
from indus.studio.db import Store
from indus.studio.export import combined_grade, export

runner = CliRunner()


def _annotate(studio):
    """Three questions (one with a non-ASCII answer), an unanswerable one, a skipped passage, two judges."""
    ids = []
    for annotator, pid, answer in [("ana", "d4", "0.4 W/m2"), ("ana", "d5", "sea ice"), ("bob", "d8", "glaciers")]:
        text = studio.passage(pid).text
        ids.append(
            studio.annotate(annotator, pid, "question", f"What about {answer}?", text.index(answer), answer)["query_id"]
        )
    studio.annotate("bob", "d2", "unanswerable", "Who discovered halos?")
    studio.annotate("bob", "d3", "no_question")
    for who, grade in (("ana", 2), ("bob", 1)):
        pool = studio.pool(ids[0])
        studio.judge(who, ids[0], {p.doc_id: (grade if i == 0 else 0) for i, p in enumerate(pool)})
    return ids, studio.pool(ids[0])


def test_combined_grade_is_the_mean_rounded_half_up():
    assert [combined_grade(g) for g in ([2], [1], [0], [2, 1], [1, 0], [2, 0], [2, 1, 1], [2, 2, 1], [0, 0])] == [
        2,
        1,
        0,
        2,
        1,
        1,
        1,
        2,
        0,
    ]


def test_export_writes_squad_v2_and_graded_beir(studio, tmp_path):
    ids, pool = _annotate(studio)
    out = tmp_path / "bench"
    summary = export(studio.store, out, progress=False)
    assert summary["questions"] == 3 and summary["unanswerable"] == 1 and summary["no_question"] == 1
    # QA: exact offsets, the unanswerable question, no entry for "no good question"
    data = json.loads((out / "qa.json").read_text())
    qas = {qa["id"]: (p["context"], qa) for a in data["data"] for p in a["paragraphs"] for qa in p["qas"]}
    assert len(qas) == 4
    for context, qa in qas.values():
        if qa["is_impossible"]:
            assert qa["answers"] == [] and qa["question"] == "Who discovered halos?"
        else:
            ans = qa["answers"][0]
            assert context[ans["answer_start"] : ans["answer_start"] + len(ans["text"])] == ans["text"]
    counts = squad.check(out / "qa.json")
    assert counts["questions"] == 4 and counts["unanswerable"] == 1 and counts["answers exact"] == 3
    # IR: the written question's passage is 2; the doubly judged first pool document is mean(2, 1) -> 2
    counts = beir.check(out / "ir")
    qrels = beir.load_beir(out / "ir", split="test").qrels
    assert set(qrels) == set(ids)
    assert qrels[ids[1]] == {"d5": 2} and qrels[ids[2]] == {"d8": 2}
    first = pool[0].doc_id
    assert qrels[ids[0]]["d4"] == 2 and qrels[ids[0]][first] == 2
    assert all(qrels[ids[0]][p.doc_id] == 0 for p in pool[1:] if p.doc_id != "d4")
    corpus = [json.loads(line)["_id"] for line in (out / "ir" / "corpus.jsonl").read_text().splitlines()]
    assert sorted(corpus) == [f"d{i}" for i in range(1, 9)]  # the index's whole collection
    report = (out / "report.md").read_text()
    assert "Cohen's kappa" in report and "| ana |" in report and "| bob |" in report
    assert "Judged fraction of each system's top 10" in report and "| bm25 |" in report


def test_exported_benchmark_passes_data_check_and_eval_ir(studio, tmp_path):
    _annotate(studio)
    out = tmp_path / "bench"
    result = runner.invoke(app, ["studio", "export", "--db", str(studio.store.engine.url), "--out", str(out)])
    assert result.exit_code == 0, result.output
    for path in (out / "qa.json", out / "ir"):
        check = runner.invoke(app, ["data", "check", str(path)])
        assert check.exit_code == 0, check.output
    scores = tmp_path / "ir.json"
    ir = runner.invoke(app, ["eval", "ir", "--model", "bm25", "--data", str(out / "ir"), "--json", str(scores)])
    assert ir.exit_code == 0, ir.output
    result = json.loads(scores.read_text())
    assert result["queries"] == 3 and 0.0 < result["ndcg@10"] <= 1.0
    again = runner.invoke(app, ["studio", "export", "--db", str(studio.store.engine.url), "--out", str(out)])
    assert again.exit_code != 0 and "not empty" in str(again.exception or again.output)


def test_export_refuses_a_database_that_is_not_a_studio(tmp_path):
    with pytest.raises(IndusError, match="not an indus studio database"):
        Store.open(tmp_path / "none.db", create=False)
