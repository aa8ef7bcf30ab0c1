"""Pretraining data: documents tokenised once, packed into full-length sequences, read in a seeded order.

Packing (RoBERTa's FULL-SENTENCES): the corpus becomes one stream ``doc1 </s> doc2 </s> ...`` cut into pieces of
``seq_len - 1`` tokens, each sequence starting with ``<s>``. No padding, so every position trains; only the final
partial piece is dropped. Packed sequences are written once to an Arrow file (HF ``datasets``, memory-mapped)
under a cache key of the tokenizer, the files and ``seq_len``; corpora larger than the disk cache can stream
instead (:class:`StreamingCorpus`).

The batch for (step, micro-step, rank) is a pure function of the seed and that position, so a resumed run reads
exactly the batches an uninterrupted one would.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from indus.atomic import indus_cache
from indus.data.corpus import corpus_files, iter_texts, split_corpus
from indus.errors import IndusError

CACHE_VERSION = "packed-v1"


def pack_sequences(docs: Iterable[Sequence[int]], seq_len: int, bos_id: int, eos_id: int) -> Iterator[list[int]]:
    """Pack token lists into ``[<s>] + seq_len - 1`` tokens of the stream ``doc </s> doc </s> ...``."""
    body = seq_len - 1
    buf: list[int] = []
    for doc in docs:
        if not doc:
            continue
        buf.extend(doc)
        buf.append(eos_id)
        while len(buf) >= body:
            yield [bos_id, *buf[:body]]
            del buf[:body]


def encode_texts(tokenizer, texts: Iterable[str], batch_size: int = 512) -> Iterator[list[int]]:
    """Token ids of each text, without special tokens and without truncation."""
    backend = None
    if getattr(tokenizer, "is_fast", False):
        backend = copy.deepcopy(tokenizer.backend_tokenizer)
        backend.no_truncation()
        backend.no_padding()
    batch: list[str] = []

    def flush() -> Iterator[list[int]]:
        if backend is not None:
            yield from (enc.ids for enc in backend.encode_batch(batch, add_special_tokens=False))
        else:
            yield from (tokenizer.encode(t, add_special_tokens=False) for t in batch)

    for text in texts:
        batch.append(text)
        if len(batch) == batch_size:
            yield from flush()
            batch = []
    if batch:
        yield from flush()


def _token_dtype(vocab_size: int) -> str:
    return "uint16" if vocab_size <= 2**16 else "int32"


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """The tokenised-corpus cache: ``cache_dir``, else ``$INDUS_CACHE``, else ``~/.cache/indus``."""
    return (Path(cache_dir).expanduser() if cache_dir else indus_cache()) / "packed"


def cache_key(tokenizer, files: Sequence[Path], seq_len: int, max_docs: int | None) -> str:
    """A hash of everything the packed sequences depend on: tokenizer, files (path, size, mtime), seq_len."""
    tok = (
        tokenizer.backend_tokenizer.to_str()
        if getattr(tokenizer, "is_fast", False)
        else json.dumps(tokenizer.get_vocab(), sort_keys=True)
    )
    specials = [tokenizer.bos_token_id, tokenizer.cls_token_id, tokenizer.eos_token_id, tokenizer.sep_token_id]
    stats = [(str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns) for f in files]
    blob = json.dumps([CACHE_VERSION, hashlib.sha256(tok.encode()).hexdigest(), specials, stats, seq_len, max_docs])
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def sequence_ids(tokenizer) -> tuple[int, int]:
    """The (start, separator) ids used in packing: RoBERTa ``<s>``/``</s>``, BERT ``[CLS]``/``[SEP]``."""
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.cls_token_id
    eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id
    if bos is None or eos is None:
        raise IndusError("the tokenizer has no start/separator tokens (<s> </s> or [CLS] [SEP])")
    return bos, eos


def corpus_split(train_files: Sequence[str | Path], valid_files: Sequence[str | Path]) -> tuple[list[Path], list[Path]]:
    """The training and held-out files of a pretraining config (names resolved inside the data root); a file on
    both sides is refused (:func:`indus.data.corpus.split_corpus`)."""
    if not train_files:
        raise IndusError("no training corpus: set train_files")
    return split_corpus(train_files, valid_files, from_config=True)


def _iter_docs(files: Sequence[Path], max_docs: int | None) -> Iterator[str]:
    n = 0
    for f in files:
        for text in iter_texts(f, split="all"):
            if max_docs is not None and n >= max_docs:
                return
            n += 1
            yield text


def build_packed_dataset(
    paths: Sequence[str | Path],
    tokenizer,
    seq_len: int,
    *,
    max_docs: int | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = True,
    split: str = "train",
):
    """The packed sequences of ``paths`` as a memory-mapped ``datasets.Dataset`` (column ``input_ids``, (N, L)).

    ``paths`` are files, folders or dataset names as a config gives them; a folder contributes its ``split``
    files (``"train"``, or ``"heldout"`` for the held-out set; see :mod:`indus.data.corpus`). Built once per cache
    key; the Arrow file is written under a temporary name and renamed when complete.
    """
    from datasets import Dataset, Features, Value
    from datasets import Sequence as HFSequence
    from datasets.arrow_writer import ArrowWriter
    from tqdm.auto import tqdm

    files = [f for p in paths for f in corpus_files(p, split, from_config=True)]
    if not files:
        raise IndusError("no corpus files given")
    key = cache_key(tokenizer, files, seq_len, max_docs)
    path = cache_root(cache_dir) / f"{key}.arrow"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        bos, eos = sequence_ids(tokenizer)
        features = Features({"input_ids": HFSequence(Value(_token_dtype(len(tokenizer))), length=seq_len)})
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        n = 0
        with ArrowWriter(features=features, path=str(tmp)) as writer:
            chunk: list[list[int]] = []
            seqs = pack_sequences(encode_texts(tokenizer, _iter_docs(files, max_docs)), seq_len, bos, eos)
            for seq in tqdm(
                seqs,
                desc=f"tokenising {files[0].name}{' ...' if len(files) > 1 else ''}",
                unit=" seq",
                disable=not progress,
                mininterval=2,
            ):
                chunk.append(seq)
                if len(chunk) == 4096:
                    writer.write_batch({"input_ids": chunk})
                    n += len(chunk)
                    chunk = []
            if chunk:
                writer.write_batch({"input_ids": chunk})
                n += len(chunk)
            writer.finalize()
        if n == 0:
            tmp.unlink(missing_ok=True)
            raise IndusError(f"{files[0]}: corpus too small for one sequence of {seq_len} tokens")
        os.replace(tmp, path)
    return Dataset.from_file(str(path)).with_format("numpy")


@functools.lru_cache(maxsize=4)
def _permutation(n: int, seed: int, epoch: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch]).permutation(n)


def batch_indices(position: int, batch_size: int, n: int, seed: int) -> np.ndarray:
    """Dataset rows for the ``batch_size`` sequences starting at global ``position`` of a seeded epoch order.

    Every epoch is a fresh permutation of the ``n`` rows drawn from ``(seed, epoch)``; a batch may straddle two
    epochs. Pure: the same arguments always give the same rows.
    """
    pos = np.arange(position, position + batch_size)  # (B,)
    epochs = pos // n
    out = np.empty(batch_size, dtype=np.int64)
    for e in np.unique(epochs):
        sel = epochs == e
        out[sel] = _permutation(n, seed, int(e))[pos[sel] % n]
    return out


class PackedCorpus:
    """Random access to packed sequences; ``batch(position, B)`` is a pure function of (seed, position)."""

    def __init__(self, dataset, seed: int) -> None:
        self.dataset = dataset
        self.seed = seed

    def __len__(self) -> int:
        return len(self.dataset)

    @property
    def seq_len(self) -> int:
        return int(self.dataset.features["input_ids"].length)

    def batch(self, position: int, batch_size: int) -> np.ndarray:
        """The (B, L) int64 token ids at global sequence ``position`` of the seeded order."""
        rows = batch_indices(position, batch_size, len(self.dataset), self.seed)
        return np.asarray(self.dataset[rows.tolist()]["input_ids"], dtype=np.int64)

    def head(self, n: int) -> np.ndarray:
        """The first ``n`` sequences in file order (the fixed held-out set)."""
        return np.asarray(self.dataset[: min(n, len(self.dataset))]["input_ids"], dtype=np.int64)


class StreamingCorpus:
    """Packed sequences read on the fly from a shuffled document stream (HF ``IterableDataset``).

    For corpora too large to tokenise up front. ``batch(position, B)`` returns the sequences at that position of
    the seeded stream (epochs concatenated, each reshuffled); going back, as a resume does, replays the stream
    from its start, so resuming costs re-reading up to the checkpoint and yields the same sequences.
    """

    def __init__(
        self,
        paths: Sequence[str | Path],
        tokenizer,
        seq_len: int,
        seed: int,
        shuffle_buffer: int = 10_000,
        max_docs: int | None = None,
    ) -> None:
        self.files = [f for p in paths for f in corpus_files(p, "train", from_config=True)]
        self.tokenizer = tokenizer
        self.seq_len = seq_len
        self.seed = seed
        self.shuffle_buffer = shuffle_buffer
        self.max_docs = max_docs
        self._pos = 0
        self._it: Iterator[list[int]] | None = None

    def _epoch(self, epoch: int) -> Iterator[list[int]]:
        from datasets import IterableDataset

        files, max_docs = self.files, self.max_docs
        docs = IterableDataset.from_generator(lambda: ({"text": t} for t in _iter_docs(files, max_docs)))
        docs = docs.shuffle(seed=self.seed, buffer_size=self.shuffle_buffer)
        docs.set_epoch(epoch)
        bos, eos = sequence_ids(self.tokenizer)
        return pack_sequences(encode_texts(self.tokenizer, (d["text"] for d in docs)), self.seq_len, bos, eos)

    def _stream(self) -> Iterator[list[int]]:
        epoch = 0
        while True:
            n = 0
            for seq in self._epoch(epoch):
                n += 1
                yield seq
            if n == 0:
                raise IndusError(f"{self.files[0]}: corpus too small for one sequence of {self.seq_len} tokens")
            epoch += 1

    def batch(self, position: int, batch_size: int) -> np.ndarray:
        """The (B, L) token ids at global ``position`` of the stream."""
        if self._it is None or position < self._pos:
            self._it, self._pos = self._stream(), 0
        for _ in range(position - self._pos):
            next(self._it)
        self._pos = position + batch_size
        return np.asarray([next(self._it) for _ in range(batch_size)], dtype=np.int64)
