"""Score tables: the packaged defaults and users' own CSVs, read with file:line errors.

A scores table has one row per language model and the columns of the paper's released tables::

    Model, Model Family, Model Size (B), Pretraining Data Size (T), FLOPs (1E21), <benchmark columns...>

Benchmark columns hold accuracies in [0, 1]; an empty cell is a missing score (imputed later). A targets table has a
``Model`` column and one or more numeric target columns (any scale; a task's metric range maps it to [0, 1]).
"""

from __future__ import annotations

import csv
import difflib
import io
import math
from collections.abc import Iterable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from indus.data.text import read_text
from indus.errors import DataFormatError, IndusError

MODEL = "Model"
FAMILY = "Model Family"
SIZE = "Model Size (B)"
DATA = "Pretraining Data Size (T)"
FLOPS = "FLOPs (1E21)"
ID_COLUMNS: tuple[str, ...] = (MODEL, FAMILY, SIZE, DATA, FLOPS)
TEXT_COLUMNS: tuple[str, ...] = (MODEL, FAMILY)
FLOPS_UNIT = 1e21  # the tables store training compute in units of 1e21 FLOPs

BASE_BENCHMARKS: tuple[str, ...] = (
    "MMLU",
    "ARC-C",
    "HellaSwag",
    "Winograd",
    "TruthfulQA",
    "GSM8K",
    "XWinograd",
    "HumanEval",
)
INSTRUCT_BENCHMARKS: tuple[str, ...] = ("MMLU", "ARC-C", "HellaSwag", "Winogrande", "TruthfulQA", "GSM8K", "HumanEval")

BASE_SCORES = "base_llm_benchmark_eval.csv"
INSTRUCT_SCORES = "instruct_llm_benchmark_eval.csv"
BUILTIN_TABLES: tuple[str, ...] = (
    BASE_SCORES,
    "base_llm_benchmark_eval_sub_10b.csv",
    "base_llm_emergent_capability_eval.csv",
    "base_llm_leaderboard_v2_eval.csv",
    "base_llm_post_training_eval.csv",
    "instruct_llm_agent_eval.csv",
    INSTRUCT_SCORES,
)


def tables_dir() -> Path:
    """The folder holding the packaged score tables (numbers released with arXiv 2405.10938; see PROVENANCE.md)."""
    return Path(str(resources.files("indus.scaling") / "tables"))


def builtin_table_path(name: str) -> Path:
    """Path of a packaged table, by file name with or without ``.csv``."""
    file = name if name.endswith(".csv") else f"{name}.csv"
    path = tables_dir() / file
    if file not in BUILTIN_TABLES or not path.is_file():
        raise IndusError(f"unknown built-in table {name!r}; available: {', '.join(BUILTIN_TABLES)}")
    return path


def read_table(path: str | Path, *, text_columns: Sequence[str] = TEXT_COLUMNS) -> pd.DataFrame:
    """Read a CSV of model rows, checking every line.

    Parameters
    ----------
    path
        A comma-separated file with a header row; the first column that is named ``Model`` identifies rows.
    text_columns
        Columns kept as text; every other column must hold numbers (or be empty).

    Returns
    -------
    pandas.DataFrame
        One row per model, numeric columns as floats (NaN for empty cells), in file order.

    Raises
    ------
    DataFormatError
        A row with the wrong number of fields, a non-numeric value, a missing or repeated model name, or a
        repeated header, naming the file, the line and the column.
    """
    path = Path(path)
    if not path.is_file():
        raise IndusError(f"no such file: {path}")
    fh = io.StringIO(read_text(path), newline="")  # UTF-8 and NUL errors name the line; a BOM is dropped
    with fh:
        reader = csv.reader(fh)
        try:
            header = next(reader, None)
        except csv.Error as exc:
            raise DataFormatError(path, reader.line_num, f"a CSV header row ({exc})") from exc
        if not header or not any(h.strip() for h in header):
            raise DataFormatError(path, 1, "a header row naming the columns (Model, ...)")
        header = [h.strip() for h in header]
        dupes = sorted({h for h in header if header.count(h) > 1})
        if dupes:
            raise DataFormatError(path, 1, f"distinct column names; repeated: {', '.join(dupes)}")
        if MODEL not in header:
            raise DataFormatError(path, 1, f"a {MODEL!r} column; found: {', '.join(header)}")
        model_at = header.index(MODEL)
        rows: list[list[object]] = []
        lines: list[int] = []
        seen: dict[str, int] = {}
        try:
            for fields in reader:
                line = reader.line_num
                if not fields or not any(f.strip() for f in fields):
                    continue
                if len(fields) != len(header):
                    raise DataFormatError(
                        path, line, f"{len(header)} comma-separated fields as in the header, got {len(fields)}"
                    )
                row: list[object] = []
                for name, raw in zip(header, fields, strict=True):
                    value = raw.strip()
                    if name in text_columns:
                        row.append(value or None)
                    else:
                        row.append(_number(value, path, line, name))
                model = fields[model_at].strip()
                if not model:
                    raise DataFormatError(path, line, f"a model name in column {MODEL!r}")
                if model in seen:
                    raise DataFormatError(path, line, f"one row per model; {model!r} already on line {seen[model]}")
                seen[model] = line
                rows.append(row)
                lines.append(line)
        except csv.Error as exc:
            raise DataFormatError(path, reader.line_num, f"well-formed CSV ({exc})") from exc
    if not rows:
        raise DataFormatError(path, None, "at least one model row after the header")
    frame = pd.DataFrame(rows, columns=header)
    for name in header:
        if name not in text_columns:
            frame[name] = frame[name].astype(float)
    frame.attrs["path"] = str(path)
    frame.attrs["lines"] = lines  # file line of each row, for errors found after parsing
    return frame


