"""Run by ``tests/retriever/test_distributed.py`` under ``torchrun --nproc_per_node 2`` (gloo, CPU).

Each scenario takes one step on two processes (gradients averaged as DDP averages them) and, on rank 0, the same
step in one process on the global batch (the reference); both are saved for the test to compare. Usage::

    torchrun --standalone --nproc_per_node 2 distributed_worker.py MODEL_DIR OUT_DIR
"""

from __future__ import annotations

import copy
import logging
import sys
from datetime import timedelta
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from indus import ann
from indus.ann import write_index_sharded
from indus.models import load_sentence_transformer
from indus.retriever.bi_encoder import encode
from indus.retriever.losses import DistillCSELoss, GTELoss

# Six pairs with a hard negative each; duplicates across the two halves: pair 4 repeats pair 0's anchor,
# pair 5 repeats pair 1's positive, and pair 3's negative is pair 0's positive (a false negative).
ANCHORS = ["stellar winds", "dark matter halos", "protein folding", "ocean heat", "stellar winds", "comet dust"]
POSITIVES = [
    "mass loss of hot stars",
    "rotation curves",
    "alpha helices",
    "argo floats",
    "winds of giants",
    "rotation curves",
]
NEGATIVES = ["coral reefs", "soil carbon", "sea ice", "mass loss of hot stars", "gene regulation", "cloud feedback"]


def load(model_dir: str):
    model = load_sentence_transformer(model_dir, max_seq_length=32).double()
    return model.eval()  # no dropout: the two computations see the same network


def one_step(model, loss_cls, columns, labels, split, **kwargs):
    """(loss, grads) of ``model`` on this process's rows ``split[rank]`` or, with ``split=None``, all rows.

    With ``split``, the loss and the gradients are averaged over the processes afterwards, as data-parallel
    training (DDP) does. (DDP itself is not used here: the micro model has parameters the embedding does not
    use, which DDP only tolerates with ``find_unused_parameters=True``, and that mode refuses the loss's one
    forward call per column.)
    """
    rows = slice(*split[dist.get_rank()]) if split else slice(None)
    features = [model.preprocess(col[rows]) for col in columns]
    loss_fn = loss_cls(model, gather_across_devices=bool(split), **kwargs)
    loss = loss_fn(features, labels[rows] if labels is not None else None)
    loss.backward()
    loss = loss.detach().clone()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    if split:
        for tensor in (loss, *grads.values()):
            dist.all_reduce(tensor)
            tensor /= dist.get_world_size()
    return float(loss), grads, loss_fn.negatives_per_query


def main(model_dir: str, out: Path) -> None:
    logging.basicConfig(level=logging.INFO)  # the losses log the negatives per query
    dist.init_process_group("gloo", timeout=timedelta(seconds=60))
    rank = dist.get_rank()
    torch.manual_seed(0)
    teacher = torch.nn.functional.normalize(torch.randn(6, 3, 32, dtype=torch.float64), dim=-1).view(6, -1)
    scenarios = {
        "gte": (GTELoss, [ANCHORS, POSITIVES, NEGATIVES], None, [(0, 3), (3, 6)], {}),
        "gte_cached": (GTELoss, [ANCHORS, POSITIVES, NEGATIVES], None, [(0, 3), (3, 6)], {"mini_batch_size": 2}),
        "gte_unequal": (GTELoss, [ANCHORS, POSITIVES], None, [(0, 4), (4, 6)], {}),
        "distillcse": (
            DistillCSELoss,
            [ANCHORS, POSITIVES, NEGATIVES],
            teacher,
            [(0, 3), (3, 6)],
            {"embedding_weight": 0.5},
        ),
    }
    results = {}
    for name, (loss_cls, columns, labels, split, kwargs) in scenarios.items():
        model = load(model_dir)
        reference = copy.deepcopy(model)
        results[name] = {"dist": one_step(model, loss_cls, columns, labels, split, **kwargs)}
        if rank == 0:
            results[name]["single"] = one_step(reference, loss_cls, columns, labels, None, **kwargs)
        dist.barrier()
    # sharded encoding: 11 texts, chunks of 2; count the index writes of every process
    real_write = ann.faiss.write_index
    writes = out / f"writes-{rank}.txt"

    def counting_write(index, path):
        with writes.open("a") as fh:
            fh.write(f"{path}\n")
        real_write(index, path)

    ann.faiss.write_index = counting_write
    texts = [f"{a} and {p}" for a, p in zip(ANCHORS + POSITIVES, POSITIVES + NEGATIVES)][:11]
    model = load_sentence_transformer(model_dir, max_seq_length=32).eval()
    meta = write_index_sharded(model, texts, out / "index.faiss", kind="flat", batch_size=2, chunk_size=2)
    results["sharded"] = {"meta": meta, "rank": rank}
    if rank == 0:
        results["sharded"]["single"] = encode(model, texts, batch_size=4)
        results["sharded"]["vectors"] = np.load(out / "index.npy")
    torch.save(results, out / f"rank{rank}.pt")
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
