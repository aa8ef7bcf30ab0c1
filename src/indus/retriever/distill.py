"""DistillCSE retriever distillation: ``indus retriever distill`` and ``distill_retriever``.

INDUS-RETRIEVER-SMALL (arXiv 2405.10725) is distilled from RETRIEVER-BASE with DistillCSE (arXiv 2310.13499): the
cross-entropy between the teacher's and the student's in-batch similarity rows, both softened by ``tau_KD = 4``,
plus the contrastive loss (:class:`~indus.retriever.losses.DistillCSELoss` states the objective and where the
temperature goes). The teacher encodes every distinct text of the pairs once, before training, with its own
tokenizer; its embeddings ride along in the ``label`` column, so teacher and student may use different tokenizers
and widths and the teacher costs nothing per step.

**Query encoders** (``query_only``): the student learns to embed only the anchors (queries) where the teacher does
(:class:`~indus.retriever.losses.QueryDistillLoss`); the documents keep the teacher's vectors, encoded once offline,
so per-query cost is the small student's while the documents keep the teacher's quality. Its run folder records
the teacher as its document model (:func:`~indus.models.documents_model`): ``indus retriever index
--model TEACHER --query-model STUDENT`` and ``indus eval ir --model STUDENT`` use it.

Students: a model folder; ``random:<preset>`` (random weights, the teacher's tokenizer unless ``@<tokenizer>`` is
given); or a layer cut ``layers:N@MODEL`` / ``minilm-layers:N`` (:mod:`indus.retriever.bi_encoder`), e.g. the lower
layers of the teacher itself.

Example
-------
>>> cfg = RetrieverDistillConfig(teacher="runs/teacher", student="layers:3@runs/teacher",
...                              pairs=["pairs/scifact-train"])
>>> summary = distill_retriever(cfg, "runs/student")  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from indus.atomic import atomic_path
from indus.config import config_hash
from indus.errors import IndusError
from indus.models import model_record
from indus.outdir import prepare_output_dir
from indus.retriever.bi_encoder import load_bi_encoder
from indus.retriever.data import pair_datasets
from indus.retriever.losses import DistillCSELoss, QueryDistillLoss
from indus.retriever.trainer import TrainSettings, finished_summary, fit


@dataclass
class RetrieverDistillConfig(TrainSettings):
    """``indus retriever distill``: teacher, student and the DistillCSE weights plus the shared training settings."""

    teacher: str = field(default="minilm", metadata={"help": "teacher retriever: minilm | a folder"})
    student: str = field(
        default="minilm-layers:3",
        metadata={"help": "student: a folder | random:<preset>[@<tokenizer>] | layers:N@MODEL | minilm-layers:N"},
    )
    tau_kd: float = field(default=4.0, metadata={"help": "distillation temperature on the logits cos / tau"})
    kd_weight: float = field(default=1.0, metadata={"help": "weight of the distillation term"})
    contrastive_weight: float = field(default=1.0, metadata={"help": "weight of the GTE contrastive term"})
    embedding_weight: float = field(
        default=0.0,
        metadata={
            "help": "weight of 1 - cos(student, teacher) per text (not in DistillCSE; needs equal widths); 0: off"
        },
    )
    scale_kd_by_t2: bool = field(default=True, metadata={"help": "multiply the distillation term by tau_kd^2"})
    teacher_batch_size: int = field(default=64, metadata={"help": "batch size of the teacher's encoding pass"})
    teacher_max_seq_length: int | None = field(
        default=None, metadata={"help": "teacher truncation (default: max_seq_length)"}
    )
    teacher_cache: str | None = field(
        default=None,
        metadata={"help": "folder caching teacher embeddings per text (per teacher, weights, length): new texts only"},
    )
    query_only: bool = field(
        default=False,
        metadata={
            "help": "distil a query encoder only (QueryDistillLoss): the student embeds queries into the teacher's "
            "space and the documents stay the teacher's (index with --model TEACHER --query-model STUDENT)"
        },
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.tau_kd > 0:
            raise ValueError(f"tau_kd must be positive, got {self.tau_kd}")
        if self.kd_weight < 0 or self.contrastive_weight < 0 or self.embedding_weight < 0:
            raise ValueError("kd_weight, contrastive_weight and embedding_weight must be non-negative")
        if self.teacher_batch_size < 1:
            raise ValueError("teacher_batch_size must be at least 1")


def teacher_embeddings(teacher: str, texts: list[str], *, max_seq_length: int, batch_size: int = 64) -> Any:
    """``(N, D_T)`` float32 normalised teacher embeddings of ``texts`` (one pass, progress bar)."""
    import torch

    model = load_bi_encoder(teacher, max_seq_length=max_seq_length)
    model.eval()
    with torch.inference_mode():
        emb = model.encode(
            texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=True
        )
    return emb.astype("float32")


def _teacher_key(teacher: str, max_seq_length: int) -> str:
    """A cache key that changes with the teacher, its weights and its truncation (not with the texts)."""
    path = Path(teacher).expanduser()
    weights = (
        sorted((str(p.relative_to(path)), p.stat().st_size, p.stat().st_mtime_ns) for p in path.rglob("*.safetensors"))
        if path.is_dir()
        else []
    )
    return config_hash(str(path.resolve()) if path.is_dir() else teacher, weights, max_seq_length, length=16)


def _text_key(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32].encode("ascii")


def cached_teacher_embeddings(cfg: RetrieverDistillConfig, texts: list[str]) -> tuple[Any, int]:
    """Teacher embeddings of ``texts`` and how many of them the teacher encoded now: with ``cfg.teacher_cache``,
    only the texts its store for this teacher lacks (a run that adds a pair source encodes the new texts only).

    The store, ``TEACHER_CACHE/teacher-<teacher, weights, truncation>/``, is a set of parts, each written once:
    ``part-*.emb.npy`` (the vectors) then ``part-*.keys.npy`` (a hash per text), the second written last, so a part
    is read only when both are complete; a crash leaves at most an ignored, unfinished part.
    """
    import numpy as np

    max_len = cfg.teacher_max_seq_length or cfg.max_seq_length
    if cfg.teacher_cache is None:
        emb = teacher_embeddings(cfg.teacher, texts, max_seq_length=max_len, batch_size=cfg.teacher_batch_size)
        return emb, len(texts)
    store = Path(cfg.teacher_cache) / f"teacher-{_teacher_key(cfg.teacher, max_len)}"
    keys = [_text_key(t) for t in texts]
    where: dict[bytes, tuple[int, int]] = {}  # text hash -> (part, row)
    parts = []
    for keys_file in sorted(store.glob("part-*.keys.npy")):
        part_keys = np.load(keys_file)
        part_emb = np.load(keys_file.with_name(keys_file.name.replace(".keys.", ".emb.")), mmap_mode="r")
        if part_emb.shape[0] != len(part_keys):
            continue
        parts.append(part_emb)
        where.update((bytes(k), (len(parts) - 1, r)) for r, k in enumerate(part_keys))
    first = {}  # text hash -> the first text with it, for each text the store lacks
    for text, k in zip(texts, keys, strict=True):
        if k not in where:
            first.setdefault(k, text)
    if first:
        new_keys = list(first)
        new = teacher_embeddings(
            cfg.teacher, list(first.values()), max_seq_length=max_len, batch_size=cfg.teacher_batch_size
        )
        name = hashlib.sha256(b"".join(new_keys)).hexdigest()[:16]
        store.mkdir(parents=True, exist_ok=True)
        for suffix, array in (("emb", new), ("keys", np.array(new_keys, dtype="S32"))):  # the keys last: complete
            with atomic_path(store / f"part-{name}.{suffix}.npy") as tmp, tmp.open("wb") as fh:
                np.save(fh, array)
        parts.append(new)
        where.update((k, (len(parts) - 1, r)) for r, k in enumerate(new_keys))
    at = np.array([where[k] for k in keys], dtype=np.int64).reshape(-1, 2)  # (N, 2): part, row
    out = np.empty((len(texts), parts[0].shape[1] if parts else 0), dtype=np.float32)
    for p, part in enumerate(parts):
        mine = at[:, 0] == p
        out[mine] = part[at[mine, 1]]
    return out, len(first)


def distill_retriever(
    cfg: RetrieverDistillConfig, out_dir: str | Path, *, resume: bool = False, overwrite: bool = False
) -> dict[str, Any]:
    """Distil ``cfg.teacher`` into ``cfg.student`` with DistillCSE; the output loads with ``SentenceTransformer``.

    Parameters
    ----------
    cfg
        The resolved configuration.
    out_dir
        Run folder (layout in :mod:`indus.retriever.trainer`).
    resume, overwrite
        As for :func:`indus.retriever.train.train_retriever`. The teacher pass is repeated on resume.

    Returns
    -------
    dict
        The summary written to ``out_dir/summary.json`` (as for training, plus the teacher pass: texts, dim, time).
    """
    from transformers import set_seed

    done = finished_summary(out_dir) if resume else None
    if done is not None:
        return done
    out = prepare_output_dir(out_dir, command="retriever distill", resume=resume, overwrite=overwrite, resumable=True)
    data = cfg.load_training_pairs()
    start = time.perf_counter()
    texts = data.texts()
    emb, encoded = cached_teacher_embeddings(cfg, texts)  # (N, D_T)
    teacher_s = time.perf_counter() - start
    row = {t: i for i, t in enumerate(texts)}
    labels = {}
    for source, pairs in data.by_source.items():
        with_neg = data.negatives[source]
        labels[source] = {
            "label": [
                emb[[row[p.anchor], row[p.positive]] + ([row[p.negative]] if with_neg else [])].reshape(-1)
                for p in pairs
            ]
        }
    set_seed(cfg.seed)
    # the texts the student will read: a query encoder reads the anchors only
    read = list(dict.fromkeys(p.anchor for ps in data.by_source.values() for p in ps)) if cfg.query_only else texts
    student = load_bi_encoder(
        cfg.student,
        max_seq_length=cfg.max_seq_length,
        seed=cfg.seed,
        tokenizer_of=cfg.teacher,
        calibration_texts=cfg.calibration_texts(read),
    )
    if (cfg.embedding_weight > 0 or cfg.query_only) and student.get_embedding_dimension() != emb.shape[1]:
        raise IndusError(
            f"{'query_only' if cfg.query_only else 'embedding_weight > 0'} needs a student as wide as its teacher: "
            f"{cfg.student} embeds in {student.get_embedding_dimension()} dimensions, {cfg.teacher} in {emb.shape[1]}"
        )
    weights = {
        "tau_kd": cfg.tau_kd,
        "temperature": cfg.temperature,
        "kd_weight": cfg.kd_weight,
        "contrastive_weight": cfg.contrastive_weight,
        "embedding_weight": cfg.embedding_weight,
        "scale_kd_by_t2": cfg.scale_kd_by_t2,
        "mask_duplicates": cfg.mask_duplicates,
    }
    if cfg.query_only:  # the student embeds the queries only: no passages to cache gradients for
        loss = QueryDistillLoss(student, **weights)
    else:
        loss = DistillCSELoss(student, mini_batch_size=cfg.mini_batch_size, **weights)
    if not cfg.one_source_per_batch and len(set(data.negatives.values())) > 1:
        # pooled sources must agree on the columns (and so on the label width): drop the negatives everywhere
        data.negatives = dict.fromkeys(data.negatives, False)
        labels = {s: {"label": [v[: 2 * emb.shape[1]] for v in cols["label"]]} for s, cols in labels.items()}
    dataset = pair_datasets(data, one_source_per_batch=cfg.one_source_per_batch, extra_columns=labels)
    extra = {
        "task": "retriever-distill",
        "teacher": cfg.teacher,
        "student": cfg.student,
        "n_pairs": data.n_pairs,
        "sources": data.counts,
        "hard_negative_sources": sorted(s for s, v in data.negatives.items() if v),
        "teacher_texts": len(texts),
        "teacher_dim": int(emb.shape[1]),
        "teacher_s": round(teacher_s, 2),
        "teacher_cached": encoded == 0,
        "teacher_encoded": encoded,  # texts the teacher encoded in this run (the others came from teacher_cache)
        "student_layers": int(student[0].auto_model.config.num_hidden_layers),
        "student_dim": int(student.get_embedding_dimension()),
        "query_only": cfg.query_only,
        # a query encoder is only meaningful over its teacher's document vectors: recorded for index and eval
        "documents_model": model_record(cfg.teacher) if cfg.query_only else None,
    }
    summary = fit(student, loss, dataset, cfg, out.path, resume=resume, extra_summary=extra)
    out.complete(stop_reason=summary["stop_reason"])
    return summary
