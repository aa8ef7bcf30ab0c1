"""Dynamic masking proportions, special tokens never masked, and the masked-only loss against the plain one."""

from __future__ import annotations

import pytest
import torch

from indus.encoder.masking import IGNORE_INDEX, MaskingSpec, mask_tokens
from indus.encoder.mlm import MaskedLM, masked_lm_loss, masked_lm_loss_reference

SPEC = MaskingSpec(mask_id=4, vocab_size=1000, special_ids=(0, 1, 2, 3, 4))


def _ids(b: int = 64, n: int = 512, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 1000, (b, n), generator=g)
    ids[:, 0] = 0  # <s>
    ids[:, 100::97] = 2  # </s> document separators
    return ids


def test_masking_proportions_are_robertas():
    ids = _ids()
    inputs, labels = mask_tokens(ids, SPEC, torch.Generator().manual_seed(1))
    maskable = ~torch.isin(ids, torch.tensor(SPEC.special_ids))
    selected = labels != IGNORE_INDEX
    n_sel = int(selected.sum())
    assert abs(n_sel / int(maskable.sum()) - 0.15) < 0.005  # ~33k tokens: 5 standard errors is 0.005
    assert torch.equal(labels[selected], ids[selected])
    as_mask = (inputs == SPEC.mask_id) & selected
    kept = (inputs == ids) & selected
    randomised = selected & ~as_mask & ~kept
    assert abs(int(as_mask.sum()) / n_sel - 0.8) < 0.015
    assert abs(int(randomised.sum()) / n_sel - 0.1) < 0.01
    # a random draw can equal the original token (1 in 995), so "kept" is 10% plus a hair
    assert abs(int(kept.sum()) / n_sel - 0.1) < 0.01
    assert torch.equal(inputs[~selected], ids[~selected]), "unselected tokens must be untouched"


def test_special_tokens_never_masked_and_never_inserted():
    ids = _ids()
    for seed in range(5):
        inputs, labels = mask_tokens(ids, SPEC, torch.Generator().manual_seed(seed))
        special = torch.isin(ids, torch.tensor(SPEC.special_ids))
        assert (labels[special] == IGNORE_INDEX).all()
        assert torch.equal(inputs[special], ids[special])
        randomised = (labels != IGNORE_INDEX) & (inputs != ids) & (inputs != SPEC.mask_id)
        assert not torch.isin(inputs[randomised], torch.tensor(SPEC.special_ids)).any()


def test_masking_is_dynamic_but_reproducible():
    ids = _ids(4, 128)
    a = mask_tokens(ids, SPEC, torch.Generator().manual_seed(7))
    b = mask_tokens(ids, SPEC, torch.Generator().manual_seed(7))
    c = mask_tokens(ids, SPEC, torch.Generator().manual_seed(8))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])


@pytest.fixture(scope="module")
def micro_mlm():
    from transformers import AutoModelForMaskedLM

    from indus.encoder.presets import roberta_config

    torch.manual_seed(0)
    model = AutoModelForMaskedLM.from_config(
        roberta_config("micro", vocab_size=1000, max_length=128), attn_implementation="sdpa"
    )
    return model.eval()


def test_masked_only_loss_equals_full_vocabulary_loss(micro_mlm):
    ids = _ids(4, 64)
    inputs, labels = mask_tokens(ids, SPEC, torch.Generator().manual_seed(3))
    fast, n = masked_lm_loss(micro_mlm, inputs, labels)
    plain = masked_lm_loss_reference(micro_mlm, inputs, labels)
    assert int(n) == int((labels != IGNORE_INDEX).sum()) > 0
    assert torch.allclose(fast, plain, atol=1e-6, rtol=1e-6)


def test_masked_only_gradients_equal_full_vocabulary_gradients(micro_mlm):
    ids = _ids(2, 64, seed=5)
    inputs, labels = mask_tokens(ids, SPEC, torch.Generator().manual_seed(4))
    grads = []
    for fn in (
        lambda: masked_lm_loss(micro_mlm, inputs, labels)[0],
        lambda: masked_lm_loss_reference(micro_mlm, inputs, labels),
    ):
        micro_mlm.zero_grad()
        fn().backward()
        grads.append({n: p.grad.clone() for n, p in micro_mlm.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        assert torch.allclose(grads[0][name], grads[1][name], atol=1e-6, rtol=1e-4), name


def test_objective_with_nothing_masked_is_zero_not_nan(micro_mlm):
    objective = MaskedLM(micro_mlm, SPEC)
    ids = _ids(1, 16)
    loss, n = objective(ids, torch.full_like(ids, IGNORE_INDEX))
    assert float(loss.detach()) == 0.0 and int(n) == 0
