"""Cross-device negatives and sharded encoding: two processes (torchrun, gloo) equal one process on the global batch.

The single-process tests check the pieces (the masks of a process's rows are those rows of the global masks, the
share of the global mean, shards); the two-process run (``distributed_worker.py``, launched once per session)
checks the whole: loss and gradients after data-parallel averaging equal those of one process on the global batch,
for GTE (plain, gradient-cached, unequal shards) and DistillCSE, and sharded encoding writes the vectors of one
process and one index, once.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from indus.distributed import encode_sharded, gather_rows, rank_and_world, shard_bounds
from indus.retriever.losses import GTELoss
from indus.retriever.losses.gte import BatchView, gte_logits, pair_masks, text_groups, text_hashes

WORKER = Path(__file__).with_name("distributed_worker.py")
SRC = Path(__file__).resolve().parents[2] / "src"


def _groups(rng: np.random.Generator, g: int, k: int) -> list[torch.Tensor]:
    """Text ids with many repeats within and across columns (ids drawn from a small pool)."""
    return [torch.as_tensor(rng.integers(0, g, size=g)) for _ in range(2 + k)]


@pytest.mark.parametrize("k", [0, 2])
def test_masks_of_a_process_rows_are_those_rows_of_the_global_masks(k):
    rng = np.random.default_rng(k)
    g = 12
    for trial in range(5):
        groups = _groups(rng, g, k) if trial else None
        full = pair_masks(groups, g)
        for offset, b in ((0, 5), (5, 4), (9, 3)):
            part = pair_masks(groups, b, offset=offset, total=g)
            for key in ("qd", "qq", "dq", "dd"):
                assert torch.equal(part[key], full[key][offset : offset + b]), (trial, key, offset)
            for mine, theirs in zip(part["negatives"] or [], full["negatives"] or []):
                assert torch.equal(mine, theirs[offset : offset + b])


def test_row_logits_and_global_mean_share_add_up_to_the_global_loss():
    """Summing every process's share (sizes 3, 1, 2) gives the loss of the global batch, masks included."""
    torch.manual_seed(0)
    q, d, n = (torch.randn(6, 5, dtype=torch.float64) for _ in range(3))
    groups = [torch.tensor([0, 1, 0, 2, 3, 4]), torch.tensor([5, 6, 7, 6, 8, 9]), torch.tensor([5, 10, 11, 12, 13, 1])]
    full_masks = pair_masks(groups, 6)
    logits, pos = gte_logits(q, d, [n], 0.05, full_masks)
    expected = (torch.logsumexp(logits, 1) - pos).mean()
    sizes, total = [3, 1, 2], torch.zeros((), dtype=torch.float64)
    for rank in range(3):
        view = BatchView(sizes, rank, groups)
        masks = pair_masks(groups, sizes[rank], offset=view.offset, total=view.total)
        part, part_pos = gte_logits(q, d, [n], 0.05, masks, view.offset)
        total += view.mean(torch.logsumexp(part, 1) - part_pos) / len(sizes)  # what DDP's gradient averaging sums
    assert float(total) == pytest.approx(float(expected), rel=1e-12)


def test_text_hashes_agree_with_text_groups(micro_model_dir):
    from indus.models import load_sentence_transformer

    model = load_sentence_transformer(micro_model_dir, max_seq_length=8)
    features = [
        model.preprocess(["a b", "c", "a b", "long text " * 10]),
        model.preprocess(["c", "a b", "d", "long text " * 12]),
    ]  # the two long texts agree after truncation
    ids, hashes = text_groups(features), text_hashes(features)
    flat_ids, flat_hashes = torch.cat(ids).tolist(), torch.cat(hashes).tolist()
    for i in range(len(flat_ids)):
        for j in range(len(flat_ids)):
            assert (flat_ids[i] == flat_ids[j]) == (flat_hashes[i] == flat_hashes[j])
    assert flat_hashes[3] == flat_hashes[7]


def test_one_process_gathers_nothing_and_the_flag_changes_nothing(micro_model_dir):
    from indus.models import load_sentence_transformer

    assert rank_and_world() == (0, 1)
    x = torch.randn(3, 2)
    assert gather_rows(x, with_grad=True) is x
    model = load_sentence_transformer(micro_model_dir, max_seq_length=16).double().eval()
    features = [model.preprocess(["a", "b", "a"]), model.preprocess(["x", "y", "z"])]
    on = GTELoss(model)(features)
    off = GTELoss(model, gather_across_devices=False)(features)
    assert float(on.detach()) == float(off.detach())
    loss = GTELoss(model, mask_duplicates=False)
    loss(features)
    assert loss.negatives_per_query == pytest.approx(4 * 3 - 2 - 2)  # 4 blocks of 3, minus q_i->q_i, d_i->d_i


