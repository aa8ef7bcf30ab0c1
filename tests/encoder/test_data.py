"""Packing fills every sequence with real tokens, keeps each document token exactly once, and the data order
is a pure function of (seed, position)."""

from __future__ import annotations

import numpy as np
import pytest

from indus.encoder.data import (
    PackedCorpus,
    StreamingCorpus,
    batch_indices,
    build_packed_dataset,
    encode_texts,
    pack_sequences,
)
from indus.encoder.loop import lr_factor, micro_batch_position, resolve_total_steps, warmup_for


def test_packing_is_full_length_and_keeps_every_token_once():
    rng = np.random.default_rng(0)
    docs = [list(rng.integers(5, 100, rng.integers(1, 40))) for _ in range(50)] + [[]]
    seqs = list(pack_sequences(docs, seq_len=16, bos_id=0, eos_id=2))
    assert seqs and all(len(s) == 16 and s[0] == 0 for s in seqs)
    assert all(1 not in s for s in seqs), "no padding"
    stream = [t for d in docs if d for t in (*d, 2)]
    body = [t for s in seqs for t in s[1:]]
    assert body == stream[: len(body)], "documents appear in order, each token exactly once"
    assert len(stream) - len(body) < 15, "only the final partial sequence is dropped"


def test_packed_dataset_is_cached_and_memory_mapped(corpus_dir, bpe_dir, tmp_path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(bpe_dir))
    ds = build_packed_dataset([corpus_dir / "train.jsonl"], tok, 32, cache_dir=tmp_path, progress=False)
    files = list((tmp_path / "packed").glob("*.arrow"))
    assert len(files) == 1 and ds.cache_files and ds.cache_files[0]["filename"] == str(files[0])
    arr = np.asarray(ds[:]["input_ids"])
    assert arr.shape[1] == 32 and (arr[:, 0] == tok.bos_token_id).all() and not (arr == tok.pad_token_id).any()
    from indus.data.corpus import iter_texts

    n_tokens = sum(len(ids) + 1 for ids in encode_texts(tok, iter_texts(corpus_dir / "train.jsonl")))
    assert len(arr) == n_tokens // 31
    again = build_packed_dataset([corpus_dir / "train.jsonl"], tok, 32, cache_dir=tmp_path, progress=False)
    assert again.cache_files[0]["filename"] == str(files[0]), "a second build reads the cache"
    build_packed_dataset([corpus_dir / "train.jsonl"], tok, 16, cache_dir=tmp_path, progress=False)
    assert len(list((tmp_path / "packed").glob("*.arrow"))) == 2, "seq_len is part of the cache key"


def test_data_order_is_a_pure_function_of_seed_and_position():
    a = batch_indices(90, 20, n=100, seed=3)
    assert np.array_equal(a, batch_indices(90, 20, n=100, seed=3))
    assert not np.array_equal(a, batch_indices(90, 20, n=100, seed=4))
    epoch = np.concatenate([batch_indices(p, 10, n=100, seed=3) for p in range(0, 100, 10)])
    assert sorted(epoch.tolist()) == list(range(100)), "one epoch visits every sequence once"
    assert not np.array_equal(epoch, batch_indices(100, 100, n=100, seed=3)), "each epoch is reshuffled"
    # ranks and micro-steps tile the order without overlap
    pos = {
        micro_batch_position(s, m, r, grad_accum=2, world=3, batch_size=4)
        for s in range(3)
        for m in range(2)
        for r in range(3)
    }
    assert sorted(pos) == list(range(0, 3 * 2 * 3 * 4, 4))


def test_streaming_corpus_replays_the_same_sequences(corpus_dir, bpe_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(bpe_dir))
    s = StreamingCorpus([corpus_dir / "train.jsonl"], tok, 32, seed=0, shuffle_buffer=50)
    first = s.batch(0, 4)
    later = s.batch(8, 4)
    assert first.shape == (4, 32)
    fresh = StreamingCorpus([corpus_dir / "train.jsonl"], tok, 32, seed=0, shuffle_buffer=50)
    assert np.array_equal(fresh.batch(8, 4), later), "a resumed reader yields the same sequences"
    assert np.array_equal(s.batch(0, 4), first), "going back replays the stream"
    assert not np.array_equal(
        StreamingCorpus([corpus_dir / "train.jsonl"], tok, 32, seed=1, shuffle_buffer=50).batch(0, 4), first
    )


def test_packed_corpus_batches_by_position(corpus_dir, bpe_dir, tmp_path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(bpe_dir))
    corpus = PackedCorpus(
        build_packed_dataset([corpus_dir / "train.jsonl"], tok, 32, cache_dir=tmp_path, progress=False), seed=0
    )
    assert corpus.batch(5, 3).shape == (3, 32) and np.array_equal(corpus.batch(5, 3), corpus.batch(5, 3))


def test_schedule_and_run_length():
    assert lr_factor(0, 10, 100) == pytest.approx(0.1) and lr_factor(9, 10, 100) == 1.0
    assert lr_factor(55, 10, 100) == pytest.approx(0.5) and lr_factor(100, 10, 100) == 0.0
    from indus.config import build_config
    from indus.encoder.configs import PretrainConfig

    assert resolve_total_steps(build_config(PretrainConfig, {"max_tokens": 10_000}), 4096) == 3
    assert resolve_total_steps(build_config(PretrainConfig, {"max_minutes": 1.0}), 4096, step_seconds=0.5) == 120
    assert warmup_for(build_config(PretrainConfig, {"max_steps": 500_000, "warmup_steps": 24_000}), 500_000) == 24_000
    assert warmup_for(build_config(PretrainConfig, {"max_steps": 100}), 100) == 6


def test_config_validation():
    from indus.config import build_config
    from indus.encoder.configs import PretrainConfig
    from indus.errors import IndusError

    with pytest.raises(IndusError, match="only one of"):
        build_config(PretrainConfig, {"max_steps": 10, "max_minutes": 1.0})
    with pytest.raises(IndusError, match="preset"):
        build_config(PretrainConfig, {"preset": "huge"})
    with pytest.raises(IndusError, match="mask_prob"):
        build_config(PretrainConfig, {"mask_prob": 1.5})
