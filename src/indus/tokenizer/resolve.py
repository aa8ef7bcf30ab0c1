"""Load a tokenizer from a tokenizer folder (``indus tokenizer train`` output) or any model spec."""

from __future__ import annotations

from pathlib import Path

from indus.errors import IndusError

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "vocab.txt")


def resolve_tokenizer(spec: str | Path):
    """The tokenizer in folder ``spec`` (no ``config.json`` needed), or that of model spec ``spec`` (``minilm``)."""
    from transformers import AutoTokenizer

    from indus.models import load_tokenizer

    path = Path(spec).expanduser()
    if path.is_dir() and not (path / "config.json").is_file():
        if not any((path / f).is_file() for f in TOKENIZER_FILES):
            raise IndusError(f"{path}: no tokenizer here (expected tokenizer.json or tokenizer_config.json)")
        try:
            return AutoTokenizer.from_pretrained(str(path))
        except (OSError, ValueError) as exc:
            raise IndusError(f"{path}: could not load a tokenizer ({exc})") from None
    return load_tokenizer(str(spec))
