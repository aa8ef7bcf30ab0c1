"""Training pairs as Hugging Face datasets, one per source, so that every batch holds pairs of a single source.

INDUS (like GTE) draws each batch from one data source: in-batch negatives from the same source are harder, and a
batch never mixes e.g. title->abstract pairs with claim->evidence pairs. Passing the resulting ``DatasetDict`` to
``SentenceTransformerTrainer`` gives exactly that: its multi-dataset batch sampler (``proportional``: every pair once
per epoch, sources visited in proportion to their size; ``round_robin``: sources in turn) takes each batch from one
dataset.

Columns: ``anchor``, ``positive``, and ``negative`` when every pair of the source has a hard negative.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from indus.data.beir import qrels_pairs, split_beir_name
from indus.data.pairs import Pair, read_pairs
from indus.data.registry import resolve_dataset
from indus.errors import IndusError


@dataclass
class PairData:
    """Pairs grouped by source, with the counts a run summary reports."""

    by_source: dict[str, list[Pair]]
    files: list[str]
    negatives: dict[str, bool] = field(default_factory=dict)

    @property
    def counts(self) -> dict[str, int]:
        """Pairs per source."""
        return {s: len(p) for s, p in self.by_source.items()}

    @property
    def n_pairs(self) -> int:
        """Total number of pairs."""
        return sum(self.counts.values())

    def texts(self) -> list[str]:
        """Every distinct text (anchors, positives, negatives), in first-seen order."""
        seen: dict[str, None] = {}
        for pairs in self.by_source.values():
            for p in pairs:
                seen.setdefault(p.anchor)
                seen.setdefault(p.positive)
                if p.negative is not None:
                    seen.setdefault(p.negative)
        return list(seen)


def load_pairs(
    paths: Sequence[str | Path], *, max_pairs_per_source: int | None = None, hard_negatives: bool = True, seed: int = 0
) -> PairData:
    """Read pair files or folders and group them by source.

    Parameters
    ----------
    paths
        ``.jsonl`` / ``.jsonl.gz`` files or folders of them (see :func:`indus.data.pairs.read_pairs`), names
        under the data root (``pairs``, ``pairs/scifact-train``), or ``BEIR_FOLDER:SPLIT`` (``ir/scifact:train``:
        a collection's judgements as pairs, :func:`indus.data.beir.qrels_pairs`).
    max_pairs_per_source
        Keep a random sample of at most this many pairs of each source (seeded).
    hard_negatives
        Keep the ``negative`` column of a source when every one of its pairs has one.
    seed
        Seed of the sampling.
    """
    if not paths:
        raise IndusError("no pairs given: pass --pairs FILE|DIR (JSON lines with anchor, positive[, source, negative])")
    by_source: dict[str, list[Pair]] = defaultdict(list)
    files = []
    for name in paths:
        beir = split_beir_name(name)
        if beir is not None:  # a collection's own judgements: query -> judged document (title + text)
            folder, split = beir
            files.append(f"{folder}:{split}")
            for query, doc, _ in qrels_pairs(folder, split):
                by_source[f"{folder.name}-{split}"].append(Pair(query, doc, f"{folder.name}-{split}"))
            continue
        path = resolve_dataset(name)
        files.append(str(path))
        for pair in read_pairs(path):
            by_source[pair.source].append(pair)
    if not by_source:
        raise IndusError(f"{', '.join(files)}: no pairs found")
    rng = random.Random(seed)
    out: dict[str, list[Pair]] = {}
    negatives: dict[str, bool] = {}
    for source in sorted(by_source):
        pairs = by_source[source]
        if max_pairs_per_source is not None and len(pairs) > max_pairs_per_source:
            pairs = rng.sample(pairs, max_pairs_per_source)
        out[source] = pairs
        negatives[source] = hard_negatives and all(p.negative is not None for p in pairs)
    return PairData(out, files, negatives)


def pair_datasets(
    data: PairData, *, one_source_per_batch: bool = True, extra_columns: dict[str, dict[str, list[Any]]] | None = None
):
    """``datasets`` objects for ``SentenceTransformerTrainer``.

    Parameters
    ----------
    data
        From :func:`load_pairs`.
    one_source_per_batch
        A ``DatasetDict`` with one dataset per source (each batch from one source); otherwise a single shuffled
        ``Dataset`` (negative columns only if every source has them).
    extra_columns
        ``{source: {column: values}}`` appended to each source's dataset (e.g. the teacher embeddings in
        ``label``).
    """
    from datasets import Dataset, DatasetDict, concatenate_datasets

    extra_columns = extra_columns or {}
    use_negatives = (
        data.negatives if one_source_per_batch else dict.fromkeys(data.by_source, all(data.negatives.values()))
    )
    parts = {}
    for source, pairs in data.by_source.items():
        columns: dict[str, list[Any]] = {"anchor": [p.anchor for p in pairs], "positive": [p.positive for p in pairs]}
        if use_negatives[source]:
            columns["negative"] = [p.negative for p in pairs]
        columns.update(extra_columns.get(source, {}))
        parts[source] = Dataset.from_dict(columns)
    if one_source_per_batch:
        return DatasetDict(parts)
    return concatenate_datasets(list(parts.values()))


def source_of_batches(batches: Sequence[Sequence[int]], sizes: dict[str, int]) -> list[Counter]:
    """For batches of indices into the concatenated sources (in ``sizes`` order), the sources each batch draws on."""
    bounds = []
    start = 0
    for name, n in sizes.items():
        bounds.append((start, start + n, name))
        start += n
    return [Counter(next(name for lo, hi, name in bounds if lo <= i < hi) for i in batch) for batch in batches]
