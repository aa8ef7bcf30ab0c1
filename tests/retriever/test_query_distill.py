"""Query-encoder distillation: the loss reads only the anchors, training pulls the student's queries onto the
teacher's, and index, search and eval pair the student with its teacher's document vectors."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch

from indus.errors import IndusError
from indus.evaluation.ir import IREvaluator
from indus.retriever.bi_encoder import encode, load_bi_encoder
from indus.retriever.distill import RetrieverDistillConfig, distill_retriever
from indus.retriever.index import build_index, load_index
from indus.retriever.losses import QueryDistillLoss


def _features(model, columns):
    return [model.preprocess(texts) for texts in columns]


def _teacher_labels(model, columns):
    return torch.from_numpy(np.concatenate([encode(model, texts) for texts in columns], axis=1))  # (B, C * D)


COLUMNS = [
    ["what heats the ocean?", "why does sea ice melt?", "what drives solar wind?"],
    ["ocean heat content rises", "sea ice melts in summer", "the solar wind streams from the corona"],
    ["comet dust trails", "soil carbon stocks", "protein folding rates"],
]


def test_the_student_encodes_only_the_anchors(micro_model_dir):
    student = load_bi_encoder(f"layers:1@{micro_model_dir}", device="cpu")
    calls = []
    student.register_forward_hook(lambda _m, inputs, _out: calls.append(inputs[0]["input_ids"].shape))
    labels = _teacher_labels(load_bi_encoder(str(micro_model_dir), device="cpu"), COLUMNS)
    loss = QueryDistillLoss(student)(_features(student, COLUMNS), labels)
    assert len(calls) == 1 and calls[0][0] == 3  # one pass, over the anchor column
    loss.backward()
    assert torch.isfinite(loss) and loss > 0


def test_a_student_equal_to_its_teacher_has_nothing_to_learn(micro_model_dir):
    teacher = load_bi_encoder(str(micro_model_dir), device="cpu").eval()
    labels = _teacher_labels(teacher, COLUMNS)
    weights = {"kd_weight": 0.0, "contrastive_weight": 0.0, "embedding_weight": 1.0}
    aligned = QueryDistillLoss(teacher, **weights)
    assert float(aligned(_features(teacher, COLUMNS), labels).detach()) == pytest.approx(0.0, abs=1e-5)
    other = load_bi_encoder("random:micro", device="cpu", seed=1).eval()  # same shape, other weights
    assert float(QueryDistillLoss(other, **weights)(_features(other, COLUMNS), labels).detach()) > 0.1


def test_labels_of_the_wrong_width_are_refused(micro_model_dir):
    student = load_bi_encoder(f"layers:1@{micro_model_dir}", device="cpu")
    with pytest.raises(ValueError, match="as wide as the teacher"):
        QueryDistillLoss(student)(_features(student, COLUMNS), torch.zeros(3, 3 * 16))


def _mean_cos(student, teacher, texts):
    return float((encode(student, texts) * encode(teacher, texts)).sum(axis=1).mean())


@pytest.fixture
def query_student(micro_model_dir, pairs_dir, tmp_path):
    """A query encoder distilled from the micro teacher into a micro student of other random weights (40 steps),
    and its summary."""
    cfg = RetrieverDistillConfig(
        teacher=str(micro_model_dir),
        student="random:micro",
        seed=1,
        pairs=[str(pairs_dir)],
        query_only=True,
        embedding_weight=10.0,
        batch_size=8,
        lr=3e-3,
        max_seq_length=24,
        max_steps=40,
        logging_steps=5,
        save_steps=100,
    )
    return tmp_path / "student", distill_retriever(cfg, tmp_path / "student")


def test_query_distillation_pulls_the_queries_onto_the_teachers(query_student, micro_model_dir, pairs_dir):
    folder, summary = query_student
    teacher = load_bi_encoder(str(micro_model_dir), device="cpu")
    anchors = [json.loads(line)["anchor"] for f in sorted(pairs_dir.iterdir()) for line in f.open()]
    before = _mean_cos(load_bi_encoder("random:micro", device="cpu", seed=1), teacher, anchors)
    after = _mean_cos(load_bi_encoder(str(folder), device="cpu"), teacher, anchors)
    assert after > before + 0.2, (before, after)
    assert summary["query_only"] and summary["documents_model"] == str(micro_model_dir.resolve())


def test_index_search_and_eval_pair_the_query_encoder_with_its_teachers_documents(
    query_student, micro_model_dir, tmp_path
):
    folder, _ = query_student
    corpus = tmp_path / "corpus.jsonl"
    docs = [{"id": f"d{i}", "title": "", "text": t} for i, t in enumerate(COLUMNS[1] + COLUMNS[2])]
    corpus.write_text("".join(json.dumps(d) + "\n" for d in docs), encoding="utf-8")
    with pytest.raises(IndusError, match=r"index with --model .* --query-model"):
        build_index(str(folder), corpus, tmp_path / "wrong", progress=False)
    meta = build_index(str(micro_model_dir), corpus, tmp_path / "index", query_model=str(folder), progress=False)
    assert meta["query_model"] == str(folder.resolve()) and meta["model"] == str(micro_model_dir.resolve())
    index = load_index(tmp_path / "index")
    probe = ["what heats the ocean?"]
    assert np.allclose(encode(index.model(), probe), encode(load_bi_encoder(str(folder), device="cpu"), probe))
    teacher_vectors = encode(load_bi_encoder(str(micro_model_dir), device="cpu"), [d["text"] for d in docs])
    assert np.allclose(index.index.reconstruct_n(0, len(docs)), teacher_vectors, atol=1e-5)  # documents: teacher's
    assert len(index.search(["what heats the ocean?"], k=3)[0]) == 3
    assert IREvaluator().documents_of(str(folder)) == str(micro_model_dir.resolve())
    assert IREvaluator().documents_of(str(micro_model_dir)) is None


def test_the_int8_export_of_a_query_encoder_keeps_its_documents_model(query_student, micro_model_dir, tmp_path):
    from indus.models import documents_model
    from indus.retriever.quantize import export_int8

    folder, _ = query_student
    info = export_int8(str(folder), tmp_path / "q-int8")
    assert info["documents_model"] == documents_model(tmp_path / "q-int8") == str(micro_model_dir.resolve())
    assert IREvaluator().documents_of(str(tmp_path / "q-int8")) == str(micro_model_dir.resolve())
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(json.dumps({"id": "d0", "text": "sea ice"}) + "\n", encoding="utf-8")
    with pytest.raises(IndusError, match=r"index with --model .* --query-model"):
        build_index(str(tmp_path / "q-int8"), corpus, tmp_path / "wrong", progress=False)
    assert "documents_model" not in export_int8(str(micro_model_dir), tmp_path / "t-int8")  # not a query encoder


def test_a_query_model_of_another_width_is_refused(micro_model_dir, tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(json.dumps({"id": "d0", "text": "sea ice"}) + "\n", encoding="utf-8")
    with pytest.raises(IndusError, match="must share its document model's space"):
        build_index(str(micro_model_dir), corpus, tmp_path / "index", query_model="random:nano", progress=False)


def test_cli_distills_a_query_encoder_and_indexes_with_it(monkeypatch, capsys, micro_model_dir, pairs_dir, tmp_path):
    from indus.cli import main

    def run(*args):
        monkeypatch.setattr(sys, "argv", ["indus", *args])
        try:
            main()
        except SystemExit as exc:
            assert exc.code in (0, None), capsys.readouterr().err

    run("retriever", "distill", "--teacher", str(micro_model_dir), "--student", f"layers:1@{micro_model_dir}",
        "--pairs", str(pairs_dir), "--query-only", "--out", str(tmp_path / "q"), "--set", "max_steps=2",
        "--set", "batch_size=4", "--set", "max_seq_length=24")  # fmt: skip
    assert json.loads((tmp_path / "q" / "summary.json").read_text())["query_only"] is True
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(json.dumps({"id": "d0", "text": "sea ice"}) + "\n", encoding="utf-8")
    run("retriever", "index", "--model", str(micro_model_dir), "--query-model", str(tmp_path / "q"),
        "--corpus", str(corpus), "--out", str(tmp_path / "index"))  # fmt: skip
    assert json.loads((tmp_path / "index" / "meta.json").read_text())["query_model"] == str((tmp_path / "q").resolve())
