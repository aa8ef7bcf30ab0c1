"""Several processes as one: gathers that keep gradients, and sharded encoding of a collection.

Launched under ``torchrun`` / ``accelerate launch`` / ``srun`` (a ``torch.distributed`` process group is
initialised), these helpers make the processes act on one global batch or one collection; in a single
process every one of them is the identity, so the same code runs on a laptop.

**Gathers.** :func:`gather_rows` concatenates each process's ``(B_r, ...)`` rows into ``(sum_r B_r, ...)``
in rank order. With ``with_grad`` it is sentence-transformers' ``all_gather_with_grad`` (the reference behind
its losses' ``gather_across_devices``): the local rows keep their graph and, through the backward of
``torch.distributed.nn.all_gather``, receive the gradients that every process's loss sends them. Processes may
hold different numbers of rows (a last, short batch): rows are padded to the largest count for the gather and
the padding is dropped after it.

**Sharded encoding.** :func:`encode_sharded` splits a collection into contiguous shards, one per process;
each process encodes its shard in chunks and writes the vectors straight into its rows of one ``.npy`` file
(a memory map on a file system all processes see); the main process then owns the complete array and builds
the one index from it (:func:`indus.ann.write_index_sharded`), while the others wait.
:func:`encode_gathered` does the same without a shared file: each chunk goes to the main process over the
process group, straight into its rows of the one array (for ``indus eval ir``, whose index lives in memory).

**The CLI under a launcher.** ``torchrun ... -m indus retriever index`` and ``... -m indus eval ir`` run their
work inside :func:`sharded_encoding`: it joins the launched processes in a gloo group (when nothing has yet)
and switches sharding on for the block, so :func:`indus.retriever.index.build_index` and
:class:`indus.evaluation.ir.IREvaluator` encode the corpus across the processes and the main process alone
writes and scores. Outside such a block nothing shards, even in a process group: the pipeline runs its
evaluations on the main process only, and a collective there would wait forever for the others.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor

from indus.embedding import encode
from indus.errors import IndusError

T = TypeVar("T")
#: How long a process of a group made by :func:`sharded_encoding` waits at a collective: the others wait
#: there while the main process builds the index (an HNSW graph of 10^7 vectors takes hours on a CPU).
#: ``INDUS_DIST_TIMEOUT_S`` overrides it.
GROUP_TIMEOUT_S = 24 * 3600
_SHARDING: ContextVar[bool] = ContextVar("indus_sharded_encoding", default=False)


def is_distributed() -> bool:
    """Whether a process group with more than one process is running."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank_and_world() -> tuple[int, int]:
    """``(rank, world_size)``; ``(0, 1)`` outside a process group."""
    if is_distributed():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main_process() -> bool:
    """Rank 0, or the only process."""
    return rank_and_world()[0] == 0


def barrier() -> None:
    """Wait for every process (no-op in one process)."""
    if is_distributed():
        dist.barrier()


def gather_sizes(n: int, device: torch.device | str = "cpu") -> list[int]:
    """Every process's ``n``, in rank order (``[n]`` in one process).

    One small collective; under NCCL ``device`` must be the process's GPU.
    """
    if not is_distributed():
        return [n]
    from sentence_transformers.util import all_gather

    local = torch.tensor([n], dtype=torch.long, device=device)
    return [int(s) for s in all_gather(local).tolist()]


def gather_rows(tensor: Tensor, sizes: list[int] | None = None, *, with_grad: bool = False) -> Tensor:
    """Concatenate every process's rows of ``tensor`` in rank order: ``(B_r, ...)`` -> ``(sum_r B_r, ...)``.

    Parameters
    ----------
    tensor
        This process's rows.
    sizes
        Every process's row count (:func:`gather_sizes`), if known; otherwise gathered here. A single size
        means "this process alone": the tensor is returned as is.
    with_grad
        Keep the graph of the local rows (sentence-transformers' ``all_gather_with_grad``); otherwise the
        result is detached except for the local rows.
    """
    if not is_distributed() or (sizes is not None and len(sizes) == 1):
        return tensor  # one process, or a caller that keeps to its own rows
    from sentence_transformers.util import all_gather, all_gather_with_grad

    rank, _ = rank_and_world()
    sizes = sizes if sizes is not None else gather_sizes(tensor.size(0), tensor.device)
    if sizes[rank] != tensor.size(0):
        raise ValueError(f"rank {rank}: sizes say {sizes[rank]} rows, the tensor has {tensor.size(0)}")
    largest = max(sizes)
    padded = tensor
    if tensor.size(0) < largest:
        pad = tensor.new_zeros((largest - tensor.size(0), *tensor.shape[1:]))
        padded = torch.cat([tensor, pad])  # (largest, ...)
    gathered = all_gather_with_grad(padded) if with_grad else all_gather(padded)  # (W * largest, ...)
    if all(s == largest for s in sizes):
        return gathered
    return torch.cat([gathered[r * largest : r * largest + s] for r, s in enumerate(sizes)])  # (sum_r B_r, ...)


