"""benchmarks/gpu_check.py: skips cleanly without a GPU; its FLOP and MFU arithmetic is right on toy cases."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"
_spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
gpu_check = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gpu_check)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the skip path is for machines without CUDA")
def test_cpu_machine_skips_with_a_message_and_exit_0(tmp_path):
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(tmp_path / "gpu_check")], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "no CUDA device" in done.stdout
    assert not list(tmp_path.iterdir())  # nothing written


def test_flops_per_token_on_a_toy_encoder():
    # 1 layer, h = 2, f = 4, L = 3: forward 2*4*4 + 2*2*3*2 + 2*2*2*4 = 32 + 24 + 32 = 88 per token
    assert gpu_check.flops_per_token(1, 2, 4, 3, head_fraction=0.0, training=False) == 88
    assert gpu_check.flops_per_token(1, 2, 4, 3, head_fraction=0.0) == 3 * 88
    # the MLM head: 2 (h^2 + h V) where it runs; V = 10 -> 2 * (4 + 20) = 48, at 25% of positions 12
    assert gpu_check.flops_per_token(1, 2, 4, 3, vocab=10, head_fraction=0.25, training=False) == 88 + 12
    # RoBERTa-base at 512 tokens, head at 15% of 50,265: ~6.6e8 forward per token, near 2 x 85M non-embedding
    base = gpu_check.flops_per_token(12, 768, 3072, 512, vocab=50_265, head_fraction=0.15, training=False)
    assert 2 * 85e6 < base < 2 * 85e6 * 1.3


def test_mfu_and_matmul_arithmetic():
    assert gpu_check.mfu(1000.0, 264.0, 1e6) == pytest.approx(0.264)
    assert gpu_check.mfu(1000.0, 264.0, None) is None
    assert gpu_check.matmul_flops(4) == 128.0


def test_model_shapes_and_synthetic_corpus(tmp_path):
    assert gpu_check.model_shape("base") == {"layers": 12, "hidden": 768, "ffn": 3072}
    path = gpu_check.synthetic_corpus(tmp_path, docs=5, words_per_doc=7)
    import gzip
    import json

    lines = gzip.open(path, "rt").read().splitlines()
    assert len(lines) == 5 and all(len(json.loads(line)["text"].split()) == 7 for line in lines)
