from __future__ import annotations

import pytest
import torch

from indus.errors import IndusError
from indus.models import (
    Bm25,
    Fused,
    LayerCut,
    Named,
    RandomInit,
    RunRef,
    load_model,
    load_model_config,
    load_sentence_transformer,
    load_tokenizer,
    minilm_path,
    parse_model,
    resolve_model,
)


def test_minilm_alias_resolves_to_package():
    ref = resolve_model("minilm")
    assert ref.path == minilm_path() and (ref.path / "config.json").is_file()
    assert not ref.random_init


def test_random_preset_has_preset_shape():
    model = load_model("random:micro", seed=0)
    assert model.config.num_hidden_layers == 2 and model.config.hidden_size == 32
    assert model.config.vocab_size == len(load_tokenizer("random:micro"))


def test_random_is_seeded_and_differs_from_pretrained(micro_model_dir):
    a = load_model(f"random:{micro_model_dir}", seed=1)
    b = load_model(f"random:{micro_model_dir}", seed=1)
    c = load_model(micro_model_dir)
    wa, wb, wc = (m.embeddings.word_embeddings.weight for m in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)


@pytest.mark.parametrize("spec", ["no/such/model", "random:", "random:gigantic-preset-name"])
def test_bad_model_spec_is_clear(spec):
    with pytest.raises(IndusError):
        resolve_model(spec)


def test_folder_without_config_is_refused(tmp_path):
    with pytest.raises(IndusError, match="config.json"):
        resolve_model(str(tmp_path))


def test_sentence_transformer_mean_pooling_on_plain_folder(micro_model_dir):
    st = load_sentence_transformer(micro_model_dir)
    emb = st.encode(["a sentence", "another one"], convert_to_tensor=True)
    assert emb.shape == (2, 32)


# ------------------------------------------------------------------------ one meaning for a model string


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("minilm", Named("minilm")),
        ("runs/teacher", Named("runs/teacher")),
        ("bm25", Bm25("bm25")),
        ("random:micro", RandomInit("random:micro", "micro", None, "micro")),
        ("random:micro@runs/tok", RandomInit("random:micro@runs/tok", "micro", "runs/tok", "micro")),
        ("random:runs/teacher", RandomInit("random:runs/teacher", "runs/teacher", None, None)),
        ("layers:3@minilm", LayerCut("layers:3@minilm", "minilm", (0, 1, 2), None)),
        ("minilm-layers:2/ffn=64", LayerCut("minilm-layers:2/ffn=64", "minilm", (0, 1), 64)),
        (
            "layers:0,2/ffn=8@random:micro@minilm",
            LayerCut("layers:0,2/ffn=8@random:micro@minilm", "random:micro@minilm", (0, 2), 8),
        ),
        ("pretrain:tiny", RunRef("pretrain:tiny", "pretrain", "tiny")),
        (
            "bm25+layers:2@minilm",
            Fused("bm25+layers:2@minilm", (Bm25("bm25"), LayerCut("layers:2@minilm", "minilm", (0, 1), None))),
        ),
    ],
)
def test_parse_model_reads_every_form(spec, expected):
    assert parse_model(spec) == expected


@pytest.mark.parametrize(
    "spec, message",
    [
        ("random:", "random:<preset>"),
        ("layers:3", "layers:N@MODEL"),
        ("layers:x@minilm", "integers"),
        ("layers:0,0@minilm", "distinct"),
        ("layers:2/width=3@minilm", "/ffn=N"),
        ("bm25+", "a system on each side"),
    ],
)
def test_parse_model_refuses_malformed_strings_in_one_line(spec, message):
    with pytest.raises(IndusError, match=message) as err:
        parse_model(spec)
    assert "\n" not in str(err.value)


def test_plus_splits_systems_only_where_fusion_is_asked_and_never_inside_an_existing_folder(tmp_path):
    assert parse_model("a+b", fused=False) == Named("a+b")
    folder = tmp_path / "gte+cse"
    folder.mkdir()
    assert parse_model(str(folder)) == Named(str(folder))
    assert isinstance(parse_model(f"{folder}+bm25"), Fused)


def test_run_references_are_checked_against_the_runs_of_a_config():
    runs = {"pretrain": {"tiny", "small"}, "distill": set(), "retriever": {"gte"}}
    assert parse_model("retriever:gte", runs) == RunRef("retriever:gte", "retriever", "gte")
    with pytest.raises(IndusError, match="names no distill run"):
        parse_model("distill:nano", runs)
    assert parse_model("distill:nano") == RunRef("distill:nano", "distill", "nano")  # no config: not checked


def test_random_preset_takes_a_tokenizer_only_when_it_has_none():
    assert parse_model("random:micro").with_tokenizer("t") == parse_model("random:micro@t")
    assert parse_model("random:micro@u").with_tokenizer("t") == parse_model("random:micro@u")


def test_a_layer_cut_is_not_one_model_folder():
    with pytest.raises(IndusError, match="not one model folder"):
        resolve_model("layers:2@minilm")
    with pytest.raises(IndusError, match="model not found"):  # one model: '+' is part of a (missing) folder name
        resolve_model("bm25+minilm")


def test_one_tokenizer_loader_reads_a_tokenizer_folder_and_a_model(tmp_path):
    load_tokenizer("minilm").save_pretrained(tmp_path)  # a tokenizer folder: no config.json
    assert not (tmp_path / "config.json").exists()
    assert load_tokenizer(tmp_path).get_vocab() == load_tokenizer("minilm").get_vocab()
    (tmp_path / "empty").mkdir()
    with pytest.raises(IndusError, match="no tokenizer here"):
        load_tokenizer(tmp_path / "empty")


def test_model_config_of_a_random_preset_is_sized_to_its_tokenizer():
    config = load_model_config("random:micro")
    assert config.num_hidden_layers == 2 and config.vocab_size == len(load_tokenizer("minilm"))
