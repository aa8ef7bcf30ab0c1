"""Retriever distillation end to end, layer-cut students, and a student with a different tokenizer."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from indus.errors import IndusError
from indus.retriever.bi_encoder import (
    encode,
    ffn_importance,
    keep_layers,
    load_bi_encoder,
    parse_layer_spec,
    parse_student_spec,
    prune_ffn,
)
from indus.retriever.distill import RetrieverDistillConfig, distill_retriever


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("minilm-layers:3", ("minilm", [0, 1, 2])),
        ("layers:2@some/dir", ("some/dir", [0, 1])),
        ("layers:0,2,4@minilm", ("minilm", [0, 2, 4])),
        ("minilm", None),
        ("random:tiny", None),
    ],
)
def test_parse_layer_spec(spec, expected):
    assert parse_layer_spec(spec) == expected


@pytest.mark.parametrize(
    "spec",
    [
        "layers:3",
        "layers:x@minilm",
        "layers:0@minilm",
        "layers:1,1@minilm",
        "layers:2/ffn=0@minilm",
        "layers:2/width=8@minilm",
        "layers:2/ffn=@minilm",
    ],
)
def test_bad_layer_specs_are_clear(spec):
    with pytest.raises(IndusError, match="layers:|ffn|integers|distinct|at least"):
        parse_layer_spec(spec)


def test_student_spec_with_a_narrower_feed_forward_block():
    assert parse_student_spec("layers:0,3,5/ffn=384@runs/t") == ("runs/t", [0, 3, 5], 384)
    assert parse_student_spec("minilm-layers:2/ffn=64") == ("minilm", [0, 1], 64)
    assert parse_student_spec("layers:2@minilm") == ("minilm", [0, 1], None)
    assert parse_layer_spec("layers:0,3,5/ffn=384@runs/t") == ("runs/t", [0, 3, 5])


def test_pruning_drops_the_neurons_that_contribute_nothing_first(micro_model_dir, tmp_path):
    """Silence half the feed-forward neurons (zero output weights): narrowing to the other half must keep the
    embeddings exactly, by activation and by weight importance; a saved pruned model reloads the same."""
    from sentence_transformers import SentenceTransformer

    texts = ["comet dust trails", "protein folding in cells", "sea ice extent declines"]
    for calibration in (texts, None):
        model = load_bi_encoder(str(micro_model_dir), device="cpu")
        width = model[0].auto_model.config.intermediate_size  # 64
        silent = torch.randperm(width, generator=torch.Generator().manual_seed(0))[: width // 2]
        for layer in model[0].auto_model.encoder.layer:
            with torch.no_grad():
                layer.output.dense.weight[:, silent] = 0.0
        before = encode(model, texts)
        scores = ffn_importance(model, calibration)
        assert all(float(s[silent].max()) == 0.0 < float(s.max()) for s in scores)
        prune_ffn(model, width // 2, calibration)
        layer = model[0].auto_model.encoder.layer[0]
        assert layer.intermediate.dense.out_features == layer.output.dense.in_features == width // 2
        assert model[0].auto_model.config.intermediate_size == width // 2
        assert np.allclose(encode(model, texts), before, atol=1e-5)
    model.save(str(tmp_path / "pruned"))
    again = SentenceTransformer(str(tmp_path / "pruned"), device="cpu")
    assert np.allclose(encode(again, texts), before, atol=1e-5)
    with pytest.raises(IndusError, match="ask for fewer"):
        prune_ffn(again, width, None)


def test_other_module_stacks_take_the_generic_path(micro_model_dir):
    from sentence_transformers.sentence_transformer.modules import Pooling

    from indus.embedding import _direct_encoder

    model = load_bi_encoder(str(micro_model_dir), device="cpu")
    model[1] = Pooling(model[1].embedding_dimension, pooling_mode="cls")  # CLS pooling: not the direct path
    assert _direct_encoder(model) is None
    texts = ["a short query", "sea ice"]
    assert np.allclose(encode(model, texts), model.encode(texts, normalize_embeddings=True), atol=1e-5)


def test_a_pruned_layer_cut_loads_from_its_spec(micro_model_dir):
    model = load_bi_encoder(f"layers:1/ffn=16@{micro_model_dir}", calibration_texts=["solar wind", "dark matter"])
    config = model[0].auto_model.config
    assert config.num_hidden_layers == 1 and config.intermediate_size == 16
    assert encode(model, ["solar wind"]).shape == (1, 32)


def test_lean_encode_of_a_few_texts_equals_sentence_transformers_encode(micro_model_dir):
    from indus.embedding import _direct_encoder

    model = load_bi_encoder(str(micro_model_dir), device="cpu")
    assert _direct_encoder(model) is not None  # Transformer + mean Pooling + Normalize: the direct path
    texts = ["a short query", "a much longer query about the upper ocean heat content and sea ice", "x"]
    reference = model.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    for chunk in ([texts[0]], texts):  # the lean path (one text, a padded batch of three)
        got = encode(model, chunk)
        assert got.dtype == np.float32 and got.flags["C_CONTIGUOUS"]
        assert np.allclose(got, reference[: len(chunk)], atol=1e-5)
    model.max_seq_length = 4  # truncation follows the model's length, as in SentenceTransformer.encode
    assert np.allclose(encode(model, texts), model.encode(texts, normalize_embeddings=True), atol=1e-5)
    assert np.allclose(encode(model, texts[1:2]), model.encode(texts[1:2], normalize_embeddings=True), atol=1e-5)
    model.max_seq_length = 512
    many = encode(model, texts * 4, batch_size=5)  # 12 texts: through SentenceTransformer.encode
    assert np.allclose(many, np.tile(reference, (4, 1)), atol=1e-5)
    assert np.allclose(np.linalg.norm(many, axis=1), 1.0, atol=1e-5)


def test_the_direct_path_skips_the_pooler_but_follows_the_weights(micro_model_dir):
    model = load_bi_encoder(str(micro_model_dir), device="cpu")
    auto_model = model[0].auto_model
    assert auto_model.pooler is not None
    encode(model, ["a first query"])  # builds the direct path (its one check against the module stack runs the pooler)
    calls = []
    auto_model.pooler.register_forward_hook(lambda *_: calls.append(1))
    before = encode(model, ["sea ice"])
    assert calls == [] and auto_model.pooler is not None  # not run, and still the model's
    with torch.no_grad():  # a weight change after the first query reaches the direct path (shared parameters)
        auto_model.encoder.layer[0].output.dense.weight.mul_(3.0)
    after = encode(model, ["sea ice"])
    reference = model.encode(["sea ice"], normalize_embeddings=True, convert_to_numpy=True)
    assert not np.allclose(before, after, atol=1e-4) and np.allclose(after, reference, atol=1e-5)


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

    texts = [
        f"{w} notes on stellar winds, dark matter and protein folding {i}"
        for i, w in enumerate(["alpha", "beta", "gamma", "what", "is"] * 4)
    ]
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        texts, vocab_size=300, min_frequency=1, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    )
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

    cfg = RetrieverDistillConfig(
        teacher=str(micro_model_dir),
        student=f"layers:1@{micro_model_dir}",
        pairs=[str(pairs_dir)],
        batch_size=4,
        max_seq_length=24,
        max_steps=3,
        logging_steps=1,
        save_steps=10,
        teacher_cache=str(tmp_path / "cache"),
    )
    summary = distill_retriever(cfg, tmp_path / "student")
    assert not summary["teacher_cached"] and summary["teacher_encoded"] == 70
    assert len(list((tmp_path / "cache").glob("teacher-*/part-*.keys.npy"))) == 1
    again = distill_retriever(cfg, tmp_path / "student-again")  # same teacher, texts and length: from the cache
    assert again["teacher_cached"] and again["teacher_encoded"] == 0 and again["loss_curve"] == summary["loss_curve"]
    rows = [{"anchor": f"delta question {i}?", "positive": f"delta answer {i}.", "source": "delta"} for i in range(3)]
    (tmp_path / "delta.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    more = copy.deepcopy(cfg)
    more.pairs = [*cfg.pairs, str(tmp_path / "delta.jsonl")]
    added = distill_retriever(more, tmp_path / "student-more")  # a source added: only its 6 texts are encoded
    assert not added["teacher_cached"] and added["teacher_encoded"] == 6 and added["teacher_texts"] == 76
    fresh = copy.deepcopy(more)
    fresh.teacher_cache = None  # the cached rows are the vectors a fresh teacher pass gives
    fresh_curve = distill_retriever(fresh, tmp_path / "student-fresh")["loss_curve"]
    assert np.allclose([v for _, v in fresh_curve], [v for _, v in added["loss_curve"]], rtol=1e-4)
    cfg.embedding_weight = 5.0  # the optional embedding term: same start, a larger loss (1 - cos > 0 for a cut)
    with_emb = distill_retriever(cfg, tmp_path / "student-emb")
    assert with_emb["loss_curve"][0][1] > summary["loss_curve"][0][1]
    assert summary["steps"] == 3 and summary["student_layers"] == 1 and summary["teacher_dim"] == 32
    assert summary["teacher_texts"] == 70  # 30 anchors + 30 positives + 10 negatives, all distinct
    assert np.isfinite(summary["final_loss"])
    model = SentenceTransformer(str(tmp_path / "student"), device="cpu")
    assert model[0].auto_model.config.num_hidden_layers == 1
    assert model.encode(["sea ice"]).shape == (1, 32)


def test_embedding_term_needs_a_student_as_wide_as_the_teacher(micro_model_dir, pairs_dir, tmp_path):
    cfg = RetrieverDistillConfig(
        teacher=str(micro_model_dir),
        student="random:nano",
        pairs=[str(pairs_dir)],
        batch_size=4,
        max_seq_length=24,
        max_steps=1,
        embedding_weight=1.0,
    )
    with pytest.raises(IndusError, match="as wide as its teacher"):
        distill_retriever(cfg, tmp_path / "student")


def test_distill_into_a_student_with_another_tokenizer(micro_model_dir, pairs_dir, tmp_path):
    from sentence_transformers import SentenceTransformer

    student_dir, vocab = _bpe_model_dir(tmp_path)
    teacher_vocab = len(load_bi_encoder(str(micro_model_dir)).tokenizer)
    assert vocab != teacher_vocab
    cfg = RetrieverDistillConfig(
        teacher=str(micro_model_dir),
        student=str(student_dir),
        pairs=[str(pairs_dir)],
        batch_size=4,
        max_seq_length=24,
        max_steps=2,
        save_steps=10,
    )
    summary = distill_retriever(cfg, tmp_path / "bpe-student")
    assert summary["steps"] == 2 and np.isfinite(summary["final_loss"])
    model = SentenceTransformer(str(tmp_path / "bpe-student"), device="cpu")
    assert len(model.tokenizer) == vocab


def test_random_preset_student_takes_the_teachers_tokenizer(micro_model_dir):
    student = load_bi_encoder("random:micro", tokenizer_of=str(micro_model_dir))
    assert student[0].auto_model.config.num_hidden_layers == 2
    assert len(student.tokenizer) == len(load_bi_encoder(str(micro_model_dir)).tokenizer)


@pytest.mark.parametrize(
    "bad", [{"tau_kd": 0.0}, {"kd_weight": -1.0}, {"embedding_weight": -1.0}, {"teacher_batch_size": 0}]
)
def test_distill_config_validation(bad):
    with pytest.raises(ValueError):
        RetrieverDistillConfig(**bad)
