"""Fixtures for the encoder tests: a self-made corpus, a small BPE trained on it, micro-sized configs."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

WORDS = (
    "solar wind plasma magnetic field protein cell climate ocean star galaxy orbit energy aerosol "
    "the of and in is a to with from by"
).split()


def write_corpus(path: Path, n_docs: int, seed: int) -> Path:
    rng = random.Random(seed)
    docs = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 60))) for _ in range(n_docs)]
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in docs), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def corpus_dir(tmp_path_factory) -> Path:
    """``train.jsonl`` (200 documents) and ``valid.jsonl`` (40) of random sentences over a small vocabulary."""
    d = tmp_path_factory.mktemp("corpus")
    write_corpus(d / "train.jsonl", 200, seed=0)
    write_corpus(d / "valid.jsonl", 40, seed=1)
    return d


@pytest.fixture(scope="session")
def bpe_dir(corpus_dir, tmp_path_factory) -> Path:
    """A 300-token uncased byte-level BPE trained on the corpus."""
    from indus.tokenizer import train_bpe

    out = tmp_path_factory.mktemp("bpe") / "tok"
    train_bpe([corpus_dir / "train.jsonl"], 300, out_dir=out, lowercase=True, show_progress=False)
    return out


@pytest.fixture()
def micro_cfg(corpus_dir, bpe_dir, tmp_path) -> dict:
    """Settings of a seconds-long micro pretraining run (2 layers x 32)."""
    return {
        "preset": "micro",
        "tokenizer": str(bpe_dir),
        "train_files": [str(corpus_dir / "train.jsonl")],
        "valid_files": [str(corpus_dir / "valid.jsonl")],
        "seq_len": 32,
        "batch_size": 8,
        "max_steps": 30,
        "lr": 3e-3,
        "eval_every": 10,
        "checkpoint_every": 10,
        "log_every": 1,
        "valid_max_seqs": 32,
        "cache_dir": str(tmp_path / "cache"),
    }
