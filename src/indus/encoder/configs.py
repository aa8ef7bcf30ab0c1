"""Typed settings of masked-LM pretraining and MiniLMv2 distillation (YAML + ``--set key=value``).

Example
-------
>>> from indus.config import build_config
>>> cfg = build_config(PretrainConfig, {"tokenizer": "tok/", "train_files": ["train.jsonl.gz"], "max_steps": 10})
>>> cfg.beta2, cfg.mask_prob
(0.98, 0.15)
"""

from __future__ import annotations

from dataclasses import dataclass, field

from indus.encoder.presets import PRESETS

MASKING_KINDS = ("random", "keyword")
#: Settings added after pipeline stage keys were first published (continued pretraining and keyword masking,
#: issue 18). At their defaults they leave a stage's cache key as it was: upgrading indus reruns no stage that
#: does not use them (indus.pipeline.stages drops them from the key while they equal their field default).
KEY_NEUTRAL_AT_DEFAULT = (
    "masking",
    "keyword_share",
    "keyword_top",
    "keyword_idf_docs",
    "head_warmup_steps",
    "head_warmup_lr",
)


def _h(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass
class PretrainConfig:
    """Masked-LM pretraining with RoBERTa's recipe (arXiv 1907.11692; INDUS arXiv 2405.10725).

    The run length is set by exactly one of ``max_steps``, ``max_tokens`` or ``max_minutes``. Batch sizes are
    per device: one optimizer step sees ``batch_size * grad_accum * world_size`` sequences of ``seq_len`` tokens.
    """

    # model and data
    preset: str = field(default="tiny", metadata=_h(f"model shape: {', '.join(PRESETS)}"))
    tokenizer: str = field(default="", metadata=_h("tokenizer folder (indus tokenizer train) or model spec"))
    init_from: str | None = field(
        default=None,
        metadata=_h(
            "continue from this encoder instead of random weights: "
            "'minilm' or a model folder (its own tokenizer unless "
            "tokenizer is set)"
        ),
    )
    train_files: list[str] = field(default_factory=list, metadata=_h("corpus files or folders (JSONL 'text' / txt)"))
    valid_files: list[str] = field(default_factory=list, metadata=_h("held-out corpus for MLM loss and perplexity"))
    max_docs: int | None = field(default=None, metadata=_h("read only the first N training documents"))
    valid_max_seqs: int = field(default=256, metadata=_h("held-out sequences scored at each evaluation"))
    streaming: bool = field(default=False, metadata=_h("tokenise on the fly (corpora larger than memory)"))
    shuffle_buffer: int = field(default=10_000, metadata=_h("documents in the shuffle buffer when streaming"))
    cache_dir: str | None = field(
        default=None, metadata=_h("tokenised-corpus cache (default $INDUS_CACHE or ~/.cache/indus)")
    )
    seq_len: int = field(default=128, metadata=_h("tokens per packed sequence (paper: 512)"))
    dropout: float | None = field(
        default=None,
        metadata=_h(
            "hidden and attention dropout while pretraining "
            "(default: the preset's 0.1); the saved model keeps "
            "0.1 for fine-tuning"
        ),
    )
    # optimisation
    batch_size: int = field(default=32, metadata=_h("sequences per device per micro-step"))
    grad_accum: int = field(default=1, metadata=_h("micro-steps per optimizer step"))
    lr: float = field(default=6e-4, metadata=_h("peak learning rate (paper: 6e-4)"))
    warmup_steps: int | None = field(default=None, metadata=_h("linear warm-up steps (paper: 24,000)"))
    warmup_ratio: float = field(default=0.06, metadata=_h("warm-up as a fraction of the run when warmup_steps unset"))
    max_steps: int | None = field(default=None, metadata=_h("optimizer steps (paper: 500,000)"))
    max_tokens: int | None = field(default=None, metadata=_h("token budget; sets the step count"))
    max_minutes: float | None = field(
        default=None, metadata=_h("training-time budget; the step count is set from a step time measured at the start")
    )
    weight_decay: float = field(default=0.01, metadata=_h("AdamW decoupled weight decay (matrices only)"))
    beta1: float = field(default=0.9, metadata=_h("AdamW beta1"))
    beta2: float = field(default=0.98, metadata=_h("AdamW beta2 (RoBERTa: 0.98)"))
    eps: float = field(default=1e-6, metadata=_h("AdamW epsilon (RoBERTa: 1e-6)"))
    grad_clip: float = field(default=1.0, metadata=_h("max gradient norm; 0 disables clipping"))
    # masking
    masking: str = field(
        default="random",
        metadata=_h(
            "random (RoBERTa) or keyword (INDUS-SDE's weighted dynamic "
            "masking: most masks on each document's TF-IDF keywords)"
        ),
    )
    mask_prob: float | None = field(
        default=None, metadata=_h("fraction of tokens selected for prediction (default 0.15 random, 0.30 keyword)")
    )
    keyword_share: float = field(default=0.6, metadata=_h("keyword masking: share of the masks put on keywords"))
    keyword_top: float = field(
        default=0.25,
        metadata=_h("keyword masking: a document's keywords are this top fraction of its distinct tokens by TF-IDF"),
    )
    keyword_idf_docs: int = field(default=20_000, metadata=_h("keyword masking: documents read for the IDF"))
    head_warmup_steps: int = field(
        default=100,
        metadata=_h("with init_from: steps fitting a new MLM head (encoder frozen) before everything trains; 0 skips"),
    )
    head_warmup_lr: float = field(default=1e-3, metadata=_h("learning rate of the head warm-up"))
    mask_replace_prob: float = field(default=0.8, metadata=_h("of those, replaced by <mask>"))
    mask_random_prob: float = field(default=0.1, metadata=_h("of those, replaced by a random token (rest kept)"))
    # hardware and run
    seed: int = field(default=0, metadata=_h("seeds initialisation, data order and masking"))
    bf16: bool = field(default=True, metadata=_h("bf16 autocast where the hardware supports it"))
    compile: bool = field(default=False, metadata=_h("torch.compile the encoder"))
    eval_every: int = field(default=500, metadata=_h("steps between held-out evaluations"))
    checkpoint_every: int = field(default=1000, metadata=_h("steps between checkpoints"))
    keep_checkpoints: int = field(default=2, metadata=_h("checkpoints kept (oldest deleted)"))
    log_every: int = field(default=10, metadata=_h("steps between log.jsonl records"))

    def __post_init__(self) -> None:
        if self.preset not in PRESETS and self.init_from is None:
            raise ValueError(f"preset {self.preset!r}: expected one of {', '.join(PRESETS)}")
        budgets = [b for b in (self.max_steps, self.max_tokens, self.max_minutes) if b is not None]
        if len(budgets) > 1:
            raise ValueError("set only one of max_steps, max_tokens, max_minutes")
        if any(b <= 0 for b in budgets):
            raise ValueError("the run budget (max_steps / max_tokens / max_minutes) must be positive")
        for name in (
            "seq_len",
            "batch_size",
            "grad_accum",
            "eval_every",
            "checkpoint_every",
            "log_every",
            "keep_checkpoints",
            "valid_max_seqs",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.seq_len < 8:
            raise ValueError(f"seq_len must be >= 8, got {self.seq_len}")
        if self.dropout is not None and not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.masking not in MASKING_KINDS:
            raise ValueError(f"masking {self.masking!r}: expected one of {', '.join(MASKING_KINDS)}")
        if self.mask_prob is None:  # INDUS-SDE masks 30% with keyword masking; RoBERTa 15%
            self.mask_prob = 0.30 if self.masking == "keyword" else 0.15
        if not 0 < self.keyword_share <= 1 or not 0 < self.keyword_top <= 1 or self.keyword_idf_docs < 1:
            raise ValueError("keyword_share and keyword_top must be in (0, 1], keyword_idf_docs >= 1")
        if self.head_warmup_steps < 0 or self.head_warmup_lr <= 0:
            raise ValueError("head_warmup_steps must be >= 0 and head_warmup_lr positive")
        if not 0 < self.mask_prob < 1:
            raise ValueError(f"mask_prob must be in (0, 1), got {self.mask_prob}")
        replace, rand = self.mask_replace_prob, self.mask_random_prob
        if replace < 0 or rand < 0 or replace + rand > 1:
            raise ValueError("mask_replace_prob and mask_random_prob must be >= 0 and sum to at most 1")
        if not (0 < self.beta1 < 1 and 0 < self.beta2 < 1):
            raise ValueError("beta1 and beta2 must be in (0, 1)")
        if self.lr <= 0 or self.eps <= 0 or self.weight_decay < 0 or self.grad_clip < 0:
            raise ValueError("lr and eps must be positive, weight_decay and grad_clip non-negative")
        if not 0 <= self.warmup_ratio < 1 or (self.warmup_steps is not None and self.warmup_steps < 0):
            raise ValueError("warmup_ratio must be in [0, 1) and warmup_steps >= 0")

    @property
    def budget_set(self) -> bool:
        """Whether a run length was given."""
        return any(b is not None for b in (self.max_steps, self.max_tokens, self.max_minutes))


@dataclass
class DistillConfig(PretrainConfig):
    """MiniLMv2 distillation (arXiv 2012.15828): a student mimics one teacher layer's Q/K/V self-attention relations.

    ``preset`` is the student's shape; the student takes the teacher's tokenizer (``tokenizer`` is ignored).
    """

    teacher: str = field(default="", metadata=_h("teacher model folder (e.g. an indus pretrain output)"))
    teacher_layer: int | None = field(
        default=None, metadata=_h("1-based teacher layer; default upper-middle: L - max(1, L // 8)")
    )
    relation_heads: int | None = field(
        default=None,
        metadata=_h("relation heads (default: the teacher's attention heads); must divide both hidden sizes"),
    )
    head_fit_steps: int = field(
        default=200,
        metadata=_h(
            "steps fitting the MLM head (encoder frozen) after distillation, to measure held-out MLM loss; 0 skips"
        ),
    )
    head_fit_lr: float = field(default=1e-3, metadata=_h("learning rate of the MLM-head fit"))
    lr: float = field(default=6e-4, metadata=_h("peak learning rate"))

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.masking != "random" or self.init_from is not None:
            raise ValueError("masking and init_from are pretraining settings (a student starts from random weights)")
        if self.relation_heads is not None and self.relation_heads < 1:
            raise ValueError(f"relation_heads must be >= 1, got {self.relation_heads}")
        if self.teacher_layer is not None and self.teacher_layer < 1:
            raise ValueError(f"teacher_layer is 1-based, got {self.teacher_layer}")
        if self.head_fit_steps < 0:
            raise ValueError("head_fit_steps must be >= 0")