def _number(value: str, path: Path, line: int, column: str) -> float:
    if value == "" or value.lower() in {"nan", "na", "n/a"}:
        return math.nan
    try:
        number = float(value)
    except ValueError:
        raise DataFormatError(path, line, f"a number in column {column!r}, got {value!r}") from None
    if math.isinf(number):
        raise DataFormatError(path, line, f"a finite number in column {column!r}, got {value!r}")
    return number


def read_scores(
    path: str | Path,
    *,
    benchmarks: Iterable[str] | None = None,
    require: Sequence[str] = (MODEL,),
    exclude: Iterable[str] = (),
) -> tuple[pd.DataFrame, list[str]]:
    """Read a scores table and check its benchmark columns.

    Parameters
    ----------
    path
        CSV with the schema of the packaged tables.
    benchmarks
        Benchmark columns that must be present; by default every numeric column that is neither an id column nor
        in ``exclude``.
    require
        Id columns that must be present (``Model`` always is).
    exclude
        Numeric columns that are not benchmarks (e.g. a target column kept in the same file).

    Returns
    -------
    (frame, benchmarks)

    Raises
    ------
    DataFormatError
        Missing columns, or a benchmark score outside [0, 1] (naming the line and column).
    """
    path = Path(path)
    frame = read_table(path)
    missing = [c for c in require if c not in frame.columns]
    if missing:
        raise DataFormatError(
            path,
            1,
            f"column(s) {', '.join(map(repr, missing))} in the header "
            f"(schema: {', '.join(ID_COLUMNS)}, benchmark columns...)",
        )
    names = list(benchmarks) if benchmarks is not None else benchmark_columns(frame, exclude=exclude)
    unknown = [c for c in names if c not in frame.columns]
    if unknown:
        raise DataFormatError(
            path, 1, f"benchmark column(s) {', '.join(map(repr, unknown))}; found: {', '.join(frame.columns)}"
        )
    if not names:
        raise DataFormatError(
            path, 1, f"at least one benchmark column besides the id columns ({', '.join(ID_COLUMNS)})"
        )
    for name in names:
        if frame[name].isna().all():
            raise DataFormatError(path, 1, f"scores in benchmark column {name!r}; it is empty in every row")
        bad = np.flatnonzero(((frame[name] < 0) | (frame[name] > 1)).to_numpy())
        if len(bad):
            at = int(bad[0])
            raise DataFormatError(
                path,
                frame.attrs["lines"][at],
                f"benchmark scores in [0, 1] in column {name!r}, got {frame[name].iat[at]:g}",
            )
    return frame, names


def benchmark_columns(frame: pd.DataFrame, *, exclude: Iterable[str] = ()) -> list[str]:
    """Numeric columns that are not id columns, in table order."""
    skip = set(ID_COLUMNS) | set(exclude)
    return [c for c in frame.columns if c not in skip and pd.api.types.is_numeric_dtype(frame[c])]


def require_columns(frame: pd.DataFrame, columns: Iterable[str], path: str | Path, what: str = "column") -> None:
    """Raise a one-line error naming the file when a column the user asked for is not in the table."""
    available = [str(c) for c in frame.columns]
    unknown = [c for c in columns if c not in frame.columns]
    if unknown:
        close = difflib.get_close_matches(unknown[0], available, n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
        shown = ", ".join(available[:12]) + (f", ... ({len(available) - 12} more)" if len(available) > 12 else "")
        raise IndusError(f"{path}: unknown {what} {', '.join(map(repr, unknown))}{hint} (available: {shown})")


def load_builtin(name: str) -> pd.DataFrame:
    """Read a packaged table (already validated numbers; same reader as users' files)."""
    return read_table(builtin_table_path(name))


def check(path: str | Path) -> dict[str, Any]:
    """``indus data check`` for scores tables: validate one table (one model per row, benchmark accuracies in
    [0, 1]) or every ``*.csv`` of a folder, and count models, benchmarks and missing scores."""
    path = Path(path)
    files = sorted(path.glob("*.csv")) if path.is_dir() else [path]
    if not files:
        raise IndusError(f"{path}: no *.csv score tables in this folder")
    tables: dict[str, dict[str, Any]] = {}
    for file in files:
        frame, benchmarks = read_scores(file)
        tables[file.name] = {
            "models": len(frame),
            "benchmarks": len(benchmarks),
            "missing scores": int(frame[benchmarks].isna().to_numpy().sum()),
        }
    return {"tables": tables}
