"""Retriever distillation end to end, layer-cut students, and a student with a different tokenizer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from indus.errors import IndusError
from indus.retriever.bi_encoder import keep_layers, load_bi_encoder, parse_layer_spec
from indus.retriever.distill import RetrieverDistillConfig, distill_retriever


@pytest.mark.parametrize("spec, expected", [
    ("minilm-layers:3", ("minilm", [0, 1, 2])),
    ("layers:2@some/dir", ("some/dir", [0, 1])),
    ("layers:0,2,4@minilm", ("minilm", [0, 2, 4])),
    ("minilm", None),
    ("random:tiny", None),
])
def test_parse_layer_spec(spec, expected):
    assert parse_layer_spec(spec) == expected


@pytest.mark.parametrize("spec", ["layers:3", "layers:x@minilm", "layers:0@minilm", "layers:1,1@minilm"])
def test_bad_layer_specs_are_clear(spec):
    with pytest.raises(IndusError):
        parse_layer_spec(spec)


def test_layer_cut_keeps_the_lower_layers_weights(micro_model_dir, tmp_path):
    from sentence_transformers import SentenceTransformer

    full = load_bi_encoder(str(micro_model_dir))
    cut = load_bi_encoder(f"layers:1@{micro_model_dir}")
    assert cut[0].auto_model.config.num_hidden_layers == 1 and len(cut[0].auto_model.encoder.layer) == 1
    a, b = full[0].auto_model.encoder.layer[0], cut[0].auto_model.encoder.layer[0]
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    cut.save(str(tmp_path / "cut"))
    again = SentenceTransformer(str(tmp_path / "cut"), device="cpu")
    assert again[0].auto_model.config.num_hidden_layers == 1
    assert np.allclose(again.encode(["comet dust"]), cut.encode(["comet dust"]), atol=1e-6)
    with pytest.raises(IndusError, match="has 2 layers"):
        keep_layers(full, [0, 5])


def _bpe_model_dir(tmp_path):
    """A micro RoBERTa with its own byte-level BPE tokenizer (not minilm's WordPiece)."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaModel, RobertaTokenizerFast

    from indus.encoder.presets import config_for_tokenizer

    texts = [f"{w} notes on stellar winds, dark matter and protein folding {i}" for i, w in
             enumerate(["alpha", "beta", "gamma", "what", "is"] * 4)]
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(texts, vocab_size=300, min_frequency=1,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    folder = tmp_path / "bpe-model"
    folder.mkdir()
    bpe.save_model(str(folder))
    tok = RobertaTokenizerFast(vocab_file=str(folder / "vocab.json"), merges_file=str(folder / "merges.txt"))
    tok.save_pretrained(str(folder))
    tok = RobertaTokenizerFast.from_pretrained(str(folder))
    torch.manual_seed(0)
    RobertaModel(config_for_tokenizer("micro", tok, max_length=64)).save_pretrained(str(folder))
    return folder, len(tok)


def test_micro_distill_end_to_end_with_a_layer_cut_student(micro_model_dir, pairs_dir, tmp_path):
    from sentence_transformers import SentenceTransformer

    cfg = RetrieverDistillConfig(teacher=str(micro_model_dir), student=f"layers:1@{micro_model_dir}",
                                 pairs=[str(pairs_dir)], batch_size=4, max_seq_length=24, max_steps=3,
                                 logging_steps=1, save_steps=10, teacher_cache=str(tmp_path / "cache"))
    summary = distill_retriever(cfg, tmp_path / "student")
    assert not summary["teacher_cached"] and len(list((tmp_path / "cache").glob("teacher-*.npy"))) == 1
    again = distill_retriever(cfg, tmp_path / "student-again")  # same teacher, texts and length: from the cache
    assert again["teacher_cached"] and again["loss_curve"] == summary["loss_curve"]
    assert summary["steps"] == 3 and summary["student_layers"] == 1 and summary["teacher_dim"] == 32
    assert summary["teacher_texts"] == 70  # 30 anchors + 30 positives + 10 negatives, all distinct
    assert np.isfinite(summary["final_loss"])
    model = SentenceTransformer(str(tmp_path / "student"), device="cpu")
    assert model[0].auto_model.config.num_hidden_layers == 1
    assert model.encode(["sea ice"]).shape == (1, 32)


def test_distill_into_a_student_with_another_tokenizer(micro_model_dir, pairs_dir, tmp_path):
    from sentence_transformers import SentenceTransformer

    student_dir, vocab = _bpe_model_dir(tmp_path)
    teacher_vocab = len(load_bi_encoder(str(micro_model_dir)).tokenizer)
    assert vocab != teacher_vocab
    cfg = RetrieverDistillConfig(teacher=str(micro_model_dir), student=str(student_dir), pairs=[str(pairs_dir)],
                                 batch_size=4, max_seq_length=24, max_steps=2, save_steps=10)
    summary = distill_retriever(cfg, tmp_path / "bpe-student")
    assert summary["steps"] == 2 and np.isfinite(summary["final_loss"])
    model = SentenceTransformer(str(tmp_path / "bpe-student"), device="cpu")
    assert len(model.tokenizer) == vocab


def test_random_preset_student_takes_the_teachers_tokenizer(micro_model_dir):
    student = load_bi_encoder("random:micro", tokenizer_of=str(micro_model_dir))
    assert student[0].auto_model.config.num_hidden_layers == 2
    assert len(student.tokenizer) == len(load_bi_encoder(str(micro_model_dir)).tokenizer)


@pytest.mark.parametrize("bad", [{"tau_kd": 0.0}, {"kd_weight": -1.0}, {"teacher_batch_size": 0}])
def test_distill_config_validation(bad):
    with pytest.raises(ValueError):
        RetrieverDistillConfig(**bad)
