"""MiniLMv2 relation loss: zero for identical relations, positive otherwise, equal to a hand-written reference."""

from __future__ import annotations

import math

import pytest
import torch

from indus.encoder.distill import check_relation_heads, default_teacher_layer
from indus.encoder.minilmv2 import MiniLMv2Loss, QKVCapture
from indus.errors import IndusError


def _relation(states, i, r, heads):
    """Row-softmax of the scaled dot products of relation head ``r`` of example ``i``, as nested lists."""
    n, d = states.shape[1], states.shape[-1] // heads
    a = states[i, :, r * d : (r + 1) * d].tolist()
    rows = []
    for q in range(n):
        logits = [sum(x * y for x, y in zip(a[q], a[k], strict=True)) / math.sqrt(d) for k in range(n)]
        m = max(logits)
        z = sum(math.exp(v - m) for v in logits)
        rows.append([math.exp(v - m) / z for v in logits])
    return rows


def _reference(teacher, student, heads):
    """KL(teacher || student) of softmax(A A^T / sqrt(d)) per relation head, by loops over plain floats."""
    total = 0.0
    for t_states, s_states in zip(teacher, student, strict=True):
        b, n, _ = t_states.shape
        acc = 0.0
        for i in range(b):
            for r in range(heads):
                pt, ps = _relation(t_states, i, r, heads), _relation(s_states, i, r, heads)
                for q in range(n):
                    acc += sum(p * (math.log(p) - math.log(s)) for p, s in zip(pt[q], ps[q], strict=True))
        total += acc / (b * heads * n)
    return total


def test_zero_for_identical_relations_and_positive_otherwise():
    torch.manual_seed(0)
    loss = MiniLMv2Loss(relation_heads=4)
    t = [torch.randn(2, 6, 32) for _ in range(3)]
    assert float(loss(t, t)) == pytest.approx(0.0, abs=1e-6)
    # relations depend only on dot products within a head: rotating every head's vectors keeps them
    q = torch.linalg.qr(torch.randn(8, 8))[0]
    rotated = [x.view(2, 6, 4, 8) @ q for x in t]
    assert float(loss(t, [r.reshape(2, 6, 32) for r in rotated])) == pytest.approx(0.0, abs=1e-5)
    s = [torch.randn(2, 6, 16, requires_grad=True) for _ in range(3)]
    value = loss(t, s)
    assert float(value.detach()) > 0
    value.backward()
    assert all(x.grad is not None and x.grad.abs().sum() > 0 for x in s)


def test_matches_hand_written_reference():
    torch.manual_seed(1)
    t = [torch.randn(2, 4, 12) for _ in range(3)]
    s = [torch.randn(2, 4, 6) for _ in range(3)]
    got = float(MiniLMv2Loss(relation_heads=3)(t, s))
    assert got == pytest.approx(_reference(t, s, 3), rel=1e-5)


def test_padding_is_ignored():
    torch.manual_seed(2)
    t = [torch.randn(1, 5, 8) for _ in range(3)]
    s = [torch.randn(1, 5, 8) for _ in range(3)]
    mask = torch.tensor([[1, 1, 1, 0, 0]])
    masked = float(MiniLMv2Loss(2)(t, s, mask))
    trimmed = float(MiniLMv2Loss(2)([x[:, :3] for x in t], [x[:, :3] for x in s]))
    assert masked == pytest.approx(trimmed, rel=1e-5)


def test_relation_heads_must_divide_both_hidden_sizes():
    check_relation_heads(4, 256, 128)
    with pytest.raises(IndusError, match="student hidden size 100"):
        check_relation_heads(8, 256, 100)
    with pytest.raises(ValueError, match="divisible"):
        MiniLMv2Loss(5)([torch.randn(1, 2, 8)] * 3, [torch.randn(1, 2, 10)] * 3)


def test_upper_middle_teacher_layer():
    assert [default_teacher_layer(n) for n in (24, 12, 6, 4, 2, 1)] == [21, 11, 5, 3, 1, 1]


def test_hooks_capture_the_attention_projections():
    from transformers import AutoModel

    from indus.encoder.presets import roberta_config

    model = AutoModel.from_config(roberta_config("micro", vocab_size=100, max_length=16)).eval()
    cap = QKVCapture(model.encoder.layer[1])
    ids = torch.randint(5, 100, (2, 7))
    model(input_ids=ids)
    q, k, v = cap.qkv()
    assert q.shape == k.shape == v.shape == (2, 7, 32)
    cap.remove()
    cap.outputs.clear()
    model(input_ids=ids)
    assert not cap.outputs


def test_relations_are_fp32_inside_bf16_autocast():
    torch.manual_seed(3)
    t = [torch.randn(2, 16, 32) for _ in range(3)]
    s = [x + 0.01 * torch.randn_like(x) for x in t]
    plain = float(MiniLMv2Loss(4)(t, s))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast = float(MiniLMv2Loss(4)(t, s))
    assert under_autocast == pytest.approx(plain, rel=1e-5)
