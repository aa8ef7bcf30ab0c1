"""CoNLL-style token files for named-entity recognition: read, validate, detect the tag scheme, convert to IOB2.

A file holds one token per line, the token in the first column and its tag in the last, separated by tabs (a
line with a tab is split on tabs only, so tokens may hold spaces) or else by runs of spaces. Middle columns (POS,
chunk tags) are allowed and ignored, but every line of a file must have the same number of columns. Blank lines
end sentences; ``-DOCSTART-`` lines end a sentence and are skipped.

Tags are ``O`` or ``<prefix>-<type>``. Supported schemes:

- ``IOB2``: every entity starts with ``B-``, ``I-`` continues it;
- ``IOB1``: entities start with ``I-``; ``B-`` only starts an entity that directly follows one of the same type;
- ``BIOES`` (alias ``IOBES``): ``B-`` begin, ``I-`` inside, ``E-`` end, ``S-`` single-token entity;
- ``BILOU``: the same with ``L-`` (last) and ``U-`` (unit).

Everything is converted to IOB2. With ``scheme="auto"`` (the default) the scheme is detected from the tags:
``E-``/``S-`` mean BIOES, ``L-``/``U-`` BILOU; otherwise a file in which ``I-`` tags start more entities than
``B-`` tags do is IOB1 and any other file IOB2. Tags that break the detected scheme (an ``I-`` after ``O`` in an
IOB2 file, a ``B-`` with no ``E-`` in BIOES) are *repaired* the way conlleval reads them (an entity starts where a
tag of a new type or an ``I-`` after ``O`` appears, and ends at ``E-``/``S-``/``O``) and counted in
``repaired``. A *declared* scheme (``scheme="IOB2"``) is validated strictly instead: the first violation is a
:class:`~indus.errors.DataFormatError` naming file and line.

A dataset is a folder of split files ``train``, ``dev`` (also ``devel``, ``valid``, ``validation``) and ``test``
with a suffix ``.tsv``, ``.txt``, ``.conll``, ``.iob``, ``.iob2`` or ``.bio``.

Example
-------
>>> to_iob2(["I-Material", "I-Material", "O", "I-Task", "B-Task"])
['B-Material', 'I-Material', 'O', 'B-Task', 'B-Task']
>>> to_iob2(["S-Gene", "B-Gene", "E-Gene", "O"])
['B-Gene', 'B-Gene', 'I-Gene', 'O']
>>> detect_scheme([["I-X", "I-X", "O", "I-Y", "B-Y"]])
'IOB1'
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from indus.atomic import atomic_write_text
from indus.data.splits import SPLIT_ALIASES, SPLIT_ORDER, canonical_split
from indus.data.text import iter_lines
from indus.errors import DataFormatError, IndusError

DOCSTART = "-DOCSTART-"
NER_SUFFIXES = (".tsv", ".txt", ".conll", ".iob", ".iob2", ".bio")
SCHEMES = ("auto", "IOB1", "IOB2", "BIOES", "IOBES", "BILOU")
_PREFIXES = {"IOB1": "BI", "IOB2": "BI", "BIOES": "BIES", "BILOU": "BILU"}
_TAG_HELP = "a tag O or B-TYPE / I-TYPE (IOB1, IOB2), E-/S- (BIOES) or L-/U- (BILOU) in the last column"


@dataclass(frozen=True)
class Sentence:
    """One sentence: its tokens, their IOB2 tags, and the file line of its first token (1-based)."""

    tokens: tuple[str, ...]
    tags: tuple[str, ...]
    line: int = 0

    def __len__(self) -> int:
        return len(self.tokens)


@dataclass
class ConllFile:
    """One parsed file: sentences in IOB2, the source scheme, and how many tags needed repair."""

    path: Path
    sentences: list[Sentence]
    scheme: str
    repaired: int = 0
    columns: int = 2


@dataclass
class NERDataset:
    """A NER dataset folder: its splits (IOB2 sentences) and the label list (``O`` then ``B-``/``I-`` per type)."""

    path: Path
    splits: dict[str, list[Sentence]]
    labels: list[str]
    scheme: str
    files: dict[str, Path] = field(default_factory=dict)
    repaired: dict[str, int] = field(default_factory=dict)

    @property
    def entity_types(self) -> list[str]:
        """The entity types, sorted."""
        return sorted({label[2:] for label in self.labels if label != "O"})

    def split(self, name: str) -> list[Sentence]:
        """The sentences of one split, or a clear error naming the splits that exist."""
        split = canonical_split(name)
        if split not in self.splits:
            raise IndusError(f"{self.path}: no {name!r} split (found: {', '.join(self.splits) or 'none'})")
        return self.splits[split]


@dataclass
class _Raw:
    """A file's sentences with their original tags and the line number of every token."""

    path: Path
    sentences: list[tuple[list[str], list[str], list[int]]]
    columns: int


