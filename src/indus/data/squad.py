"""SQuAD v1.1 / v2.0 JSON: reader, validator, answer repair and splits.

The format::

    {"version": "...", "data": [{"title": ..., "paragraphs": [{"context": "...", "qas": [
        {"id": "...", "question": "...", "answers": [{"text": "...", "answer_start": 42}],
         "is_impossible": false, "plausible_answers": [...]}]}]}]}

A question is unanswerable when ``is_impossible`` is true or its ``answers`` list is empty (SQuAD v2);
``plausible_answers`` are read past and never used. Question ids may be strings or integers; they are kept as
strings and must be unique within a file.

**Answer repair.** An ``answer_start`` that does not point at the answer text is re-anchored at the nearest
occurrence of the text within ``window`` characters (default 50) of the stored offset, and the shift is counted.
An answer whose text does not occur in that window is *unlocated*: it keeps its text, so it still counts as a gold
answer when scoring (the official SQuAD script compares texts only), but it gives no training label; a question
with no located answer is skipped in training. ``strict=True`` makes an unlocated answer an error instead.

**Splits.** A folder holding ``train`` / ``dev`` (or ``validation``, ``valid``) / ``test`` JSON files uses them as
they are (names like ``train-v2.0.json`` count too). A single file, or a folder with exactly one JSON file, is
split by article: articles sorted by integer ``document_id`` (read from the article or its first paragraph; file
order when any article has none), then the first ``round(0.8 N)`` to train, the next ``round(0.1 N)`` to dev, the
rest to test (Python's ``round``), so no context is shared between splits. This is the rule of COVID-QA's
SPLITS.md.

Errors name the file, the line where the offending question id occurs (found cheaply in the raw text; omitted
when the id is not unique there) and the JSON path, e.g. ``covid-qa.json:1234: data[3].paragraphs[0].qas[5]
(id 262): answer_start must be an integer``.

Example
-------
>>> splits = squad_splits("../shared/data/qa/covid-qa")  # doctest: +SKIP
>>> {name: len(s) for name, s in splits.items()}  # doctest: +SKIP
{'train': 1041, 'dev': 90, 'test': 249}
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from indus.data.splits import SPLIT_ALIASES, SPLIT_ORDER, canonical_split
from indus.data.text import has_surrogate_escape, line_at, lone_surrogate, read_text
from indus.errors import DataFormatError, IndusError

SPLITS = SPLIT_ORDER
DEFAULT_FRACTIONS = (0.8, 0.1)
REPAIR_WINDOW = 50


@dataclass(frozen=True)
class Answer:
    """A gold answer: its text, its (repaired) character offset in the context (``None``: not located) and the
    offset the file gave."""

    text: str
    start: int | None
    given_start: int | None = None

    @property
    def end(self) -> int | None:
        """Exclusive end offset, or ``None`` when not located."""
        return None if self.start is None else self.start + len(self.text)


@dataclass(frozen=True)
class QAExample:
    """One question with its context and gold answers (none for an unanswerable question)."""

    id: str
    question: str
    context: str
    answers: tuple[Answer, ...]
    article: int
    where: str = ""

    @property
    def is_impossible(self) -> bool:
        """True for an unanswerable question (SQuAD v2)."""
        return not self.answers

    @property
    def located_answers(self) -> tuple[Answer, ...]:
        """The answers whose position in the context is known (the ones usable as training labels)."""
        return tuple(a for a in self.answers if a.start is not None)


@dataclass
class RepairReport:
    """What answer re-anchoring did: exact offsets, repaired ones by shift (true start minus given start), and
    unlocated answers."""

    exact: int = 0
    shifts: Counter = field(default_factory=Counter)
    unlocated: int = 0

    @property
    def repaired(self) -> int:
        """Answers whose offset was moved to the nearby occurrence of their text."""
        return sum(self.shifts.values())

    @classmethod
    def of(cls, examples: list[QAExample]) -> RepairReport:
        """The report for ``examples``."""
        report = cls()
        for ex in examples:
            for ans in ex.answers:
                if ans.start is None:
                    report.unlocated += 1
                elif ans.start == ans.given_start:
                    report.exact += 1
                else:
                    report.shifts[ans.start - ans.given_start] += 1
        return report


@dataclass
class SquadSet:
    """The questions of one SQuAD file or split.

    Attributes
    ----------
    path
        The file the questions come from.
    version
        The file's ``version`` field, if any.
    examples
        The questions, in file order.
    articles
        Number of articles (``data`` entries) these questions come from.
    """

    path: Path
    version: str | None
    examples: list[QAExample]
    articles: int

    def __len__(self) -> int:
        return len(self.examples)

    def __iter__(self) -> Iterator[QAExample]:
        return iter(self.examples)

    @property
    def repairs(self) -> RepairReport:
        """What answer re-anchoring did for these questions."""
        return RepairReport.of(self.examples)

    @property
    def has_unanswerable(self) -> bool:
        """True when any question is unanswerable (a SQuAD v2 style set)."""
        return any(ex.is_impossible for ex in self.examples)

    def counts(self) -> dict[str, int]:
        """Question, answer and context counts."""
        return {
            "articles": self.articles,
            "contexts": len({(ex.article, ex.context) for ex in self.examples}),
            "questions": len(self.examples),
            "answerable": sum(not ex.is_impossible for ex in self.examples),
            "unanswerable": sum(ex.is_impossible for ex in self.examples),
            "answers": sum(len(ex.answers) for ex in self.examples),
        }


def _line_of(raw: str, qid: Any) -> int | None:
    """The 1-based line where ``"id": qid`` occurs in the raw JSON text, if it occurs exactly once."""
    if qid is None:
        return None
    token = json.dumps(qid, ensure_ascii=False) if isinstance(qid, str) else str(qid)
    hits = [m.start() for m in re.finditer(r'"id"\s*:\s*' + re.escape(token) + r"(?![\w.])", raw)]
    return raw.count("\n", 0, hits[0]) + 1 if len(hits) == 1 else None


def locate_answer(context: str, text: str, start: int, window: int = REPAIR_WINDOW) -> int | None:
    """The true start of ``text`` in ``context``: ``start`` if it matches, else the nearest occurrence within
    ``window`` characters of it (ties: the earlier one), else ``None``.

    >>> locate_answer("the cat sat on the mat", "mat", 18)
    19
    >>> locate_answer("the cat sat", "dog", 4) is None
    True
    """
    if 0 <= start <= len(context) and context.startswith(text, start):
        return start
    lo = max(0, start - window)
    hi = min(len(context), max(0, start) + window + len(text))
    best: int | None = None
    pos = context.find(text, lo, hi)
    while pos != -1:
        if best is None or abs(pos - start) < abs(best - start):
            best = pos
        pos = context.find(text, pos + 1, hi)
    return best


def _document_key(article: dict[str, Any]) -> Any:
    if "document_id" in article:
        return article["document_id"]
    paragraphs = article.get("paragraphs") or [{}]
    return paragraphs[0].get("document_id") if isinstance(paragraphs[0], dict) else None


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        return int(value)
    return None


@dataclass
class _ParsedFile:
    squad: SquadSet
    article_keys: list[Any]


def _parse(path: Path, *, window: int, strict: bool) -> _ParsedFile:
    if not path.is_file():
        raise IndusError(f"{path}: file not found")
    raw = read_text(path)  # UTF-8 errors name the line; a byte-order mark is dropped
    try:
        doc = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise DataFormatError(
            path, exc.lineno, f'invalid JSON ({exc.msg}, column {exc.colno}); expected a SQuAD file {{"data": [...]}}'
        ) from None
    except RecursionError:
        raise DataFormatError(path, None, "invalid JSON (nested too deeply)") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("data"), list):
        raise DataFormatError(path, None, 'expected a SQuAD JSON object with a "data" list of articles')
    if has_surrogate_escape(raw) and (bad := lone_surrogate(doc)) is not None:
        raise DataFormatError(
            path,
            line_at(raw, raw.lower().find(bad)),
            f"expected text, found the lone surrogate escape {bad} (not a character)",
        )
    if not doc["data"]:
        raise DataFormatError(path, line_at(raw, raw.find('"data"')), 'no articles: the "data" list is empty')
    version = doc.get("version")
    examples: list[QAExample] = []
    seen: dict[str, str] = {}
    keys: list[Any] = []

    def fail(where: str, qid: Any, expected: str) -> DataFormatError:
        label = f"{where} (id {qid})" if qid is not None else where
        return DataFormatError(path, _line_of(raw, qid), f"{label}: {expected}")

    for a, article in enumerate(doc["data"]):
        where_a = f"data[{a}]"
        if not isinstance(article, dict) or not isinstance(article.get("paragraphs"), list):
            raise fail(where_a, None, 'expected an article object with a "paragraphs" list')
        keys.append(_document_key(article))
        for p, para in enumerate(article["paragraphs"]):
            where_p = f"{where_a}.paragraphs[{p}]"
            if not isinstance(para, dict):
                raise fail(where_p, None, "expected a paragraph object {context, qas}")
            context, qas = para.get("context"), para.get("qas")
            if not isinstance(context, str):
                raise fail(where_p, None, 'expected a "context" string')
            if not isinstance(qas, list):
                raise fail(where_p, None, 'expected a "qas" list of questions')
            for q, qa in enumerate(qas):
                where = f"{where_p}.qas[{q}]"
                qid = qa.get("id") if isinstance(qa, dict) else None
                if not isinstance(qa, dict):
                    raise fail(where, None, "expected a question object {id, question, answers}")
                if qid is None or isinstance(qid, bool) or not isinstance(qid, str | int) or str(qid) == "":
                    raise fail(where, None, 'expected an "id" (string or integer)')
                sid = str(qid)
                if sid in seen:
                    raise fail(where, None, f"question id {sid!r} repeats the one at {seen[sid]}; ids must be unique")
                seen[sid] = where
                question = qa.get("question")
                if not isinstance(question, str) or not question.strip():
                    raise fail(where, qid, 'expected a non-empty "question" string')
                answers_raw = qa.get("answers", [])
                if not isinstance(answers_raw, list):
                    raise fail(where, qid, '"answers" must be a list of {text, answer_start}')
                impossible = qa.get("is_impossible", False)
                if not isinstance(impossible, bool):
                    raise fail(where, qid, f'"is_impossible" must be true or false, found {impossible!r}')
                if impossible and answers_raw:
                    raise fail(
                        where,
                        qid,
                        '"is_impossible" is true but "answers" is not empty '
                        '(SQuAD v2 keeps those in "plausible_answers")',
                    )
                answers: list[Answer] = []
                for i, ans in enumerate(answers_raw):
                    where_ans = f"{where}.answers[{i}]"
                    if not isinstance(ans, dict):
                        raise fail(where_ans, qid, "expected an answer object {text, answer_start}")
                    text, start = ans.get("text"), ans.get("answer_start")
                    if not isinstance(text, str) or not text.strip():
                        raise fail(where_ans, qid, 'expected a non-empty answer "text" string')
                    if isinstance(start, bool) or not isinstance(start, int):
                        raise fail(where_ans, qid, f'"answer_start" must be an integer, found {start!r}')
                    found = locate_answer(context, text, start, window)
                    if found is None and strict:
                        raise fail(
                            where_ans,
                            qid,
                            f"answer text {text[:40]!r} not found within {window} characters of answer_start {start}",
                        )
                    answers.append(Answer(text, found, start))
                examples.append(QAExample(sid, question, context, tuple(answers), a, where))
    if not examples:
        raise DataFormatError(
            path,
            None,
            f'no questions in its {len(doc["data"])} article(s) (expected "qas" lists of {{id, question, answers}})',
        )
    squad = SquadSet(path, str(version) if version is not None else None, examples, len(doc["data"]))
    return _ParsedFile(squad, keys)


def read_squad(path: str | Path, *, window: int = REPAIR_WINDOW, strict: bool = False) -> SquadSet:
    """Read and validate one SQuAD JSON file, re-anchoring answer offsets (see the module docstring).

    Raises
    ------
    DataFormatError
        For invalid JSON or a file that does not follow the format, naming the file, line and JSON path.
    """
    return _parse(Path(path), window=window, strict=strict).squad


def split_by_article(
    squad: SquadSet, article_keys: list[Any] | None = None, fractions: tuple[float, float] = DEFAULT_FRACTIONS
) -> dict[str, SquadSet]:
    """Split ``squad`` by article into train / dev / test (the rule in the module docstring).

    ``article_keys`` holds one sort key per article (its ``document_id``); articles are sorted by them as integers
    when all are integers, else kept in file order.
    """
    n = squad.articles
    ints = [_as_int(k) for k in article_keys] if article_keys is not None and len(article_keys) == n else []
    order = sorted(range(n), key=lambda i: ints[i]) if ints and all(v is not None for v in ints) else list(range(n))
    n_train = round(fractions[0] * n)
    n_dev = round(fractions[1] * n)
    bounds = {"train": order[:n_train], "dev": order[n_train : n_train + n_dev], "test": order[n_train + n_dev :]}
    out = {}
    for name, ids in bounds.items():
        chosen = set(ids)
        out[name] = SquadSet(squad.path, squad.version, [ex for ex in squad.examples if ex.article in chosen], len(ids))
    return out


def _split_files(folder: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for p in sorted(folder.glob("*.json")):
        head = re.split(r"[-_.]", p.stem.lower(), maxsplit=1)[0]
        split = SPLIT_ALIASES.get(head)
        if split is None:
            continue
        if split in found:
            raise IndusError(f"{folder}: two files for the {split} split ({found[split].name}, {p.name})")
        found[split] = p
    return found


def squad_splits(
    path: str | Path,
    *,
    window: int = REPAIR_WINDOW,
    strict: bool = False,
    fractions: tuple[float, float] = DEFAULT_FRACTIONS,
) -> dict[str, SquadSet]:
    """The splits of a SQuAD dataset: explicit split files if the folder has them, else the by-article rule.

    Returns
    -------
    dict
        Split name (``train``, ``dev``, ``test``) to :class:`SquadSet`; a folder with explicit files holds only
        the splits it has files for.
    """
    path = Path(path)
    if path.is_dir():
        explicit = _split_files(path)
        if explicit:
            return {name: read_squad(p, window=window, strict=strict) for name, p in explicit.items()}
        files = sorted(path.glob("*.json"))
        if len(files) != 1:
            names = ", ".join(p.name for p in files) or "none"
            raise IndusError(
                f"{path}: expected train/dev/test .json files or exactly one .json file to split "
                f"by article, found: {names}"
            )
        path = files[0]
    elif not path.is_file():
        raise IndusError(f"{path}: no such SQuAD file or folder")
    parsed = _parse(path, window=window, strict=strict)
    return split_by_article(parsed.squad, parsed.article_keys, fractions)


def load_squad_split(path: str | Path, split: str, **kwargs: Any) -> SquadSet:
    """One split of a SQuAD dataset (see :func:`squad_splits`), with a clear error when it is missing."""
    name = canonical_split(split)
    splits = squad_splits(path, **kwargs)
    if name not in splits:
        raise IndusError(f"{path}: no {split!r} split (found: {', '.join(splits)}); choose one with --split")
    return splits[name]


def _ids(examples: list[QAExample], shown: int = 10) -> str:
    ids = ", ".join(ex.id for ex in examples[:shown])
    return ids + (f", ... ({len(examples) - shown} more)" if len(examples) > shown else "")


def check(path: str | Path) -> dict[str, Any]:
    """Validate a SQuAD file or folder and count questions, answers, repairs and split sizes.

    Answers whose text cannot be found near their ``answer_start`` give a ``warnings`` entry naming the question
    ids; a file in which no answer can be located at all is an error (it could train and score nothing).
    """
    path = Path(path)
    splits = squad_splits(path)
    examples = [ex for s in splits.values() for ex in s.examples]
    total = RepairReport.of(examples)
    answerable = [ex for ex in examples if ex.answers]
    unlocated = [ex for ex in answerable if any(a.start is None for a in ex.answers)]
    if answerable and not any(ex.located_answers for ex in answerable):
        raise DataFormatError(
            path,
            None,
            f"none of the {sum(len(ex.answers) for ex in answerable)} answers can be "
            f"located in its context (within {REPAIR_WINDOW} characters of "
            f"answer_start); question ids: {_ids(answerable)}",
        )
    counts: dict[str, Any] = {}
    for key in ("articles", "contexts", "questions", "answerable", "unanswerable", "answers"):
        counts[key] = sum(s.counts()[key] for s in splits.values())
    counts["answers exact"] = total.exact
    counts["answers repaired"] = total.repaired
    counts["answers unlocated"] = total.unlocated
    for shift in sorted(total.shifts):
        counts[f"repaired shift {shift:+d}"] = total.shifts[shift]
    for name, s in splits.items():
        counts[f"{name} questions"] = len(s)
    if unlocated:
        counts["warnings"] = [
            f"{path}: {total.unlocated} answer(s) of {len(unlocated)} question(s) not found in "
            f"their context near answer_start (kept for scoring, not trained on); question ids: "
            f"{_ids(unlocated)}"
        ]
    return counts
