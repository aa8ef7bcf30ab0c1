"""Peak-FLOPs lookup and MFU, RNG round trip, and the checkpoint manifest on its own."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from indus.encoder.checkpoint import CheckpointError, rng_state, set_rng_state, verify, write_manifest
from indus.encoder.hardware import mfu, peak_flops


def test_peak_flops_by_device_name():
    assert peak_flops("NVIDIA H100 80GB HBM3") == 989e12
    assert peak_flops("NVIDIA H200") == 989e12
    assert peak_flops("NVIDIA A100-SXM4-80GB") == 312e12
    assert peak_flops("NVIDIA L40S") == 362e12 and peak_flops("NVIDIA L4") == 121e12
    assert peak_flops("Some Future Accelerator") is None
    assert mfu(10**8, 1000.0, torch.device("cpu")) is None


def test_rng_state_round_trip():
    state = rng_state()
    a = (random.random(), np.random.rand(), torch.rand(3))
    set_rng_state(state)
    b = (random.random(), np.random.rand(), torch.rand(3))
    assert a[0] == b[0] and a[1] == b[1] and torch.equal(a[2], b[2])


def test_manifest_detects_any_change(tmp_path):
    (tmp_path / "a.bin").write_bytes(b"x" * 100)
    (tmp_path / "b.json").write_text("{}")
    write_manifest(tmp_path)
    verify(tmp_path)
    (tmp_path / "b.json").write_text("{ }")
    with pytest.raises(CheckpointError, match="truncated or altered"):
        verify(tmp_path)
    (tmp_path / "b.json").write_text("[]")
    with pytest.raises(CheckpointError, match="SHA-256"):
        verify(tmp_path)