# --------------------------------------------------------------------------------------------------- tags


def _split_tag(tag: str) -> tuple[str, str]:
    """``"B-Chemical" -> ("B", "Chemical")``; ``"O" -> ("O", "")``."""
    if tag == "O":
        return "O", ""
    return tag[0], tag[2:]


def is_tag(tag: str) -> bool:
    """Whether ``tag`` is ``O`` or ``<B|I|E|S|L|U>-<type>`` (the syntax; the scheme is checked separately)."""
    return tag == "O" or (len(tag) > 2 and tag[0] in "BIESLU" and tag[1] == "-" and not tag[2:].isspace())


def to_iob2(tags: Sequence[str]) -> list[str]:
    """Convert one sentence's tags from IOB1, IOB2, BIOES or BILOU to IOB2.

    An entity starts at ``B-``/``S-``/``U-``, at an ``I-``/``E-``/``L-`` whose previous tag does not continue an
    entity of the same type, and ends after ``E-``/``L-``/``S-``/``U-``, before ``O`` or a new entity. On valid
    input of any of the four schemes this is the standard conversion; on invalid input it is conlleval's reading.
    """
    out: list[str] = []
    open_type: str | None = None  # type of the entity the next I-/E- tag may continue
    for tag in tags:
        prefix, typ = _split_tag(tag)
        if prefix == "O":
            out.append("O")
            open_type = None
        elif prefix in "SU":
            out.append(f"B-{typ}")
            open_type = None
        elif prefix == "B":
            out.append(f"B-{typ}")
            open_type = typ
        else:  # I, E, L
            out.append(f"I-{typ}" if open_type == typ else f"B-{typ}")
            open_type = None if prefix in "EL" else typ
    return out


def detect_scheme(tag_sequences: Iterable[Sequence[str]]) -> str:
    """The tag scheme of some sentences: ``BIOES``, ``BILOU``, ``IOB1`` or ``IOB2`` (see the module docstring).

    Raises
    ------
    ValueError
        When BIOES (``E-``/``S-``) and BILOU (``L-``/``U-``) prefixes are mixed.
    """
    prefixes: set[str] = set()
    i_starts = b_starts = 0
    for tags in tag_sequences:
        prev_prefix, prev_type = "O", ""
        for tag in tags:
            prefix, typ = _split_tag(tag)
            prefixes.add(prefix)
            continues = prev_prefix in ("B", "I") and prev_type == typ
            if prefix == "I" and not continues:
                i_starts += 1
            elif prefix == "B" and not continues:
                b_starts += 1
            prev_prefix, prev_type = prefix, typ
    if prefixes & set("ES") and prefixes & set("LU"):
        raise ValueError("tags mix BIOES (E-/S-) and BILOU (L-/U-) prefixes")
    if prefixes & set("ES"):
        return "BIOES"
    if prefixes & set("LU"):
        return "BILOU"
    return "IOB1" if i_starts > b_starts else "IOB2"


def scheme_violations(tags: Sequence[str], scheme: str) -> list[tuple[int, str]]:
    """Positions and descriptions of the tags that break ``scheme`` (IOB1, IOB2, BIOES/IOBES or BILOU)."""
    scheme = _canonical_scheme(scheme)
    allowed = _PREFIXES[scheme]
    end = "L" if scheme == "BILOU" else "E"  # S-/U- (single-token entities) are valid anywhere
    problems: list[tuple[int, str]] = []
    n = len(tags)
    for i, tag in enumerate(tags):
        prefix, typ = _split_tag(tag)
        if prefix == "O":
            continue
        if prefix not in allowed:
            problems.append((i, f"{tag!r} is not a {scheme} tag (prefixes {', '.join(allowed)} and O)"))
            continue
        prev_prefix, prev_type = _split_tag(tags[i - 1]) if i > 0 else ("O", "")
        next_prefix, next_type = _split_tag(tags[i + 1]) if i + 1 < n else ("O", "")
        after_same = prev_type == typ and prev_prefix in ("B", "I")
        before_same = next_type == typ and next_prefix in ("I", end)
        where = f"after {tags[i - 1]!r}" if i else "at the start of a sentence"
        if scheme == "IOB2" and prefix == "I" and not after_same:
            problems.append((i, f"{tag!r} {where}: an IOB2 entity must start with B-{typ}"))
        elif scheme == "IOB1" and prefix == "B" and not after_same:
            problems.append(
                (i, f"{tag!r} {where}: in IOB1, B- only separates adjacent entities of the same type (use I-{typ})")
            )
        elif scheme in ("BIOES", "BILOU"):
            if prefix in ("I", end) and not after_same:
                problems.append((i, f"{tag!r} must follow B-{typ} or I-{typ}"))
            elif prefix in ("B", "I") and not before_same:
                problems.append((i, f"{tag!r} must be followed by I-{typ} or {end}-{typ}"))
    return problems


