from __future__ import annotations

import json

import pytest

from cli_runner import invoke

CTX = (
    "The committee met again and discussed the weather at length. " * 6
    + "Marmots hibernate for seven months. "
    + "Other matters were raised. " * 6
)


@pytest.fixture()
def squad_dir(tmp_path):
    d = tmp_path / "qa"
    d.mkdir()
    start = CTX.index("seven months")
    doc = {
        "data": [
            {
                "paragraphs": [
                    {
                        "context": CTX,
                        "qas": [
                            {
                                "id": "m1",
                                "question": "How long do marmots hibernate?",
                                "answers": [{"text": "seven months", "answer_start": start + 2}],
                            }
                        ],
                    }
                ]
            }
        ]
    }  # off by 2: repaired
    for split in ("train", "test"):
        (d / f"{split}.json").write_text(json.dumps(doc))
    return d


@pytest.fixture()
def beir_dir(tmp_path):
    d = tmp_path / "beir"
    (d / "qrels").mkdir(parents=True)
    (d / "corpus.jsonl").write_text(
        '{"_id": "d1", "title": "Marmots", "text": "Marmots hibernate."}\n'
        '{"_id": "d2", "title": "", "text": "Birds migrate."}\n'
    )
    (d / "queries.jsonl").write_text('{"_id": "q1", "text": "marmot hibernation"}\n')
    (d / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    return d


def test_eval_qa_prints_and_writes_json(monkeypatch, capsys, micro_model_dir, squad_dir, tmp_path):
    out_json, preds = tmp_path / "qa.json", tmp_path / "preds.json"
    code, out, err = invoke(
        monkeypatch,
        capsys,
        "eval",
        "qa",
        "--data",
        squad_dir,
        "--model",
        micro_model_dir,
        "--epochs",
        "1",
        "--max-length",
        "48",
        "--doc-stride",
        "16",
        "--json",
        out_json,
        "--predictions",
        preds,
        "--set",
        "max_question_length=16",
        "--set",
        "progress=false",
        "--set",
        "bf16=true",
        "--window-scoring",
        "span",
    )
    assert code == 0, err
    assert "exact_match" in out and "eval windows" in out
    result = json.loads(out_json.read_text())
    assert result["eval_windows"] > 1 and result["answers_repaired"] == 2 and result["settings"]["doc_stride"] == 16
    assert result["settings"]["bf16"] is True and result["settings"]["window_scoring"] == "span"
    assert set(json.loads(preds.read_text())) == {"m1"}


def test_eval_ir_bm25(monkeypatch, capsys, beir_dir, tmp_path):
    run_file = tmp_path / "run.trec"
    code, out, err = invoke(
        monkeypatch,
        capsys,
        "eval",
        "ir",
        "--data",
        beir_dir,
        "--model",
        "bm25",
        "--run",
        run_file,
        "--json",
        tmp_path / "ir.json",
        "--set",
        "progress=false",
    )
    assert code == 0, err
    assert "ndcg@10" in out and "ms/query" in out
    assert json.loads((tmp_path / "ir.json").read_text())["ndcg@10"] == 1.0
    assert run_file.read_text().split()[:3] == ["q1", "Q0", "d1"]


@pytest.mark.parametrize(
    "args, expected",
    [
        (["eval", "qa", "--data", "{bad_json}", "--model", "random:micro"], "bad.json:2: invalid JSON"),
        (["eval", "qa", "--data", "{squad}", "--model", "random:micro", "--split", "dev"], "no 'dev' split"),
        (["eval", "qa", "--data", "{squad}", "--model", "random:micro", "--max-length", "64"], "doc_stride"),
        (["eval", "qa", "--data", "{squad}", "--model", "random:micro", "--window-scoring", "max"], "window_scoring"),
        (["eval", "ir", "--data", "{beir}", "--model", "bm25", "--split", "dev"], "no qrels/dev.tsv"),
        (["eval", "ir", "--data", "{no_header}", "--model", "bm25"], "test.tsv:1: expected the header line"),
        (["eval", "ir", "--data", "{beir}", "--model", "bm25", "--k", "0"], "k and batch_size must be >= 1"),
        (["eval", "ir", "--data", "{beir}", "--model", "random:micro", "--doc-model", "bm25"], "must be a dense model"),
    ],
)
def test_bad_input_is_one_line_exit_2(monkeypatch, capsys, squad_dir, beir_dir, tmp_path, args, expected):
    bad_json = tmp_path / "bad.json"
    bad_json.write_text('{"data": [\n{]}\n')
    no_header = tmp_path / "nohead"
    (no_header / "qrels").mkdir(parents=True)
    for name in ("corpus.jsonl", "queries.jsonl"):
        (no_header / name).write_text((beir_dir / name).read_text())
    (no_header / "qrels" / "test.tsv").write_text("q1\td1\t1\n")
    args = [a.format(bad_json=bad_json, squad=squad_dir, beir=beir_dir, no_header=no_header) for a in args]
    code, _, err = invoke(monkeypatch, capsys, *args)
    assert code == 2, err
    assert err.startswith("error: ") and err.strip().count("\n") == 0 and expected in err
