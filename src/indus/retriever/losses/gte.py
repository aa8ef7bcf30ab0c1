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

Under DDP each process computes the loss over its own ``per_device_train_batch_size`` pairs (negatives are not
gathered across devices).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from sentence_transformers.base.losses.gradcache import CachedLossMixin
from torch import Tensor, nn

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


def _repeats(groups: Tensor, earlier: Tensor | None = None) -> Tensor:
    """``(N,)``: True where a text repeats one before it in ``groups`` (or any text in ``earlier``)."""
    same = groups[:, None] == groups[None, :]  # (N, N)
    repeated = torch.tril(same, diagonal=-1).any(dim=1)  # (N,)
    if earlier is not None:
        repeated |= (groups[:, None] == earlier[None, :]).any(dim=1)
    return repeated


def pair_masks(groups: list[Tensor] | None, batch_size: int, device: torch.device | str = "cpu") -> dict[str, Any]:
    """Boolean masks of the terms the GTE partition leaves out (True = drop).

    For row ``i``: a passage that is a positive of ``q_i`` (its own ``d_i``, a repeat of it, or the positive of
    another pair with the same anchor) counts only as the positive itself (column ``i``) in the query->passages
    sum, symmetrically for the queries of ``d_i``; the same-type sums drop ``q_i``'s and ``d_i``'s repeats;
    a hard negative that repeats a positive of ``q_i`` is dropped; and any other text that occurs several times
    in a column counts once (its first occurrence), so the loss depends on the distinct texts of the batch.

    Parameters
    ----------
    groups
        From :func:`text_groups` (anchor column, positive column, hard-negative columns); ``None`` means "all texts
        distinct", so only the self-similarities of the same-type sums are dropped.
    batch_size
        ``B``.

    Returns
    -------
    dict
        ``qd``, ``qq``, ``dq``, ``dd``: ``(B, B)``; ``negatives``: one ``(B, B)`` mask per hard-negative column
        (``None`` without groups).
    """
    eye = torch.eye(batch_size, dtype=torch.bool, device=device)  # (B, B)
    if groups is None:
        none = torch.zeros_like(eye)
        return {"qd": none, "qq": eye, "dq": none, "dd": eye, "negatives": None}
    g_q, g_d, *g_neg = groups
    same_anchor = g_q[:, None] == g_q[None, :]  # (B, B) q_j repeats q_i
    same_positive = g_d[:, None] == g_d[None, :]  # (B, B) d_j repeats d_i
    related = (same_anchor | same_positive).float()  # (B, B) pair j is a positive pair of q_i or of d_i
    positive_of_q = related @ same_positive.float() > 0  # (B, B) d_j's text is a positive of q_i
    anchor_of_d = related @ same_anchor.float() > 0  # (B, B) q_j's text is an anchor of d_i
    repeat_q, repeat_d = _repeats(g_q)[None, :], _repeats(g_d)[None, :]  # (1, B) a later copy of a text
    negatives = []
    seen = g_d
    for g_n in g_neg:
        positive_text = related @ (g_d[:, None] == g_n[None, :]).float() > 0  # (B, B) n_k repeats a positive of q_i
        negatives.append(positive_text | _repeats(g_n, earlier=seen)[None, :])
        seen = torch.cat([seen, g_n])
    return {"qd": ~eye & (positive_of_q | repeat_d), "qq": same_anchor | repeat_q,
            "dq": ~eye & (anchor_of_d | repeat_q), "dd": same_positive | repeat_d, "negatives": negatives}


def gte_logits(queries: Tensor, positives: Tensor, negatives: list[Tensor], temperature: float,
               masks: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
    """The scaled similarities of the GTE partition, masked terms set to ``-inf``.

    Returns
    -------
    logits : Tensor
        ``(B, 4B + kB)``: the blocks ``[q->d | q->q | q->d_i | d->d_i | q->negatives]`` of every row.
    positive : Tensor
        ``(B,)``: ``s(q_i, d_i) / tau``.
    """
    # Scores in fp32 at least, also under bf16/fp16 autocast: a softmax over ~4B logits of size 1/tau = 50.
    dtype = torch.promote_types(queries.dtype, torch.float32)
    with torch.autocast(device_type=queries.device.type, enabled=False):
        q = F.normalize(queries.to(dtype), dim=-1)  # (B, D)
        d = F.normalize(positives.to(dtype), dim=-1)  # (B, D)
        negs = [F.normalize(n.to(dtype), dim=-1) for n in negatives]  # k x (B, D)
        neg_inf = torch.finfo(q.dtype).min
        positive = (q * d).sum(dim=-1) / temperature  # (B,)
        blocks = [
            (q @ d.T / temperature).masked_fill(masks["qd"], neg_inf),  # (B, B) [i, j] = s(q_i, d_j)
            (q @ q.T / temperature).masked_fill(masks["qq"], neg_inf),  # (B, B) [i, j] = s(q_i, q_j)
            (d @ q.T / temperature).masked_fill(masks["dq"], neg_inf),  # (B, B) [i, j] = s(q_j, d_i)
            (d @ d.T / temperature).masked_fill(masks["dd"], neg_inf),  # (B, B) [i, j] = s(d_j, d_i)
        ]
        for k, n in enumerate(negs):
            block = q @ n.T / temperature  # (B, B) [i, j] = s(q_i, n_j^k)
            if masks["negatives"] is not None:
                block = block.masked_fill(masks["negatives"][k], neg_inf)
            blocks.append(block)
        return torch.cat(blocks, dim=1), positive  # (B, (4 + k) B), (B,)


def gte_loss(queries: Tensor, positives: Tensor, negatives: list[Tensor] | None = None, temperature: float = 0.02,
             groups: list[Tensor] | None = None) -> Tensor:
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

    Inputs
    ------
    Columns ``(anchor, positive)`` or ``(anchor, positive, negative_1, ...)``; no labels.

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

    def __init__(self, model: Any, temperature: float = 0.02, mini_batch_size: int | None = None,
                 mask_duplicates: bool = True, show_progress_bar: bool = False) -> None:
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
        self._groups: list[Tensor] | None = None

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor | None = None) -> Tensor:
        """The loss of one batch: one feature dict per column (anchor, positive, negatives...)."""
        features = list(sentence_features)
        if len(features) < 2:
            raise ValueError(f"{type(self).__name__} needs (anchor, positive[, negatives]) columns, "
                             f"got {len(features)}")
        # Read by calculate_loss during this call only (GradCache calls it from forward_cached).
        self._groups = text_groups(features) if self.mask_duplicates else None
        try:
            if self.mini_batch_size is not None:
                return self.forward_cached(features, labels)
            reps = [[self.model(f)["sentence_embedding"]] for f in features]  # C x [(B, D)]
            return self.calculate_loss(reps, labels)
        finally:
            self._groups = None

    def calculate_loss(self, reps: list[list[Tensor]], labels: Tensor | None = None, *,
                       with_backward: bool = False) -> Tensor:
        """The loss from per-column lists of mini-batch embeddings (GradCache's step 2)."""
        queries, positives, *negatives = [torch.cat(r) for r in reps]  # each (B, D)
        loss = gte_loss(queries, positives, negatives, self.temperature, self._groups)
        if with_backward:
            loss.backward()
            loss = loss.detach()
        return loss

    def get_config_dict(self) -> dict[str, Any]:
        """Settings written into the model card by sentence-transformers."""
        return {"temperature": self.temperature, "mini_batch_size": self.mini_batch_size,
                "mask_duplicates": self.mask_duplicates}

    @property
    def citation(self) -> str:
        """BibTeX of the paper the loss comes from."""
        return GTE_CITATION