def entity_count(tags: Sequence[str]) -> Counter[str]:
    """Entities per type in one IOB2 sentence (one per ``B-`` tag)."""
    return Counter(tag[2:] for tag in tags if tag.startswith("B-"))


def _canonical_scheme(scheme: str) -> str:
    upper = scheme.upper()
    if upper == "IOBES":
        return "BIOES"
    if upper not in SCHEMES[1:]:
        raise IndusError(f"unknown tag scheme {scheme!r}; expected one of {', '.join(SCHEMES)}")
    return upper


# --------------------------------------------------------------------------------------------------- files


def _read_raw(path: str | Path) -> _Raw:
    """Parse a file into sentences of original tags, validating columns and tag syntax."""
    path = Path(path)
    sentences: list[tuple[list[str], list[str], list[int]]] = []
    tokens: list[str] = []
    tags: list[str] = []
    lines: list[int] = []
    columns, first_line = 0, 0

    def flush() -> None:
        if tokens:
            sentences.append((tokens.copy(), tags.copy(), lines.copy()))
            tokens.clear(), tags.clear(), lines.clear()

    # the one reader: UTF-8 errors and corrupt gzip name the line, a byte-order mark is dropped, and lines break at
    # "\n" only (str.splitlines would also break at U+2028 and put every later line number off)
    for lineno, line in iter_lines(path):
        stripped = line.strip()
        if not stripped:
            flush()
            continue
        fields = [f.strip() for f in stripped.split("\t")] if "\t" in stripped else stripped.split()
        if fields[0] == DOCSTART:
            flush()
            continue
        if len(fields) < 2:
            raise DataFormatError(
                path,
                lineno,
                f"expected a token and a tag separated by a tab or spaces, found one column {stripped[:40]!r}",
            )
        if columns == 0:
            columns, first_line = len(fields), lineno
        elif len(fields) != columns:
            raise DataFormatError(
                path, lineno, f"expected {columns} columns like line {first_line}, found {len(fields)}"
            )
        tag = fields[-1]
        if not is_tag(tag):
            raise DataFormatError(path, lineno, f"expected {_TAG_HELP}, found {tag!r}")
        if not fields[0]:
            raise DataFormatError(path, lineno, "expected a token in the first column, found an empty field")
        tokens.append(fields[0])
        tags.append(tag)
        lines.append(lineno)
    flush()
    if not sentences:
        raise DataFormatError(
            path, None, "no sentences found (expected token and tag columns, blank lines between sentences)"
        )
    return _Raw(path, sentences, columns)


def _detect(raws: Sequence[_Raw]) -> str:
    try:
        return detect_scheme(tags for raw in raws for _, tags, _ in raw.sentences)
    except ValueError as exc:
        raise DataFormatError(raws[0].path if len(raws) == 1 else raws[0].path.parent, None, str(exc)) from None


def _convert(raw: _Raw, scheme: str, strict: bool) -> ConllFile:
    """IOB2 sentences of ``raw``; violations of ``scheme`` raise (``strict``) or are counted as repaired."""
    sentences: list[Sentence] = []
    repaired = 0
    for tokens, tags, lines in raw.sentences:
        problems = scheme_violations(tags, scheme)
        if problems and strict:
            i, what = problems[0]
            raise DataFormatError(
                raw.path, lines[i], f"{what} (declared scheme {scheme}; use scheme='auto' to repair such tags)"
            )
        repaired += len(problems)
        sentences.append(Sentence(tuple(tokens), tuple(to_iob2(tags)), lines[0]))
    return ConllFile(raw.path, sentences, scheme, repaired, raw.columns)


def read_conll_file(path: str | Path, scheme: str = "auto") -> ConllFile:
    """Read one CoNLL file: IOB2 sentences plus the source scheme and the repair count.

    Parameters
    ----------
    path
        The file.
    scheme
        ``"auto"`` (detect, repair violations) or a scheme to validate strictly: ``IOB1``, ``IOB2``,
        ``BIOES``/``IOBES``, ``BILOU``.
    """
    raw = _read_raw(path)
    if scheme.lower() == "auto":
        return _convert(raw, _detect([raw]), strict=False)
    return _convert(raw, _canonical_scheme(scheme), strict=True)


def read_conll(path: str | Path, scheme: str = "auto") -> list[Sentence]:
    """The sentences of one CoNLL file with IOB2 tags (see :func:`read_conll_file`)."""
    return read_conll_file(path, scheme).sentences


