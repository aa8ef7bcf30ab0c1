"""Retriever training: one source per batch, a micro run end to end, resume, budget, gradient caching."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from indus.config import load_config
from indus.errors import IndusError
from indus.retriever.data import load_pairs, pair_datasets, source_of_batches
from indus.retriever.train import RetrieverTrainConfig, train_retriever


def _cfg(model, pairs_dir, **kw) -> RetrieverTrainConfig:
    base = dict(
        model=str(model),
        pairs=[str(pairs_dir)],
        batch_size=4,
        max_seq_length=24,
        max_steps=4,
        logging_steps=1,
        save_steps=2,
    )
    base.update(kw)
    return RetrieverTrainConfig(**base)


def _batches(model_dir, pairs_dir, one_source: bool, tmp_path):
    from indus.retriever.bi_encoder import load_bi_encoder
    from indus.retriever.losses import GTELoss
    from indus.retriever.trainer import build_trainer

    cfg = _cfg(model_dir, pairs_dir, batch_size=6, one_source_per_batch=one_source)
    data = load_pairs(cfg.pairs)
    model = load_bi_encoder(cfg.model)
    trainer = build_trainer(
        model, GTELoss(model), pair_datasets(data, one_source_per_batch=one_source), cfg, tmp_path / "ckpt"
    )
    return list(trainer.get_train_dataloader().batch_sampler), data.counts


def test_every_batch_comes_from_one_source(micro_model_dir, pairs_dir, tmp_path):
    batches, counts = _batches(micro_model_dir, pairs_dir, True, tmp_path)
    sources = source_of_batches(batches, counts)
    assert all(len(c) == 1 for c in sources), sources
    assert sorted(i for b in batches for i in b) == list(range(sum(counts.values())))  # every pair once an epoch
    assert {next(iter(c)) for c in sources} == {"alpha", "beta", "gamma"}


def test_pooled_batches_mix_sources(micro_model_dir, pairs_dir, tmp_path):
    batches, counts = _batches(micro_model_dir, pairs_dir, False, tmp_path)
    assert any(len(c) > 1 for c in source_of_batches(batches, counts))


def test_sources_group_pairs_and_detect_complete_negatives(pairs_dir):
    data = load_pairs([pairs_dir], max_pairs_per_source=7, seed=1)
    assert data.counts == {"alpha": 7, "beta": 7, "gamma": 7}
    assert data.negatives == {"alpha": False, "beta": False, "gamma": True}
    ds = pair_datasets(data)
    assert ds["gamma"].column_names == ["anchor", "positive", "negative"]
    assert ds["alpha"].column_names == ["anchor", "positive"]


def test_micro_train_end_to_end_loads_in_sentence_transformers(micro_model_dir, pairs_dir, tmp_path):
    from sentence_transformers import SentenceTransformer

    out = tmp_path / "run"
    summary = train_retriever(_cfg(micro_model_dir, pairs_dir), out)
    assert summary["steps"] == 4 and summary["pairs_seen"] == 16 and summary["stop_reason"] == "max_steps"
    assert np.isfinite(summary["final_loss"]) and len(summary["loss_curve"]) == 4
    assert summary["sources"] == {"alpha": 10, "beta": 10, "gamma": 10} and summary["hard_negative_sources"] == [
        "gamma"
    ]
    # one process, 4 pairs: at most 4 blocks of 4 plus one hard-negative column, less the two positive terms
    assert summary["world_size"] == 1 and summary["global_batch"] == 4
    assert 4 <= summary["negatives_per_query"] <= (4 + 1) * 4 - 2
    model = SentenceTransformer(str(out), device="cpu")
    emb = model.encode(["what is sea ice?", "notes on comet dust"])
    assert emb.shape == (2, 32) and np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert load_config(RetrieverTrainConfig, out / "config.yaml").max_steps == 4
    assert (out / "summary.json").is_file() and not (out / "checkpoints").exists()
    with pytest.raises(IndusError, match="not empty"):
        train_retriever(_cfg(micro_model_dir, pairs_dir), out)


def test_resume_continues_the_same_loss_curve(micro_model_dir, pairs_dir, tmp_path):
    full = train_retriever(_cfg(micro_model_dir, pairs_dir, keep_checkpoints=True), tmp_path / "full")
    assert (tmp_path / "full" / "checkpoints" / "checkpoint-2" / "config.yaml").is_file()
    part = tmp_path / "part"
    (part / "checkpoints").mkdir(parents=True)
    shutil.copytree(tmp_path / "full" / "checkpoints" / "checkpoint-2", part / "checkpoints" / "checkpoint-2")
    resumed = train_retriever(_cfg(micro_model_dir, pairs_dir), part, resume=True)
    assert resumed["resumed_from"].endswith("checkpoint-2") and resumed["steps"] == 4
    assert resumed["pairs_seen"] == full["pairs_seen"] == 16  # the count carries over in the checkpoint
    tail = dict(map(tuple, resumed["loss_curve"]))
    for step, loss in full["loss_curve"][2:]:
        assert tail[step] == pytest.approx(loss, rel=1e-4), step


def test_resume_without_checkpoint_starts_from_the_beginning(micro_model_dir, pairs_dir, tmp_path):
    summary = train_retriever(_cfg(micro_model_dir, pairs_dir, max_steps=1), tmp_path / "fresh", resume=True)
    assert summary["resumed_from"] is None and summary["steps"] == 1


def test_time_budget_stops_training(micro_model_dir, pairs_dir, tmp_path):
    summary = train_retriever(_cfg(micro_model_dir, pairs_dir, max_steps=50, time_budget_s=1e-3), tmp_path / "t")
    assert summary["stop_reason"] == "time_budget" and summary["steps"] == 1


def test_gradient_cached_bf16_training_runs(micro_model_dir, pairs_dir, tmp_path):
    summary = train_retriever(
        _cfg(micro_model_dir, pairs_dir, mini_batch_size=2, max_steps=2, bf16=True), tmp_path / "c"
    )
    assert summary["steps"] == 2 and np.isfinite(summary["final_loss"])


@pytest.mark.parametrize(
    "bad", [{"batch_size": 0}, {"temperature": 0.0}, {"source_sampling": "random"}, {"mini_batch_size": 0}]
)
def test_config_validation(bad):
    with pytest.raises(ValueError):
        RetrieverTrainConfig(**bad)
