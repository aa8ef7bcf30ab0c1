from __future__ import annotations

import pytest
import torch

from indus.errors import IndusError
from indus.models import load_model, load_sentence_transformer, load_tokenizer, minilm_path, resolve_model


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