def ner_split_files(path: str | Path) -> dict[str, Path]:
    """The split files of a NER folder, ``{"train": ..., "dev": ..., "test": ...}`` (only those present)."""
    path = Path(path)
    if not path.is_dir():
        raise IndusError(f"{path}: not a directory (expected a NER folder with train/dev/test files)")
    found: dict[str, Path] = {}
    for file in sorted(path.iterdir()):
        if not file.is_file() or file.suffix not in NER_SUFFIXES:
            continue
        split = SPLIT_ALIASES.get(file.stem.lower())
        if split is None:
            continue
        if split in found:
            raise IndusError(f"{path}: two files for the {split} split ({found[split].name}, {file.name})")
        found[split] = file
    if not found:
        raise IndusError(
            f"{path}: no NER split files (expected train/dev/test with a suffix {', '.join(NER_SUFFIXES)})"
        )
    return {s: found[s] for s in SPLIT_ORDER if s in found}


def label_list(types: Iterable[str]) -> list[str]:
    """``O`` then ``B-T``, ``I-T`` for each type, sorted by type."""
    labels = ["O"]
    for typ in sorted(set(types)):
        labels += [f"B-{typ}", f"I-{typ}"]
    return labels


def load_ner_dataset(path: str | Path, scheme: str = "auto") -> NERDataset:
    """Read every split of a NER folder; the scheme is detected over all splits together (or declared)."""
    files = ner_split_files(path)
    raws = {split: _read_raw(file) for split, file in files.items()}
    strict = scheme.lower() != "auto"
    resolved = _canonical_scheme(scheme) if strict else _detect(list(raws.values()))
    parsed = {split: _convert(raw, resolved, strict) for split, raw in raws.items()}
    types = {t for f in parsed.values() for s in f.sentences for t in entity_count(s.tags)}
    return NERDataset(
        Path(path),
        {s: f.sentences for s, f in parsed.items()},
        label_list(types),
        resolved,
        files,
        {s: f.repaired for s, f in parsed.items()},
    )


def _split_counts(sentences: Sequence[Sentence]) -> tuple[dict[str, int], Counter[str]]:
    types: Counter[str] = Counter()
    for s in sentences:
        types.update(entity_count(s.tags))
    counts = {
        "sentences": len(sentences),
        "tokens": sum(len(s) for s in sentences),
        "entities": sum(types.values()),
        "types": len(types),
        "max_tokens": max((len(s) for s in sentences), default=0),
    }
    return counts, types


def check(path: str | Path, scheme: str = "auto") -> dict[str, Any]:
    """Validate a NER folder or a single CoNLL file and count it.

    Returns
    -------
    dict
        ``format`` ("ner"), ``path``, ``scheme`` (source scheme, detected or declared), ``entity_types``
        ({type: entities over all splits}) and ``splits``: {split: {file, sentences, tokens, entities, types,
        max_tokens, repaired}}.
    """
    path = Path(path)
    if path.is_dir():
        ds = load_ner_dataset(path, scheme)
        parts = {s: (ds.files[s], ds.splits[s], ds.repaired[s]) for s in ds.splits}
        resolved = ds.scheme
    else:
        f = read_conll_file(path, scheme)
        split = SPLIT_ALIASES.get(path.stem.lower(), path.stem)
        parts = {split: (f.path, f.sentences, f.repaired)}
        resolved = f.scheme
    splits: dict[str, dict[str, Any]] = {}
    all_types: Counter[str] = Counter()
    for split, (file, sentences, repaired) in parts.items():
        counts, types = _split_counts(sentences)
        all_types.update(types)
        splits[split] = {"file": file.name, **counts, "repaired": repaired}
    return {
        "format": "ner",
        "path": str(path),
        "scheme": resolved,
        "entity_types": dict(sorted(all_types.items())),
        "splits": splits,
    }


def write_conll(path: str | Path, rows: Iterable[Sequence[Sequence[str]]]) -> Path:
    """Write sentences as columns (one token per line, a blank line after each), atomically.

    ``rows`` yields one sentence at a time as a sequence of columns, e.g. ``(tokens, gold, predicted)``: the
    layout conlleval reads. Columns are separated by a space, or by a tab when some cell holds whitespace.
    """
    sentences = [list(zip(*columns, strict=True)) for columns in rows]
    sep = "\t" if any(any(c.split() != [c] for c in cells) for s in sentences for cells in s) else " "
    chunks: list[str] = []
    for lines in sentences:
        chunks.extend(sep.join(cells) + "\n" for cells in lines)
        chunks.append("\n")
    return atomic_write_text(path, "".join(chunks))
