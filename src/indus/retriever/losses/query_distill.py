"""Query-encoder distillation: a small student that embeds queries into a big teacher's space (asymmetric retrieval).

At search time only the query is encoded; the documents were encoded once, offline, by the teacher. A student that
only has to place *queries* where the teacher does can be much smaller than one that must also encode documents
(EmbedDistill, Kim et al. 2023, arXiv 2301.12005; Wang et al. 2023, "query encoder distillation via embedding
alignment"). For a batch of pairs ``(q_i, d_i[, n_i^k])`` with teacher vectors ``t(.)`` (precomputed, in the
``label`` column as for :class:`~indus.retriever.losses.DistillCSELoss`) and the student's query vector ``s_i``:

    L_EMB = mean_i  1 - cos(s_i, t(q_i))                                   the query lands where the teacher's does
    z^S_ij = cos(s_i, t(d_j)) / tau,   z^T_ij = cos(t(q_i), t(d_j)) / tau    over every passage of the batch
    L_KD  = tau_KD^2 * mean_i  CE( softmax(z^T_i / tau_KD), softmax(z^S_i / tau_KD) )   the teacher's ranking
    L_CON = mean_i  -log softmax(z^S_i)_i                                   the judged passage first
    L     = embedding_weight * L_EMB + kd_weight * L_KD + contrastive_weight * L_CON

The passages ``d_j`` are the batch's positives and hard negatives as the *teacher* embeds them (the vectors of the
index), so the student never encodes a passage: a step costs one short text per pair. A passage repeating row
``i``'s positive (or another positive of the same anchor) is masked out of row ``i``, as in
:func:`~indus.retriever.losses.gte.pair_masks`. Under several processes each process uses its own batch (no
gathering): the passages are fixed vectors, so a bigger batch only adds candidates to the rows.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from indus.retriever.losses.distillcse import distillation_ce, query_passage_rows
from indus.retriever.losses.gte import gte_logits, pair_masks, text_groups

EMBEDDISTILL_CITATION = """@inproceedings{kim2023embeddistill,
  title     = {EmbedDistill: A Geometric Knowledge Distillation for Information Retrieval},
  author    = {Kim, Seungyeon and Rawat, Ankit Singh and Zaheer, Manzil and Jayasumana, Sadeep and
               Sadhanala, Veeranjaneyulu and Jitkrittum, Wittawat and Menon, Aditya Krishna and Fergus, Rob and
               Kumar, Sanjiv},
  booktitle = {arXiv:2301.12005},
  year      = {2023}
}"""


class QueryDistillLoss(nn.Module):
    """Distil a teacher's query embeddings into a student query encoder (module docstring for the objective).

    Parameters
    ----------
    model
        The student ``SentenceTransformer`` (it embeds the anchor column only).
    tau_kd, temperature, kd_weight, contrastive_weight, scale_kd_by_t2
        As for :class:`~indus.retriever.losses.DistillCSELoss`.
    embedding_weight
        Weight of ``1 - cos(student query, teacher query)``; needs the student as wide as the teacher.
    mask_duplicates
        Mask passages that repeat a row's positive (compared by token ids).

    Inputs
    ------
    Columns ``(anchor, positive[, negatives...])``; ``label``: the teacher's vectors of those texts, concatenated
    in column order, ``(B, C * D)``.

    Example
    -------
    >>> import torch
    >>> from indus.models import load_sentence_transformer
    >>> student = load_sentence_transformer("random:micro")  # embeds in 32 dimensions
    >>> loss = QueryDistillLoss(student)
    >>> features = [student.preprocess(["a cat", "a dog"]), student.preprocess(["cats", "dogs"])]
    >>> teacher = torch.nn.functional.normalize(torch.randn(2, 2, 32), dim=-1).view(2, 64)  # (B, C * D)
    >>> bool(loss(features, teacher) > 0)
    True
    """

    def __init__(
        self,
        model: Any,
        tau_kd: float = 4.0,
        temperature: float = 0.05,
        kd_weight: float = 1.0,
        contrastive_weight: float = 1.0,
        embedding_weight: float = 1.0,
        scale_kd_by_t2: bool = True,
        mask_duplicates: bool = True,
    ) -> None:
        super().__init__()
        if not (tau_kd > 0 and temperature > 0):
            raise ValueError(f"tau_kd and temperature must be positive, got {tau_kd}, {temperature}")
        if min(kd_weight, contrastive_weight, embedding_weight) < 0:
            raise ValueError("kd_weight, contrastive_weight and embedding_weight must be non-negative")
        self.model = model
        self.tau_kd = tau_kd
        self.temperature = temperature
        self.kd_weight = kd_weight
        self.contrastive_weight = contrastive_weight
        self.embedding_weight = embedding_weight
        self.scale_kd_by_t2 = scale_kd_by_t2
        self.mask_duplicates = mask_duplicates

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor | None = None) -> Tensor:
        """The loss of one batch: the student embeds the anchors; the passages are the teacher's vectors."""
        features = list(sentence_features)
        c = len(features)
        student = self.model(features[0])["sentence_embedding"]  # (B, D)
        b, d = student.shape
        if c < 2 or labels is None or tuple(labels.shape) != (b, c * d):
            shape = None if labels is None else tuple(labels.shape)
            raise ValueError(
                f"{type(self).__name__} needs (anchor, positive[, negatives]) columns and the teacher's vectors "
                f"as labels of shape (B, C * D) = ({b}, {c} * {d}), the student as wide as the teacher; got "
                f"{c} columns and labels {shape}"
            )
        teacher = labels.to(student.device, torch.float32).view(b, c, d).unbind(dim=1)  # C x (B, D)
        groups = text_groups(features) if self.mask_duplicates else None
        masks = pair_masks(groups, b, student.device)
        s_logits, positive = gte_logits(student, teacher[1], list(teacher[2:]), self.temperature, masks)
        s_rows = query_passage_rows(s_logits, b)  # (B, B + kB)
        loss = student.new_zeros((), dtype=torch.float32)
        if self.kd_weight > 0:
            with torch.no_grad():
                t_logits, _ = gte_logits(teacher[0], teacher[1], list(teacher[2:]), self.temperature, masks)
            kd = distillation_ce(s_rows, query_passage_rows(t_logits, b), self.tau_kd)
            loss = loss + self.kd_weight * kd * (self.tau_kd**2 if self.scale_kd_by_t2 else 1.0)
        if self.embedding_weight > 0:
            cos = F.cosine_similarity(student.float(), teacher[0], dim=-1)  # (B,)
            loss = loss + self.embedding_weight * (1 - cos).mean()
        if self.contrastive_weight > 0:
            loss = loss + self.contrastive_weight * (torch.logsumexp(s_rows, dim=1) - positive).mean()
        return loss

    def get_config_dict(self) -> dict[str, Any]:
        """Settings written into the model card by sentence-transformers."""
        return {
            "tau_kd": self.tau_kd,
            "temperature": self.temperature,
            "kd_weight": self.kd_weight,
            "contrastive_weight": self.contrastive_weight,
            "embedding_weight": self.embedding_weight,
            "scale_kd_by_t2": self.scale_kd_by_t2,
            "mask_duplicates": self.mask_duplicates,
        }

    @property
    def citation(self) -> str:
        """BibTeX of the method."""
        return EMBEDDISTILL_CITATION