def test_shards_cover_the_collection_once():
    for n in (0, 1, 7, 10):
        for world in (1, 2, 3, 4):
            bounds = [shard_bounds(n, r, world) for r in range(world)]
            assert bounds[0][0] == 0 and bounds[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
            sizes = [b - a for a, b in bounds]
            assert max(sizes) - min(sizes) <= 1


def test_encode_sharded_in_one_process_streams_into_the_array(tmp_path, micro_model_dir):
    from indus.models import load_sentence_transformer
    from indus.retriever.bi_encoder import encode

    model = load_sentence_transformer(micro_model_dir, max_seq_length=16).eval()
    texts = [f"text number {i}" for i in range(7)]
    calls = []

    def encode_fn(m, chunk, batch_size):
        calls.append(len(chunk))
        return encode(m, chunk, batch_size=batch_size)

    out = encode_sharded(model, texts, tmp_path / "v.npy", chunk_size=3, batch_size=2, encode_fn=encode_fn)
    assert calls == [3, 3, 1]  # never more than a chunk of vectors at a time
    assert isinstance(out, np.memmap) and out.shape == (7, model.get_embedding_dimension())
    np.testing.assert_allclose(np.asarray(out), encode(model, texts, batch_size=4), atol=1e-5)


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory, micro_model_dir):
    """Run the worker once on two processes; the per-rank results."""
    out = tmp_path_factory.mktemp("distributed")
    env = {
        **os.environ,
        "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        "OMP_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "HF_HUB_OFFLINE": "1",
    }
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(WORKER),
        str(micro_model_dir),
        str(out),
    ]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    return out, [torch.load(out / f"rank{r}.pt", weights_only=False) for r in (0, 1)], done.stderr


@pytest.mark.slow  # one torchrun launch of two processes: 30-60 s on 2 busy cores
@pytest.mark.parametrize("scenario", ["gte", "gte_cached", "gte_unequal", "distillcse"])
def test_two_processes_equal_one_process_on_the_global_batch(two_processes, scenario):
    _, ranks, _ = two_processes
    loss, grads, negatives = ranks[0][scenario]["dist"]
    ref_loss, ref_grads, ref_negatives = ranks[0][scenario]["single"]
    assert loss == pytest.approx(ref_loss, rel=1e-9, abs=1e-12)
    assert negatives == pytest.approx(ref_negatives)  # the same partition: every process's texts are negatives
    assert set(grads) == set(ref_grads) and len(grads) > 4
    for name, grad in grads.items():
        torch.testing.assert_close(grad, ref_grads[name], rtol=1e-7, atol=1e-10, msg=name)
        torch.testing.assert_close(ranks[1][scenario]["dist"][1][name], grad)  # DDP: both processes agree
    assert sum(float(g.abs().sum()) for g in grads.values()) > 0


@pytest.mark.slow
def test_cross_device_negatives_are_more_than_one_process_would_see(two_processes):
    _, ranks, stderr = two_processes
    negatives = ranks[0]["gte_unequal"]["dist"][2]
    assert negatives > 4 * 4 - 2  # a process with 4 pairs alone sees at most 4 x 4 - 2 terms per query
    assert "negatives per query" in stderr


@pytest.mark.slow
def test_sharded_encoding_writes_one_process_vectors_and_one_index(two_processes):
    out, ranks, _ = two_processes
    sharded = ranks[0]["sharded"]
    np.testing.assert_allclose(sharded["vectors"], sharded["single"], atol=1e-5)
    assert sharded["meta"]["count"] == 11 and ranks[1]["sharded"]["meta"] is None
    writes = {
        r: (out / f"writes-{r}.txt").read_text().splitlines() if (out / f"writes-{r}.txt").exists() else []
        for r in (0, 1)
    }
    assert len(writes[0]) == 1 and writes[1] == []
    from indus.ann import read_faiss_index

    index = read_faiss_index(out / "index.faiss")
    assert index.ntotal == 11
    assert index.search(sharded["single"][:3], 1)[1][:, 0].tolist() == [0, 1, 2]
