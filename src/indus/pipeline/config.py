"""The typed configuration of ``indus run``: one section per stage, loaded from YAML plus ``--set key=value``.

Stage sections hold a few pipeline-level fields (names, which model feeds which) and a ``settings`` mapping that is
passed to the stage's own typed config (:class:`indus.encoder.configs.PretrainConfig`,
:class:`indus.retriever.train.RetrieverTrainConfig`, the evaluators' options, ...), which validates it. Data are
names under the data root (``corpus``, ``bc5cdr``, ``pairs/scifact-train.jsonl.gz``), which never resolve outside it,
or paths spelled as paths (``/data/x``, ``./x``, ``../x``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from indus.errors import IndusError
from indus.models import parse_model


def _h(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass
class CorpusSection:
    """The pretraining corpus."""

    train: str = field(
        default="corpus",
        metadata=_h("training documents: a name or path; a folder gives its training files (corpus: train.jsonl.gz)"),
    )
    valid: str = field(
        default="corpus",
        metadata=_h("held-out documents: a name or path; a folder gives its held-out files (corpus: valid.jsonl.gz)"),
    )


@dataclass
class TokenizerSection:
    """INDUSBPE: a byte-level BPE trained on the corpus, compared with general tokenizers on held-out text."""

    enabled: bool = field(default=True, metadata=_h("train a tokenizer; false: encoders use minilm's WordPiece"))
    vocab_size: int = field(default=50_265, metadata=_h("vocabulary size (the paper: 50,265)"))
    lowercase: bool = field(default=True, metadata=_h("uncased, as INDUSBPE"))
    max_docs: int | None = field(default=None, metadata=_h("train on the first N documents"))
    compare_with: list[str] = field(
        default_factory=lambda: ["minilm"], metadata=_h("tokenizers to compare against on the held-out text")
    )
    compare_max_docs: int | None = field(default=None, metadata=_h("held-out documents used for the comparison"))

    def __post_init__(self) -> None:
        if self.vocab_size < 261:
            raise ValueError(f"tokenizer.vocab_size must be >= 261, got {self.vocab_size}")


@dataclass
class PretrainRun:
    """One masked-LM pretraining run (a rung of the run's compute ladder)."""

    name: str = field(default="", metadata=_h("the model's name in tables"))
    preset: str = field(default="tiny", metadata=_h("model shape (base, small, mini, tiny, nano, micro)"))
    settings: dict[str, Any] = field(default_factory=dict, metadata=_h("PretrainConfig fields over the defaults"))

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("every pretrain run needs a name")


@dataclass
class PretrainSection:
    """Masked-LM pretraining: shared defaults and the runs (different sizes and budgets feed the forecast)."""

    defaults: dict[str, Any] = field(default_factory=dict, metadata=_h("PretrainConfig fields for every run"))
    runs: list[PretrainRun] = field(default_factory=list, metadata=_h("the pretraining runs"))


@dataclass
class DistillRun:
    """One MiniLMv2 student distilled from a pretrained encoder of this run."""

    name: str = field(default="", metadata=_h("the student's name in tables"))
    teacher: str = field(default="", metadata=_h("name of a pretrain run"))
    student_preset: str = field(default="nano", metadata=_h("the student's shape"))
    settings: dict[str, Any] = field(default_factory=dict, metadata=_h("DistillConfig fields"))

    def __post_init__(self) -> None:
        if not self.name or not self.teacher:
            raise ValueError("every distill run needs a name and a teacher")


@dataclass
class RetrieverRun:
    """One bi-encoder trained with the GTE contrastive loss."""

    name: str = field(default="", metadata=_h("the retriever's name in tables"))
    model: str = field(
        default="minilm",
        metadata=_h(
            "start from: a model spec, or pretrain:<run> / distill:<run> / "
            "retriever:<earlier run> (stage 2 after stage 1)"
        ),
    )
    pairs: list[str] = field(
        default_factory=list,
        metadata=_h("pair files or folders (names or paths), or BEIR_FOLDER:SPLIT (a collection's judgements)"),
    )
    settings: dict[str, Any] = field(default_factory=dict, metadata=_h("RetrieverTrainConfig fields"))
    mine: dict[str, Any] = field(
        default_factory=dict,
        metadata=_h(
            "mine hard negatives for the pairs first (a mine/<name> stage): corpus (required), model (default: "
            "the model this run starts from), and MineSettings fields (top_k, rank_range, margin, negatives, mode, "
            "max_seq_length, seed); the run then trains on the mined file"
        ),
    )

    def __post_init__(self) -> None:
        if not self.name or not self.pairs:
            raise ValueError("every retriever run needs a name and pairs")
        if self.mine and not self.mine.get("corpus"):
            raise ValueError(f"retriever {self.name!r}: mine needs a corpus (where the negatives come from)")


@dataclass
class RetrieverDistillRun:
    """One small retriever distilled with DistillCSE from a retriever of this run."""

    name: str = field(default="", metadata=_h("the student's name in tables"))
    teacher: str = field(default="", metadata=_h("name of a retriever run"))
    student: str = field(
        default="minilm-layers:3",
        metadata=_h("student: a spec (folder, random:<preset>, minilm-layers:N) or distill:<run> / pretrain:<run>"),
    )
    pairs: list[str] = field(default_factory=list, metadata=_h("pairs (default: the teacher's)"))
    settings: dict[str, Any] = field(default_factory=dict, metadata=_h("RetrieverDistillConfig fields"))

    def __post_init__(self) -> None:
        if not self.name or not self.teacher:
            raise ValueError("every retriever_distill run needs a name and a teacher")


@dataclass
class EvalTask:
    """One benchmark, run on every model of a group."""

    task: str = field(default="ner", metadata=_h("ner | qa | cls (encoders) or ir (retrievers)"))
    data: str = field(default="", metadata=_h("dataset name or path"))
    settings: dict[str, Any] = field(default_factory=dict, metadata=_h("the evaluator's options (budgets)"))
    per_model: dict[str, dict[str, Any]] = field(
        default_factory=dict,
        metadata=_h("settings that differ for some models, by model name, e.g. {minilm: {lr: 2.0e-4}}"),
    )

    def __post_init__(self) -> None:
        if not self.data:
            raise ValueError(f"eval task {self.task!r} needs data")
        bad = [name for name, value in self.per_model.items() if not isinstance(value, dict)]
        if bad:
            raise ValueError(f"eval task {self.task!r}: per_model.{bad[0]} must be a mapping of settings")

    def settings_for(self, model: str) -> dict[str, Any]:
        """The settings used for ``model``: ``settings`` with its ``per_model`` entry on top."""
        return {**self.settings, **self.per_model.get(model, {})}

    @property
    def group(self) -> str:
        """Which models the task judges."""
        return "retrievers" if self.task == "ir" else "encoders"

    @property
    def label(self) -> str:
        """``task:data``."""
        return f"{self.task}:{self.data}"


@dataclass
class EvalSection:
    """The benchmark suite and the baselines every built model is compared with."""

    baselines: list[str] = field(
        default_factory=lambda: ["random", "minilm", "bm25"],
        metadata=_h("random (same shape, random weights), minilm, bm25 (retrieval)"),
    )
    tasks: list[EvalTask] = field(default_factory=list, metadata=_h("benchmarks"))
    latency_sentences: int = field(default=64, metadata=_h("sentences timed one by one for encoder latency"))

    def __post_init__(self) -> None:
        unknown = sorted(set(self.baselines) - {"random", "minilm", "bm25"})
        if unknown:
            raise ValueError(f"unknown baseline(s) {', '.join(unknown)}; known: random, minilm, bm25")


@dataclass
class ForecastSection:
    """Does a bigger run pay? Each metric against log compute and held-out loss across the pretrain runs."""

    enabled: bool = field(default=True, metadata=_h("fit and forecast"))
    multipliers: list[float] = field(
        default_factory=lambda: [10.0, 100.0], metadata=_h("forecast at these multiples of the largest run's compute")
    )
    alpha: float = field(default=0.1, metadata=_h("1 - alpha prediction intervals"))

    def __post_init__(self) -> None:
        if not 0 < self.alpha < 1:
            raise ValueError(f"forecast.alpha must be in (0, 1), got {self.alpha}")
        if any(m <= 0 for m in self.multipliers):
            raise ValueError("forecast.multipliers must be positive")


@dataclass
class ScalingSection:
    """The observational-scaling-law report on the built-in tables (arXiv 2405.10938)."""

    enabled: bool = field(default=True, metadata=_h("write the scaling-law section"))
    n_bootstrap: int = field(default=100, metadata=_h("bootstrap rounds per task"))


@dataclass
class PipelineConfig:
    """``indus run``: tokenizer, pretrain, distill, retriever, retriever_distill, eval, forecast, report."""

    name: str = field(default="run", metadata=_h("run name (default output folder runs/<name>)"))
    seed: int = field(default=0, metadata=_h("seed given to every stage that does not set its own"))
    corpus: CorpusSection = field(default_factory=CorpusSection)
    tokenizer: TokenizerSection = field(default_factory=TokenizerSection)
    pretrain: PretrainSection = field(default_factory=PretrainSection)
    distill: list[DistillRun] = field(default_factory=list)
    retriever: list[RetrieverRun] = field(default_factory=list)
    retriever_distill: list[RetrieverDistillRun] = field(default_factory=list)
    eval: EvalSection = field(default_factory=EvalSection)
    forecast: ForecastSection = field(default_factory=ForecastSection)
    scaling: ScalingSection = field(default_factory=ScalingSection)

    def __post_init__(self) -> None:
        names = (
            [r.name for r in self.pretrain.runs]
            + [r.name for r in self.distill]
            + [r.name for r in self.retriever]
            + [r.name for r in self.retriever_distill]
        )
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"model names must be unique; repeated: {', '.join(dupes)}")
        pretrained = {r.name for r in self.pretrain.runs}
        for d in self.distill:
            if d.teacher not in pretrained:
                raise ValueError(
                    f"distill {d.name!r}: teacher {d.teacher!r} is not a pretrain run "
                    f"(known: {', '.join(sorted(pretrained)) or 'none'})"
                )
        retrievers = {r.name for r in self.retriever}
        for d in self.retriever_distill:
            if d.teacher not in retrievers:
                raise ValueError(
                    f"retriever_distill {d.name!r}: teacher {d.teacher!r} is not a retriever run "
                    f"(known: {', '.join(sorted(retrievers)) or 'none'})"
                )
        known = {"pretrain": pretrained, "distill": {d.name for d in self.distill}, "retriever": set()}
        for r in self.retriever:
            _check_ref(f"retriever {r.name!r}", r.model, known)
            known["retriever"].add(r.name)
        for d in self.retriever_distill:
            _check_ref(f"retriever_distill {d.name!r}", d.student, known)


def _check_ref(where: str, spec: str, known: dict[str, set[str]]) -> None:
    """``pretrain:<run>``, ``distill:<run>`` and ``retriever:<run>`` must name an earlier run of the config."""
    try:
        parse_model(spec, known)
    except IndusError as exc:
        raise ValueError(f"{where}: {exc}") from None
