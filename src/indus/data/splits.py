"""The split names every dataset reader understands: one alias table for NER, classification and SQuAD folders.

A split file's stem (or a ``--split`` value) is mapped to one of :data:`SPLIT_ORDER` by :data:`SPLIT_ALIASES`
(``validation``, ``valid``, ``val`` and ``devel`` are ``dev``, as in BLURB, BEIR and the Hugging Face hub).

Example
-------
>>> canonical_split("validation"), canonical_split("Train"), canonical_split("heldout")
('dev', 'train', 'heldout')
"""

from __future__ import annotations

#: file stem or split name -> split
SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "dev": "dev",
    "devel": "dev",
    "valid": "dev",
    "validation": "dev",
    "val": "dev",
    "test": "test",
    "testing": "test",
}
#: the splits, in the order they are listed
SPLIT_ORDER = ("train", "dev", "test")


def canonical_split(name: str) -> str:
    """The split ``name`` stands for (``name`` itself, lower-cased, when it is no alias)."""
    return SPLIT_ALIASES.get(name.lower(), name.lower())
