"""The one reader of text files: UTF-8 (plain or gzip), errors as :class:`~indus.errors.DataFormatError`.

Every reader of user files in indus (JSON lines, CoNLL, SQuAD, BEIR qrels, corpora, score tables, YAML configs)
goes through here, so each failure class has one handling:

- bytes that are not UTF-8: ``file:line: expected UTF-8 text (invalid start byte at column 7)``;
- a gzip stream that is truncated or corrupt anywhere (header, middle, CRC): ``file:line: the gzip stream is
  corrupt or truncated here ...``, naming the line being read when it broke;
- a gzip file without ``.gz`` (or the reverse), said in words;
- a UTF-8 byte-order mark at the start is dropped (Windows editors write one; it would otherwise end up inside the
  first token or key).

Lines are counted the way editors count them: only ``\\n`` (with an optional ``\\r`` before it) ends a line.
``str.splitlines`` would also break at U+2028, U+0085 and form feeds, and put every later line number off.

Example
-------
>>> import pathlib, tempfile
>>> p = pathlib.Path(tempfile.mkdtemp()) / "a.txt"
>>> _ = p.write_bytes(b"\\xef\\xbb\\xbfone\\r\\ntwo\\xe2\\x80\\xa8still two\\nthree")
>>> [(n, line) for n, line in iter_lines(p)]
[(1, 'one'), (2, 'two\\u2028still two'), (3, 'three')]
"""

from __future__ import annotations

import gzip
import io
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from indus.errors import DataFormatError, IndusError

BOM = b"\xef\xbb\xbf"
GZIP_MAGIC = b"\x1f\x8b"
_READ_ERRORS = (OSError, EOFError, zlib.error)  # gzip.BadGzipFile is an OSError


def _open_binary(path: Path) -> BinaryIO:
    if not path.is_file():
        raise IndusError(f"{path}: file not found")
    try:
        return gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")
    except OSError as exc:
        raise IndusError(f"{path}: cannot read ({exc.strerror or exc})") from None


def _read_problem(path: Path, exc: BaseException) -> str:
    """Words for an exception raised while reading (decompressing) ``path``."""
    if path.suffix == ".gz":
        return f"the gzip stream is corrupt or truncated here ({str(exc) or type(exc).__name__}); re-create the file"
    return f"cannot read the file ({exc})"


def _decode_problem(path: Path, raw: bytes, exc: UnicodeDecodeError) -> str:
    if raw.startswith(GZIP_MAGIC) and path.suffix != ".gz":
        return "expected UTF-8 text, found gzip-compressed data (name the file *.gz)"
    if b"\x00" in raw[:64] and raw.count(b"\x00") * 4 > len(raw[:64]):
        return "expected UTF-8 text, found binary data (or UTF-16 text: re-save it as UTF-8)"
    return f"expected UTF-8 text ({exc.reason} at column {exc.start + 1})"


def _nul_problem(text: str) -> str:
    return f"expected text, found a NUL byte at column {text.index(chr(0)) + 1} (binary data or UTF-16 text)"


def _strip_eol(text: str) -> str:
    if text.endswith("\n"):
        text = text[:-1]
        if text.endswith("\r"):
            text = text[:-1]
    return text


def _locate_decode_error(path: Path) -> DataFormatError:
    """Re-read ``path`` line by line in binary to name the first line that is not UTF-8 (the slow path, taken only
    after the fast decoder failed somewhere in a chunk)."""
    with _open_binary(path) as fh:
        for lineno, raw in enumerate(fh, start=1):
            if lineno == 1 and raw.startswith(BOM):
                raw = raw[len(BOM) :]
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                return DataFormatError(path, lineno, _decode_problem(path, raw, exc))
    return DataFormatError(path, None, "expected UTF-8 text")


