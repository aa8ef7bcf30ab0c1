"""Registries of ``"module:attr"`` targets, imported on first use so that one entry's heavy imports (torch,
transformers, faiss) never slow a command that does not need it.

Example
-------
>>> lazy_attr({"sqrt": "math:sqrt"}, "sqrt", what="function")(9.0)
3.0
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from indus.errors import IndusError


def lazy_attr(registry: Mapping[str, str], key: str, *, what: str = "entry", where: str = "") -> Any:
    """The object ``registry[key]`` names (``"package.module:attr"``), imported now.

    An unknown ``key``, or a target whose module or attribute this version lacks, is an
    :class:`~indus.errors.IndusError` (prefixed with ``where``) naming the known keys; an import error inside the
    target module itself (a missing dependency of it) propagates unchanged.
    """
    prefix = f"{where}: " if where else ""
    if key not in registry:
        raise IndusError(f"{prefix}unknown {what} {key!r}; known: {', '.join(registry)}")
    module_name, _, attr = registry[key].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        raise IndusError(f"{prefix}the {key} {what} ({module_name}) is not available in this version") from None
    if not hasattr(module, attr):
        raise IndusError(f"{prefix}the {key} {what} ({registry[key]}) is not available in this version")
    return getattr(module, attr)
