"""The GTE "improved contrastive loss" (Li et al. 2023, arXiv 2308.03281), with optional gradient caching.

For a batch of pairs ``(q_i, d_i)``, with cosine similarity ``s`` and temperature ``tau``, the loss of pair ``i`` is

    L_i = -log( exp(s(q_i, d_i) / tau) / Z_i )

    Z_i =   sum_j exp(s(q_i, d_j) / tau)         query -> every passage (its positive and the in-batch negatives)
          + sum_j exp(s(q_i, q_j) / tau)         query -> every other query            (j != i)
          + sum_j exp(s(q_j, d_i) / tau)         every query -> the passage            (j = i included)
          + sum_j exp(s(d_j, d_i) / tau)         every other passage -> the passage    (j != i)

and the batch loss is the mean over ``i`` (GTE section 3.2, eq. 2; INDUS uses it with ``tau = 0.02``).

**The positive counts twice in Z.** The paper writes the two cross sums over all ``j``, so ``s(q_i, d_i)`` appears
once in the query->passages sum and once in the queries->passage sum; only the two same-type sums exclude
``j = i`` (a text is never its own negative). We keep the formula exactly as written, which is also what
``sentence_transformers.losses.MultipleNegativesRankingLoss`` computes with all four ``directions`` and
``partition_mode="joint"``. Since ``log(2 e^p + R) = log 2 + log(e^p + R / 2)``, it equals the "positive once"
loss with every negative term weighted 1/2, plus ``log 2``: bounded below by ``log 2``, slightly softer on negatives.

**Hard negatives.** Extra columns ``(q_i, d_i, n_i^1, ...)`` add ``sum_j exp(s(q_i, n_j^k) / tau)`` to the
query->passages sum: every query sees every hard negative of the batch, as in in-batch MNRL.

**False negatives.** Pair files hold several positives per anchor and several anchors per positive (a cited abstract
appears with each of its citances). When ``mask_duplicates`` is on, texts are compared by their token ids and ``Z``
runs over distinct texts: a passage that is a positive of ``q_i`` (a repeat of ``d_i``, or the positive of another
pair with the same anchor) is not a negative of ``q_i``, and likewise for the anchors of ``d_i``; the same-type sums
drop repeats of ``q_i`` and ``d_i``; a hard negative that repeats a positive is dropped; any other repeated text
counts once (see :func:`pair_masks`). Without duplicates this is exactly the formula above. A no-duplicates batch
sampler (``BatchSamplers.NO_DUPLICATES``) keeps such pairs out of a batch in the first place; the mask makes the loss
right even when the sampler cannot.

**Gradient caching** (GradCache, Gao et al. 2021, arXiv 2101.06983). With ``mini_batch_size`` set, the batch is
embedded in mini-batches without a graph, the loss and its gradient with respect to the embeddings are computed on the
whole batch, and each mini-batch is then re-encoded with a graph (replaying its RNG state, so dropout draws the same
masks) and back-propagated with the cached embedding gradients. Memory is that of one mini-batch; the gradients are
those of the uncached loss. The machinery is sentence-transformers' :class:`CachedLossMixin` (the one behind
``CachedMultipleNegativesRankingLoss``: DDP synchronisation, gradient-accumulation scaling, RNG replay).

**Cross-device negatives.** Under data parallelism (``torchrun``, ``accelerate launch``; ``W`` processes of
``B`` pairs each) the partition runs over the global batch of ``G = W B`` pairs, as in one process: each
process gathers every process's embeddings (its own rows keep their graph, sentence-transformers'
``all_gather_with_grad``, the reference behind its losses' ``gather_across_devices``), computes the rows
``Z_i`` of its own ``B`` pairs against all ``G``, and returns its share of the global mean; data-parallel
gradient averaging then yields exactly the gradient of the loss of the global batch in one process
(``tests/retriever/test_distributed.py`` checks loss and gradients on two processes). Duplicate masking
compares texts across processes by a hash of their tokens. On by default (``gather_across_devices``); a
query then sees about ``(4 + k) G`` negatives instead of ``(4 + k) B``, logged on the first step.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from sentence_transformers.base.losses.gradcache import CachedLossMixin
from torch import Tensor, nn

from indus.distributed import gather_rows, gather_sizes, is_distributed, rank_and_world

logger = logging.getLogger(__name__)

GTE_CITATION = """@article{li2023towards,
  title   = {Towards General Text Embeddings with Multi-stage Contrastive Learning},
  author  = {Li, Zehan and Zhang, Xin and Zhang, Yanzhao and Long, Dingkun and Xie, Pengjun and Zhang, Meishan},
  journal = {arXiv preprint arXiv:2308.03281},
  year    = {2023}
}"""


def text_groups(features: list[dict[str, Tensor]]) -> list[Tensor]:
    """Give every distinct input text of a batch one integer id, shared across columns.

    Two rows get the same id exactly when the model sees the same tokens (the text after truncation).

    Parameters
    ----------
    features
        One tokenized column per entry (``input_ids`` and ``attention_mask``), each ``(B, L_c)``.

    Returns
    -------
    list of Tensor
        One ``(B,)`` long tensor per column.
    """
    ids: dict[tuple[int, ...], int] = {}
    groups = []
    for feature in features:
        input_ids = feature["input_ids"].tolist()
        mask = feature.get("attention_mask")
        lengths = mask.sum(dim=1).tolist() if mask is not None else [len(row) for row in input_ids]
        column = [ids.setdefault(tuple(row[:n]), len(ids)) for row, n in zip(input_ids, lengths)]
        groups.append(torch.tensor(column, dtype=torch.long, device=feature["input_ids"].device))
    return groups


def text_hashes(features: list[dict[str, Tensor]]) -> list[Tensor]:
    """Like :func:`text_groups`, but ids that agree across processes: a 64-bit hash of each text's tokens.

    Equal token sequences get equal ids in every process, so the ids of all processes' batches can be gathered
    and compared (cross-device duplicate masking); a collision between two different texts has probability
    about ``n^2 / 2^64``.
    """
    groups = []
    for feature in features:
        input_ids = feature["input_ids"]
        mask = feature.get("attention_mask")
        lengths = mask.sum(dim=1).tolist() if mask is not None else [input_ids.size(1)] * input_ids.size(0)
        rows = input_ids.to("cpu", torch.int64).numpy()
        column = [
            int.from_bytes(hashlib.blake2b(row[:n].tobytes(), digest_size=8).digest(), "little", signed=True)
            for row, n in zip(rows, lengths)
        ]
        groups.append(torch.tensor(column, dtype=torch.long, device=input_ids.device))
    return groups


def _dense_ids(groups: Tensor) -> Tensor:
    """``(N,)`` ids in ``[0, N)``, equal exactly where ``groups`` are equal (no host sync, unlike ``unique``)."""
    return torch.searchsorted(torch.sort(groups).values, groups)


def _repeats(groups: Tensor, earlier: Tensor | None = None) -> Tensor:
    """``(N,)``: True where a text repeats one before it in ``groups`` (or any text in ``earlier``)."""
    ids = _dense_ids(groups)  # (N,)
    position = torch.arange(groups.numel(), device=groups.device)  # (N,)
    first = torch.full_like(position, groups.numel()).scatter_reduce(0, ids, position, reduce="amin")  # first of id
    repeated = first[ids] != position  # (N,)
    if earlier is not None:
        repeated |= torch.isin(groups, earlier)
    return repeated


def pair_masks(
    groups: list[Tensor] | None,
    batch_size: int,
    device: torch.device | str = "cpu",
    *,
    offset: int = 0,
    total: int | None = None,
) -> dict[str, Any]:
    """Boolean masks of the terms the GTE partition leaves out (True = drop), for rows ``offset:offset+B``.

    For row ``i``: a passage that is a positive of ``q_i`` (its own ``d_i``, a repeat of it, or the positive of
    another pair with the same anchor) counts only as the positive itself (column ``i``) in the query->passages
    sum, symmetrically for the queries of ``d_i``; the same-type sums drop ``q_i``'s and ``d_i``'s repeats;
    a hard negative that repeats a positive of ``q_i`` is dropped; and any other text that occurs several times
    in a column counts once (its first occurrence), so the loss depends on the distinct texts of the batch.

    With several processes the columns are the global batch (every process's pairs, in rank order) and the rows
    this process's pairs, which start at ``offset``; the masks of those rows equal the same rows of the masks of
    the global batch computed in one process.

    Parameters
    ----------
    groups
        From :func:`text_groups` or :func:`text_hashes`, over the global batch: anchor column, positive column,
        hard-negative columns, each ``(G,)``. ``None`` means "all texts distinct", so only the
        self-similarities of the same-type sums are dropped.
    batch_size
        ``B``, the rows.
    offset, total
        First row in the global batch, and ``G`` (default ``B``; read from ``groups`` when given).

    Returns
    -------
    dict
        ``qd``, ``qq``, ``dq``, ``dd``: ``(B, G)``; ``negatives``: one ``(B, G)`` mask per hard-negative column
        (``None`` without groups).
    """
    total = groups[0].numel() if groups is not None else (total or batch_size)
    rows = torch.arange(offset, offset + batch_size, device=device)  # (B,)
    eye = torch.zeros(batch_size, total, dtype=torch.bool, device=device)  # (B, G)
    eye[torch.arange(batch_size, device=device), rows] = True
    if groups is None:
        none = torch.zeros_like(eye)
        return {"qd": none, "qq": eye, "dq": none, "dd": eye, "negatives": None}
    g_q, g_d, *g_neg = groups
    same_anchor = g_q[rows, None] == g_q[None, :]  # (B, G) q_j repeats q_i
    same_positive = g_d[rows, None] == g_d[None, :]  # (B, G) d_j repeats d_i
    related = (same_anchor | same_positive).float()  # (B, G) pair j is a positive pair of q_i or of d_i
    # One compact id per distinct text of any column; "is a positive/anchor text of row i" as (B, U) tables
    # (O(B G) work, where a (B, G) @ (G, G) product would be O(B G^2)).
    ids = _dense_ids(torch.cat([g_q, g_d, *g_neg]))  # ((2 + k) G,)
    id_q, id_d, *id_neg = ids.split(total)
    n_ids = ids.numel()
    positive_texts = related.new_zeros(batch_size, n_ids).index_add_(1, id_d, related) > 0  # (B, U)
    anchor_texts = related.new_zeros(batch_size, n_ids).index_add_(1, id_q, related) > 0  # (B, U)
    positive_of_q = positive_texts[:, id_d]  # (B, G) d_j's text is a positive of q_i
    anchor_of_d = anchor_texts[:, id_q]  # (B, G) q_j's text is an anchor of d_i
    repeat_q, repeat_d = _repeats(g_q)[None, :], _repeats(g_d)[None, :]  # (1, G) a later copy of a text
    negatives = []
    seen = g_d
    for g_n, i_n in zip(g_neg, id_neg):
        positive_text = positive_texts[:, i_n]  # (B, G) n_j^k repeats a positive of q_i
        negatives.append(positive_text | _repeats(g_n, earlier=seen)[None, :])
        seen = torch.cat([seen, g_n])
    return {
        "qd": ~eye & (positive_of_q | repeat_d),
        "qq": same_anchor | repeat_q,
        "dq": ~eye & (anchor_of_d | repeat_q),
        "dd": same_positive | repeat_d,
        "negatives": negatives,
    }


def gte_logits(
    queries: Tensor,
    positives: Tensor,
    negatives: list[Tensor],
    temperature: float,
    masks: dict[str, Tensor],
    offset: int = 0,
) -> tuple[Tensor, Tensor]:
    """The scaled similarities of the GTE partition, masked terms set to ``-inf``.

    ``queries``, ``positives`` and each hard-negative column are the global batch, ``(G, D)``; the rows are the
    ``B`` pairs from ``offset`` on (``B`` = the rows of ``masks``; in one process ``B = G``, ``offset = 0``).

    Returns
    -------
    logits : Tensor
        ``(B, 4G + kG)``: the blocks ``[q->d | q->q | q->d_i | d->d_i | q->negatives]`` of every row.
    positive : Tensor
        ``(B,)``: ``s(q_i, d_i) / tau``.
    """
    b = masks["qd"].size(0)
    # Scores in fp32 at least, also under bf16/fp16 autocast: a softmax over ~4G logits of size 1/tau = 50.
    dtype = torch.promote_types(queries.dtype, torch.float32)
    with torch.autocast(device_type=queries.device.type, enabled=False):
        q_all = F.normalize(queries.to(dtype), dim=-1)  # (G, D)
        d_all = F.normalize(positives.to(dtype), dim=-1)  # (G, D)
        negs = [F.normalize(n.to(dtype), dim=-1) for n in negatives]  # k x (G, D)
        q, d = q_all[offset : offset + b], d_all[offset : offset + b]  # (B, D) this process's pairs
        neg_inf = torch.finfo(q.dtype).min
        positive = (q * d).sum(dim=-1) / temperature  # (B,)
        blocks = [
            (q @ d_all.T / temperature).masked_fill(masks["qd"], neg_inf),  # (B, G) [i, j] = s(q_i, d_j)
            (q @ q_all.T / temperature).masked_fill(masks["qq"], neg_inf),  # (B, G) [i, j] = s(q_i, q_j)
            (d @ q_all.T / temperature).masked_fill(masks["dq"], neg_inf),  # (B, G) [i, j] = s(q_j, d_i)
            (d @ d_all.T / temperature).masked_fill(masks["dd"], neg_inf),  # (B, G) [i, j] = s(d_j, d_i)
        ]
        for k, n in enumerate(negs):
            block = q @ n.T / temperature  # (B, G) [i, j] = s(q_i, n_j^k)
            if masks["negatives"] is not None:
                block = block.masked_fill(masks["negatives"][k], neg_inf)
            blocks.append(block)
        return torch.cat(blocks, dim=1), positive  # (B, (4 + k) G), (B,)


def gte_loss(
    queries: Tensor,
    positives: Tensor,
    negatives: list[Tensor] | None = None,
    temperature: float = 0.02,
    groups: list[Tensor] | None = None,
) -> Tensor:
    """The GTE improved contrastive loss of a batch of embeddings (see the module docstring).

    Parameters
    ----------
    queries, positives
        ``(B, D)`` embeddings (normalised here).
    negatives
        Hard-negative columns, each ``(B, D)``.
    temperature
        ``tau``.
    groups
        Text ids from :func:`text_groups` to mask duplicates; ``None`` treats all texts as distinct.
    """
    negatives = list(negatives or [])
    masks = pair_masks(groups, queries.size(0), queries.device)
    logits, positive = gte_logits(queries, positives, negatives, temperature, masks)  # (B, (4 + k) B), (B,)
    log_z = torch.logsumexp(logits, dim=1)  # (B,)
    return (log_z - positive).mean()


@dataclass
class BatchView:
    """This process's place in the global batch, for one forward pass.

    ``sizes``: every process's pair count (rank order); ``rank``; ``groups``: text ids of the global batch
    (``None`` without duplicate masking).
    """

    sizes: list[int]
    rank: int
    groups: list[Tensor] | None

    @property
    def offset(self) -> int:
        """First row of this process's pairs in the global batch."""
        return sum(self.sizes[: self.rank])

    @property
    def total(self) -> int:
        """``G``, the pairs of the global batch."""
        return sum(self.sizes)

    def gather(self, tensor: Tensor, *, with_grad: bool = True) -> Tensor:
        """``(B_r, ...)`` -> ``(G, ...)``: every process's rows in rank order (identity in one process)."""
        return gather_rows(tensor, self.sizes, with_grad=with_grad) if len(self.sizes) > 1 else tensor

    def mean(self, per_row: Tensor, per_pair: int = 1) -> Tensor:
        """The global mean, as this process's share: ``sum(local terms) * W / (per_pair * G)``.

        Data-parallel training averages the processes' gradients, so this makes the averaged gradient that of
        the mean over the global batch even when processes hold different numbers of pairs (with equal
        numbers it is the local mean).
        """
        return per_row.sum() * len(self.sizes) / (per_pair * self.total)


class GTELoss(CachedLossMixin, nn.Module):
    """GTE improved contrastive loss over in-batch negatives (arXiv 2308.03281), optionally gradient-cached.

    The objective, the counting of the positive, hard negatives and duplicate masking are described in the module
    docstring: per pair ``-log(exp(s(q_i, d_i)/tau) / Z_i)`` where ``Z_i`` sums query->passages, query->queries,
    queries->passage and passages->passage in the batch.

    Parameters
    ----------
    model
        The ``SentenceTransformer`` being trained (embeddings are normalised inside the loss: cosine similarity).
    temperature
        ``tau``; 0.02 as in INDUS.
    mini_batch_size
        Encode in mini-batches of this many texts with gradient caching (GradCache, arXiv 2101.06983); ``None``
        encodes each column in one pass. Same loss and gradients either way.
    mask_duplicates
        Drop false negatives that repeat the row's own texts (compared by token ids).
    show_progress_bar
        A bar over the cached mini-batches.
    gather_across_devices
        Under several processes, every process's pairs are negatives of every query (module docstring);
        no effect in one process.

    Inputs
    ------
    Columns ``(anchor, positive)`` or ``(anchor, positive, negative_1, ...)``; no labels.

    Attributes
    ----------
    negatives_per_query
        The mean number of negative terms in a row's partition ``Z_i`` (after masking), measured on the first
        batch and whenever the global batch size changes, and logged then.
    batch_stats
        ``{"global_batch", "negatives_per_query"}`` at the largest global batch measured (a full batch, not a
        short last one); the training summary reports it. Empty before the first batch.

    Example
    -------
    >>> from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
    >>> from datasets import Dataset
    >>> from indus.models import load_sentence_transformer
    >>> model = load_sentence_transformer("random:micro")
    >>> loss = GTELoss(model, temperature=0.02, mini_batch_size=2)
    >>> data = Dataset.from_dict({"anchor": ["a cat", "a dog", "a cow"], "positive": ["cats", "dogs", "cows"]})
    >>> features = [model.preprocess(data[c]) for c in ("anchor", "positive")]
    >>> float(loss(features, None)) > 0.69  # bounded below by log 2
    True
    """

    def __init__(
        self,
        model: Any,
        temperature: float = 0.02,
        mini_batch_size: int | None = None,
        mask_duplicates: bool = True,
        show_progress_bar: bool = False,
        gather_across_devices: bool = True,
    ) -> None:
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        if mini_batch_size is not None and mini_batch_size < 1:
            raise ValueError(f"mini_batch_size must be a positive integer or None, got {mini_batch_size}")
        self.model = model
        self.temperature = temperature
        self.mini_batch_size = mini_batch_size
        self.mask_duplicates = mask_duplicates
        self.show_progress_bar = show_progress_bar
        self.uses_gradient_cache = mini_batch_size is not None
        self.gather_across_devices = gather_across_devices
        self.negatives_per_query: float | None = None
        self.batch_stats: dict[str, Any] = {}
        self._counted_for: tuple[int, int] | None = None
        self._view: BatchView | None = None

    @property
    def _groups(self) -> list[Tensor] | None:
        return self._view.groups if self._view is not None else None

    def _batch_view(self, features: list[dict[str, Tensor]]) -> BatchView:
        """Where this process's pairs sit in the global batch, and the text ids of that batch."""
        if not (self.gather_across_devices and is_distributed()):
            return BatchView(
                [features[0]["input_ids"].size(0)], 0, text_groups(features) if self.mask_duplicates else None
            )
        rank, _ = rank_and_world()
        device = features[0]["input_ids"].device
        sizes = gather_sizes(features[0]["input_ids"].size(0), device)
        groups = None
        if self.mask_duplicates:
            groups = [gather_rows(h, sizes) for h in text_hashes(features)]  # (2 + k) x (G,)
        return BatchView(sizes, rank, groups)

    def _count_negatives(self, logits: Tensor, view: BatchView) -> None:
        """Measure and log the negatives per query once per global batch shape (one host sync then)."""
        key = (view.total, logits.size(1))
        if self._counted_for == key:
            return
        with torch.no_grad():
            finite = (logits > torch.finfo(logits.dtype).min).sum(dim=1).float()  # (B,) unmasked terms
            local = torch.stack([finite.sum(), finite.new_tensor(finite.numel())])
            total = gather_rows(local[None], [1] * len(view.sizes)).sum(dim=0)  # (2,) over every process
        # the positive s(q_i, d_i) is two of the terms (query->passages and queries->passage)
        self.negatives_per_query = float(total[0] / total[1]) - 2
        self._counted_for = key
        if view.total >= self.batch_stats.get("global_batch", 0):
            self.batch_stats = {"global_batch": view.total, "negatives_per_query": round(self.negatives_per_query, 2)}
        logger.info(
            "%s: %d processes x %s pairs = a global batch of %d; %.1f negatives per query",
            type(self).__name__,
            len(view.sizes),
            view.sizes[0] if len(set(view.sizes)) == 1 else view.sizes,
            view.total,
            self.negatives_per_query,
        )

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor | None = None) -> Tensor:
        """The loss of one batch: one feature dict per column (anchor, positive, negatives...)."""
        features = list(sentence_features)
        if len(features) < 2:
            raise ValueError(
                f"{type(self).__name__} needs (anchor, positive[, negatives]) columns, got {len(features)}"
            )
        # Read by calculate_loss during this call only (GradCache calls it from forward_cached).
        self._view = self._batch_view(features)
        try:
            if self.mini_batch_size is not None:
                return self.forward_cached(features, labels)
            reps = [[self.model(f)["sentence_embedding"]] for f in features]  # C x [(B, D)]
            return self.calculate_loss(reps, labels)
        finally:
            self._view = None

    def calculate_loss(
        self, reps: list[list[Tensor]], labels: Tensor | None = None, *, with_backward: bool = False
    ) -> Tensor:
        """The loss from per-column lists of mini-batch embeddings (GradCache's step 2)."""
        view = self._view or BatchView([sum(r.size(0) for r in reps[0])], 0, None)
        columns = [view.gather(torch.cat(r)) for r in reps]  # C x (G, D); this process's rows keep their graph
        queries, positives, *negatives = columns
        b = view.sizes[view.rank]
        masks = pair_masks(view.groups, b, queries.device, offset=view.offset, total=view.total)
        logits, positive = gte_logits(queries, positives, negatives, self.temperature, masks, view.offset)
        self._count_negatives(logits, view)
        loss = view.mean(torch.logsumexp(logits, dim=1) - positive)  # (B,) -> the global mean's share
        if with_backward:
            loss.backward()
            loss = loss.detach()
        return loss

    def get_config_dict(self) -> dict[str, Any]:
        """Settings written into the model card by sentence-transformers."""
        return {
            "temperature": self.temperature,
            "mini_batch_size": self.mini_batch_size,
            "mask_duplicates": self.mask_duplicates,
            "gather_across_devices": self.gather_across_devices,
        }

    @property
    def citation(self) -> str:
        """BibTeX of the paper the loss comes from."""
        return GTE_CITATION