def shard_bounds(n: int, rank: int, world: int) -> tuple[int, int]:
    """``[start, stop)`` of ``rank``'s contiguous shard of ``n`` items; sizes differ by at most one."""
    size, extra = divmod(n, world)
    start = rank * size + min(rank, extra)
    return start, start + size + (rank < extra)


@contextmanager
def _main_first() -> Any:
    """The main process runs the block first (creating a file), then the others."""
    main = is_main_process()
    if not main:
        barrier()
    try:
        yield
    finally:
        if main:
            barrier()


def encode_sharded(
    model: Any,
    texts: Sequence[str],
    out: str | Path,
    *,
    batch_size: int = 64,
    chunk_size: int = 8192,
    dim: int | None = None,
    encode_fn: Callable[..., np.ndarray] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray | None:
    """Encode ``texts`` across the running processes into one ``(N, D)`` float32 ``.npy`` file.

    Each process encodes its contiguous shard (:func:`shard_bounds`) ``chunk_size`` texts at a time and
    writes the vectors into its rows of ``out`` (a memory map, so no process holds more than a chunk of
    vectors). The main process creates ``out``; all processes must see the same file system.

    Parameters
    ----------
    model
        A ``SentenceTransformer`` (each process holds its own copy, on its own device).
    texts
        The collection, indexable (every process reads only its shard).
    out
        The ``.npy`` file to write (replaced).
    batch_size
        Texts per encoder batch.
    chunk_size
        Texts encoded and written per step.
    dim
        Embedding width; read from ``model`` when ``None``.
    encode_fn
        ``encode_fn(model, texts, batch_size=...) -> (n, D) float32``; default
        :func:`indus.retriever.bi_encoder.encode` (normalised embeddings).
    progress
        Called as ``progress(done, shard_size)`` on each process.

    Returns
    -------
    numpy.memmap or None
        On the main process, the complete array (a read-only memory map), returned once every process has
        written its shard; ``None`` on the others. The main process alone builds and writes the index from
        it; a :func:`barrier` after that keeps the others from going on before the index exists.
    """
    encode_fn = encode_fn or encode
    out = Path(out)
    rank, world = rank_and_world()
    n = len(texts)
    if dim is None:
        width = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        dim = int(width())
    with _main_first():
        if rank == 0:
            out.parent.mkdir(parents=True, exist_ok=True)
            array = np.lib.format.open_memmap(out, mode="w+", dtype=np.float32, shape=(n, dim))  # (N, D)
            del array
    array = np.load(out, mmap_mode="r+")  # (N, D), this process writes its rows
    start, stop = shard_bounds(n, rank, world)
    for begin in range(start, stop, chunk_size):
        end = min(stop, begin + chunk_size)
        emb = encode_fn(model, [texts[i] for i in range(begin, end)], batch_size=batch_size)  # (end - begin, D)
        if emb.shape != (end - begin, dim):
            raise ValueError(f"the encoder returned {emb.shape} for {end - begin} texts of width {dim}")
        array[begin:end] = emb
        if progress is not None:
            progress(end - start, stop - start)
    array.flush()
    del array
    if not is_distributed():
        return np.load(out, mmap_mode="r")
    barrier()  # every shard is written (and its memory map closed) before the main process reads
    return np.load(out, mmap_mode="r") if rank == 0 else None


def encode_gathered(
    model: Any,
    texts: Sequence[str],
    *,
    batch_size: int = 64,
    chunk_size: int = 8192,
    dim: int | None = None,
    encode_fn: Callable[..., np.ndarray] | None = None,
) -> np.ndarray | None:
    """Encode ``texts`` across the running processes into one ``(N, D)`` float32 array on the main process.

    Each process encodes its contiguous shard (:func:`shard_bounds`) ``chunk_size`` texts at a time; after each
    chunk every process sends its chunk to the main process (``gather_object``), which copies it into its rows.
    No file system is shared; the main process holds the array plus one chunk per process, the others one
    chunk. In one process it is ``encode_fn`` on all texts, chunk by chunk.

    Parameters
    ----------
    model, texts, batch_size, chunk_size, dim, encode_fn
        As for :func:`encode_sharded`.

    Returns
    -------
    numpy.ndarray or None
        The complete array on the main process, ``None`` on the others.
    """
    encode_fn = encode_fn or encode
    rank, world = rank_and_world()
    n = len(texts)
    if dim is None:
        width = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        dim = int(width())
    start, stop = shard_bounds(n, rank, world)
    first, last = shard_bounds(n, 0, world)
    rounds = -(-(last - first) // chunk_size)  # shard 0 is the largest: every process joins as many gathers
    out = np.empty((n, dim), dtype=np.float32) if rank == 0 else None  # (N, D)
    for step in range(rounds):
        begin = min(stop, start + step * chunk_size)
        end = min(stop, begin + chunk_size)
        emb = (
            encode_fn(model, [texts[i] for i in range(begin, end)], batch_size=batch_size)
            if end > begin
            else np.zeros((0, dim), dtype=np.float32)
        )  # (end - begin, D)
        if emb.shape != (end - begin, dim):
            raise ValueError(f"the encoder returned {emb.shape} for {end - begin} texts of width {dim}")
        if not is_distributed():
            out[begin:end] = emb
            continue
        received: list[Any] | None = [None] * world if rank == 0 else None
        dist.gather_object((begin, emb), received, dst=0)
        if rank == 0:
            for row, part in received:
                out[row : row + len(part)] = part
    return out


def run_on_main(fn: Callable[[], T]) -> T:
    """Run ``fn`` on the main process only and hand its result to every process (one broadcast).

    A failure on the main process is raised there as it is and, on the others, as an :class:`IndusError` that
    quotes it, so no process waits forever for a result that will not come. ``fn``'s result must pickle.
    """
    if not is_distributed():
        return fn()
    box: list[Any] = [None]
    failure: BaseException | None = None
    if is_main_process():
        try:
            box = [("ok", fn())]
        except BaseException as exc:  # noqa: BLE001 - every failure is sent, then raised again here
            failure = exc
            box = [("failed", " ".join(str(exc).split()) or type(exc).__name__)]
    dist.broadcast_object_list(box, src=0)
    if failure is not None:
        raise failure
    status, value = box[0]
    if status != "ok":
        raise IndusError(f"the main process failed: {value}")
    return value


def sharding_active() -> bool:
    """Whether the caller runs inside :func:`sharded_encoding` with more than one process."""
    return _SHARDING.get() and is_distributed()


@contextmanager
def sharded_encoding(timeout_s: float | None = None) -> Iterator[tuple[int, int]]:
    """Join the processes of a launch (``torchrun``, ``accelerate launch``) and shard encodings in the block.

    A launcher sets ``WORLD_SIZE`` (and ``RANK``, ``MASTER_ADDR``...); when it is above 1 and no process
    group exists yet, a gloo group is made (CPU collectives, which are all that sharded encoding needs, also on
    GPU machines; each process encodes on its ``LOCAL_RANK`` GPU). The group stays until the process exits and
    later blocks reuse it: a second ``init_process_group`` on torchrun's store hangs. One process: nothing
    happens.

    Parameters
    ----------
    timeout_s
        How long a collective may wait (default :data:`GROUP_TIMEOUT_S`, or ``INDUS_DIST_TIMEOUT_S``).

    Yields
    ------
    tuple of int
        ``(rank, world_size)``.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and dist.is_available() and not dist.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))  # "cuda" = this process's GPU
        timeout = timeout_s if timeout_s is not None else float(os.environ.get("INDUS_DIST_TIMEOUT_S", GROUP_TIMEOUT_S))
        dist.init_process_group("gloo", timeout=timedelta(seconds=timeout))
        atexit.register(dist.destroy_process_group)
    token = _SHARDING.set(True)
    try:
        yield rank_and_world()
    finally:
        _SHARDING.reset(token)
