"""DistillCSE (Xu et al. 2023, arXiv 2310.13499): distil a retriever's in-batch similarity rows into a student.

For a batch of pairs ``(q_i, d_i)`` the teacher and the student each score every query against every passage of the
batch (plus any hard negatives). Row ``i`` of each becomes a distribution over the candidates, softened by
``tau_KD``, and the student is trained to match the teacher's:

    z_ij   = cos(q_i, d_j) / tau                    (the contrastive logits, tau = 0.02)
    p^T_i  = softmax_j( z^T_ij / tau_KD )           teacher row (fixed)
    p^S_i  = softmax_j( z^S_ij / tau_KD )           student row
    L_KD   = tau_KD^2 * mean_i  -sum_j p^T_ij log p^S_ij
    L      = contrastive_weight * L_GTE(student) + kd_weight * L_KD  [+ embedding_weight * L_EMB]

**Optional embedding term** (``embedding_weight > 0``; not in DistillCSE or INDUS, off by default): ``L_EMB`` = the
mean over every text of the batch of ``1 - cos(student, teacher)``, the embedding-level distillation of Reimers &
Gurevych (2020) up to a factor 2 (for unit vectors ``|s - t|^2 = 2 (1 - cos)``). It needs a student as wide as its
teacher and pays off when the student starts in the teacher's space (a layer cut of it, pruned or not): every text
then gives a full target vector instead of one row of batch similarities.

**Where the temperature goes.** ``tau_KD = 4`` divides the *logits* ``cos / tau`` (Hinton et al.'s knowledge
distillation temperature on the logits of the contrastive classifier), so a row is ``softmax(cos / (tau * tau_KD))``
= ``softmax(12.5 cos)`` for INDUS's ``tau = 0.02``. Dividing the raw cosine by 4 instead would give
``softmax(0.25 cos)``, a nearly uniform row over cosines in [-1, 1] that carries almost no ranking signal. The
``tau_KD^2`` factor keeps the soft-target gradients on the scale of the contrastive ones (Hinton et al. 2015); turn it
off with ``scale_kd_by_t2=False``. The cross-entropy differs from KL(p^T || p^S) by the teacher's entropy, a
constant, so the gradients are the KL's. The DistillCSE paper's Group-P shuffling and teacher ensembles are not
used, as in INDUS.

**Teacher embeddings** arrive precomputed in the ``label`` column, ``(B, C * D_T)`` for ``C`` text columns (the
teacher's vectors of anchor, positive and negatives, concatenated), so teacher and student may use different
tokenizers and widths, and the teacher runs once per distinct text instead of once per step. The masks of
duplicated texts are those of :class:`~indus.retriever.losses.gte.GTELoss` and apply to both rows. Gradient caching
(``mini_batch_size``) works as for ``GTELoss``: the labels travel with the cached batch.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from indus.retriever.losses.gte import BatchView, GTELoss, gte_logits, pair_masks

DISTILLCSE_CITATION = """@inproceedings{xu2023distillcse,
  title     = {DistillCSE: Distilled Contrastive Learning for Sentence Embeddings},
  author    = {Xu, Jiahao and Shao, Wei and Chen, Lihui and Liu, Lemao},
  booktitle = {Findings of EMNLP},
  year      = {2023},
  note      = {arXiv:2310.13499}
}"""


def distillation_ce(
    student_logits: Tensor, teacher_logits: Tensor, tau_kd: float, *, reduction: str = "mean"
) -> Tensor:
    """``-sum_j softmax(t / tau_kd)_j * log_softmax(s / tau_kd)_j`` per row (masked logits very negative).

    ``reduction``: ``mean`` over rows, or ``none`` for the ``(B,)`` row values.
    """
    # at least fp32, never narrower than the logits: float64 masked logits (finfo.min) would become -inf in fp32,
    # and 0 * -inf = nan
    dtype = torch.promote_types(student_logits.dtype, torch.float32)
    teacher = torch.softmax(teacher_logits.to(dtype) / tau_kd, dim=-1)  # (B, N)
    log_student = torch.log_softmax(student_logits.to(dtype) / tau_kd, dim=-1)  # (B, N)
    rows = -(teacher * log_student).sum(dim=-1)  # (B,)
    return rows.mean() if reduction == "mean" else rows


def query_passage_rows(logits: Tensor, batch_size: int) -> Tensor:
    """The query->passages part of :func:`gte_logits`: in-batch positives, then the hard negatives.

    ``batch_size`` is the number of columns per block: ``G``, the global batch, under several processes.
    """
    b = batch_size
    return torch.cat([logits[:, :b], logits[:, 4 * b :]], dim=1)  # (B, G + kG)


class DistillCSELoss(GTELoss):
    """DistillCSE distillation (arXiv 2310.13499) plus the GTE contrastive loss (arXiv 2308.03281).

    The objective and the placement of ``tau_KD`` are in the module docstring:
    ``contrastive_weight * L_GTE + kd_weight * tau_KD^2 * CE(softmax(z^T / tau_KD), softmax(z^S / tau_KD))`` over the
    query->passages rows of the batch, ``z = cos / tau``.

    Parameters
    ----------
    model
        The student ``SentenceTransformer``.
    tau_kd
        Distillation temperature on the logits (4 in INDUS).
    temperature
        ``tau`` of the contrastive logits, shared by teacher and student rows (0.02).
    kd_weight, contrastive_weight
        Weights of the two terms.
    embedding_weight
        Weight of the optional embedding term (module docstring); needs student width = teacher width.
    scale_kd_by_t2
        Multiply the distillation term by ``tau_kd ** 2`` (Hinton et al. 2015).
    mini_batch_size, mask_duplicates, show_progress_bar, gather_across_devices
        As for :class:`~indus.retriever.losses.gte.GTELoss`; with several processes the teacher's rows are
        gathered with the student's, so both rows run over the global batch.

    Inputs
    ------
    Columns ``(anchor, positive[, negatives...])`` and a ``label`` column holding the teacher's embeddings of those
    texts, concatenated in column order: ``(C * D_T,)`` floats per pair.

    Example
    -------
    >>> import torch
    >>> from indus.models import load_sentence_transformer
    >>> student = load_sentence_transformer("random:micro")
    >>> loss = DistillCSELoss(student, tau_kd=4.0)
    >>> features = [student.preprocess(["a cat", "a dog"]), student.preprocess(["cats", "dogs"])]
    >>> teacher = torch.nn.functional.normalize(torch.randn(2, 2 * 8), dim=-1)  # (B, C * D_T), D_T = 8
    >>> bool(loss(features, teacher) > 0)
    True
    """

    def __init__(
        self,
        model: Any,
        tau_kd: float = 4.0,
        temperature: float = 0.02,
        kd_weight: float = 1.0,
        contrastive_weight: float = 1.0,
        scale_kd_by_t2: bool = True,
        mini_batch_size: int | None = None,
        mask_duplicates: bool = True,
        show_progress_bar: bool = False,
        embedding_weight: float = 0.0,
        gather_across_devices: bool = True,
    ) -> None:
        super().__init__(
            model,
            temperature=temperature,
            mini_batch_size=mini_batch_size,
            mask_duplicates=mask_duplicates,
            show_progress_bar=show_progress_bar,
            gather_across_devices=gather_across_devices,
        )
        if not tau_kd > 0:
            raise ValueError(f"tau_kd must be positive, got {tau_kd}")
        if kd_weight < 0 or contrastive_weight < 0 or embedding_weight < 0:
            raise ValueError("kd_weight, contrastive_weight and embedding_weight must be non-negative")
        self.tau_kd = tau_kd
        self.embedding_weight = embedding_weight
        self.kd_weight = kd_weight
        self.contrastive_weight = contrastive_weight
        self.scale_kd_by_t2 = scale_kd_by_t2

    def calculate_loss(
        self, reps: list[list[Tensor]], labels: Tensor | None = None, *, with_backward: bool = False
    ) -> Tensor:
        """The combined loss from per-column mini-batch embeddings and the teacher embeddings in ``labels``."""
        view = self._view or BatchView([sum(r.size(0) for r in reps[0])], 0, None)
        local = [torch.cat(r) for r in reps]  # C x (B, D_S)
        b, c = local[0].size(0), len(local)
        if labels is None or labels.ndim != 2 or labels.size(0) != b or labels.size(1) % c:
            shape = None if labels is None else tuple(labels.shape)
            raise ValueError(
                f"{type(self).__name__} needs teacher embeddings as labels of shape (B, C * D_T) with "
                f"B = {b}, C = {c}; got {shape}"
            )
        columns = [view.gather(x) for x in local]  # C x (G, D_S); this process's rows keep their graph
        queries, positives, *negatives = columns
        labels = view.gather(labels.to(queries.device, torch.float32), with_grad=False)  # (G, C * D_T)
        teacher = labels.view(view.total, c, -1).unbind(dim=1)  # C x (G, D_T)
        masks = pair_masks(view.groups, b, queries.device, offset=view.offset, total=view.total)
        student_logits, positive = gte_logits(
            queries, positives, negatives, self.temperature, masks, view.offset
        )  # (B, (4 + k) G), (B,)
        self._count_negatives(student_logits, view)
        with torch.no_grad():
            teacher_logits, _ = gte_logits(
                teacher[0], teacher[1], list(teacher[2:]), self.temperature, masks, view.offset
            )
        g = view.total
        kd = view.mean(
            distillation_ce(
                query_passage_rows(student_logits, g),
                query_passage_rows(teacher_logits, g),
                self.tau_kd,
                reduction="none",
            )
        )
        if self.scale_kd_by_t2:
            kd = kd * self.tau_kd**2
        loss = self.kd_weight * kd
        if self.embedding_weight > 0:
            if local[0].size(1) != teacher[0].size(1):
                raise ValueError(
                    f"embedding_weight > 0 needs the student as wide as the teacher: student "
                    f"{local[0].size(1)}, teacher {teacher[0].size(1)}"
                )
            own = [t[view.offset : view.offset + b] for t in teacher]  # C x (B, D_T) the teacher's vectors of local
            cos = torch.nn.functional.cosine_similarity(torch.cat(local).float(), torch.cat(own), dim=-1)  # (C B,)
            loss = loss + self.embedding_weight * view.mean(1 - cos, per_pair=c)  # over the C * G texts
        if self.contrastive_weight > 0:
            contrastive = view.mean(torch.logsumexp(student_logits, dim=1) - positive)  # the GTE loss, as gte_loss
            loss = loss + self.contrastive_weight * contrastive
        if with_backward:
            loss.backward()
            loss = loss.detach()
        return loss

    def get_config_dict(self) -> dict[str, Any]:
        """Settings written into the model card by sentence-transformers."""
        return {
            **super().get_config_dict(),
            "tau_kd": self.tau_kd,
            "kd_weight": self.kd_weight,
            "contrastive_weight": self.contrastive_weight,
            "scale_kd_by_t2": self.scale_kd_by_t2,
            "embedding_weight": self.embedding_weight,
        }

    @property
    def citation(self) -> str:
        """BibTeX of the papers the loss comes from."""
        return DISTILLCSE_CITATION + "\n" + super().citation