def iter_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, line)`` for every line of a UTF-8 text file (``.gz`` decompressed), without the
    line ending; a leading byte-order mark is dropped.

    Raises
    ------
    DataFormatError
        Bytes that are not UTF-8, a NUL byte, or a corrupt gzip stream, naming the file and the line.
    """
    path = Path(path)
    lineno = 0
    with _open_binary(path) as raw_fh:
        # newline="\n": lines end at "\n" only (a "\r" before it is dropped below), as editors count them
        fh = io.TextIOWrapper(raw_fh, encoding="utf-8", newline="\n")
        it = iter(fh)
        while True:
            try:
                text = next(it)
            except StopIteration:
                return
            except UnicodeDecodeError:
                raise _locate_decode_error(path) from None
            except _READ_ERRORS as exc:
                raise DataFormatError(path, lineno + 1, _read_problem(path, exc)) from None
            lineno += 1
            if lineno == 1 and text.startswith("\ufeff"):
                text = text[1:]
            if "\x00" in text:
                raise DataFormatError(path, lineno, _nul_problem(text))
            yield lineno, _strip_eol(text)


class TextLines:
    """A file-like view of :func:`iter_lines` for code written against ``open()``: iterating yields lines ending
    in ``"\\n"``; ``line`` is the number of the last line read."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.line = 0
        self._it = iter_lines(self.path)

    def __enter__(self) -> TextLines:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[str]:
        for self.line, text in self._it:
            yield text + "\n"

    def close(self) -> None:
        """Close the underlying file."""
        self._it.close()


def open_text(path: str | Path) -> TextLines:
    """Open a UTF-8 text file (``.gz`` decompressed) for line iteration with :func:`iter_lines`'s errors."""
    path = Path(path)
    if not path.is_file():
        raise IndusError(f"{path}: file not found")
    return TextLines(path)


def read_text(path: str | Path) -> str:
    """The whole text of a UTF-8 file (``.gz`` decompressed), byte-order mark dropped, line endings as they are.

    Raises
    ------
    DataFormatError
        Bytes that are not UTF-8, or a corrupt gzip stream, naming the file and the line.
    """
    path = Path(path)
    chunks: list[bytes] = []
    newlines = 0
    with _open_binary(path) as fh:
        while True:
            try:
                chunk = fh.read(1 << 20)
            except _READ_ERRORS as exc:
                raise DataFormatError(path, newlines + 1, _read_problem(path, exc)) from None
            if not chunk:
                break
            chunks.append(chunk)
            newlines += chunk.count(b"\n")
    data = b"".join(chunks)
    if data.startswith(BOM):
        data = data[len(BOM) :]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line_start = data.rfind(b"\n", 0, exc.start) + 1
        line = data.count(b"\n", 0, exc.start) + 1
        line_end = data.find(b"\n", exc.start)
        raw = data[line_start : line_end if line_end != -1 else len(data)]
        shifted = UnicodeDecodeError(exc.encoding, exc.object, exc.start - line_start, exc.end - line_start, exc.reason)
        raise DataFormatError(path, line, _decode_problem(path, raw if line > 1 else data[:64], shifted)) from None
    nul = text.find("\x00")
    if nul != -1:  # NUL is no character of any text format indus reads: binary data, or UTF-16 saved as bytes
        start = text.rfind("\n", 0, nul) + 1
        raise DataFormatError(path, line_at(text, nul), _nul_problem(text[start:]))
    return text


def lone_surrogate(obj: Any) -> str | None:
    """The first lone surrogate (``"\\ud800"``..``"\\udfff"``, legal JSON escapes but no text) in the strings of a
    parsed JSON value, as ``"\\udXXX"``, or ``None``. Tokenizers and file writers fail on them far from the file."""
    stack = [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            for ch in item:
                if "\ud800" <= ch <= "\udfff":
                    return f"\\u{ord(ch):04x}"
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return None


def has_surrogate_escape(raw: str) -> bool:
    """Whether JSON text may hold a ``\\uD800``..``\\uDFFF`` escape (a cheap test before :func:`lone_surrogate`)."""
    return "\\ud" in raw or "\\uD" in raw


def line_at(text: str, index: int) -> int:
    """The 1-based line (counted at ``\\n`` only) of character ``index`` in ``text``."""
    return text.count("\n", 0, max(0, index)) + 1


def split_lines(text: str) -> list[str]:
    """``text`` cut at ``\\n`` (a ``\\r`` before it dropped): the lines an editor shows, unlike ``str.splitlines``."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]
