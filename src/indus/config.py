"""Typed configuration: dataclasses loaded from YAML, overridden from the command line, saved with every run.

Every concern (pretraining, distillation, retrieval, the pipeline) declares a dataclass with defaults, help
text in ``field(metadata={"help": ...})`` and validation in ``__post_init__``. This module turns YAML plus
``key=value`` overrides into such a dataclass, with errors that name the file and the key.

Example
-------
>>> from dataclasses import dataclass, field
>>> @dataclass
... class Opt:
...     lr: float = field(default=1e-3, metadata={"help": "peak learning rate"})
...     steps: int = 10
>>> build_config(Opt, {"lr": 0.01}, overrides=["steps=20"])
Opt(lr=0.01, steps=20)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from indus.atomic import atomic_write_text
from indus.data.text import line_at, read_text
from indus.errors import IndusError

T = TypeVar("T")


def _yaml_problem(exc: yaml.YAMLError, text: str) -> tuple[int | None, str]:
    """The line (counted at ``\\n`` only, as editors do: PyYAML also breaks lines at U+2028) and a one-line
    description of a YAML error."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    line = line_at(text, mark.index) if mark is not None else None
    if isinstance(exc, yaml.reader.ReaderError):
        line = line_at(text, exc.position)
        problem = f"character {exc.character!r} is not allowed in YAML"
    else:
        problem = " ".join(str(p) for p in (getattr(exc, "context", None), getattr(exc, "problem", None)) if p)
    return line, " ".join((problem or str(exc)).split())


def parse_yaml(text: str, where: str, *, lines: bool = True) -> Any:
    """Parse YAML text; a syntax error is an :class:`IndusError` naming ``where`` and (``lines``) the line."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        line, problem = _yaml_problem(exc, text)
        raise IndusError(f"{where}{f':{line}' if line and lines else ''}: invalid YAML ({problem})") from None
    except RecursionError:
        raise IndusError(f"{where}: invalid YAML (nested too deeply)") from None


def load_yaml_file(path: str | Path) -> Any:
    """Read a YAML file (UTF-8, a byte-order mark allowed), with clear errors for a missing file, bytes that are
    not UTF-8 and bad syntax."""
    path = Path(path)
    if not path.is_file():
        raise IndusError(f"{path}: config file not found")
    return parse_yaml(read_text(path), str(path))


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, with a clear error for a missing file, bad bytes or bad syntax."""
    data = load_yaml_file(path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise IndusError(f"{path}: expected a YAML mapping of settings, found {type(data).__name__}")
    return data


def apply_overrides(data: dict[str, Any], overrides: list[str] | None) -> dict[str, Any]:
    """Apply ``a.b=value`` overrides (values parsed as YAML scalars) to a nested mapping, in place; a number
    indexes a list (``eval.tasks.0.settings.epochs=2``)."""
    for item in overrides or []:
        if "=" not in item:
            raise IndusError(f"--set {item!r}: expected key=value, e.g. train.lr=3e-4")
        key, raw = item.split("=", 1)
        if not key.strip() or any(not part.strip() for part in key.split(".")):
            raise IndusError(f"--set {item!r}: expected a setting name before '=', e.g. train.lr=3e-4")
        value = parse_yaml(raw, f"--set {item!r}", lines=False) if raw.strip() else ""
        node: Any = data
        parts = key.strip().split(".")
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise IndusError(
                        f"--set {item!r}: {'.'.join(parts[:i])} is a list of {len(node)}; "
                        f"expected an index 0..{len(node) - 1}, got {part!r}"
                    )
                if last:
                    node[int(part)] = value
                else:
                    node = node[int(part)]
            elif isinstance(node, dict):
                if last:
                    node[part] = value
                else:
                    node = node.setdefault(part, {})
            else:
                raise IndusError(f"--set {item!r}: {parts[i - 1]!r} is not a section")
    return data


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def _coerce(value: Any, tp: Any, where: str) -> Any:
    tp, optional = _unwrap_optional(tp)
    if value is None:
        if optional or tp is Any:
            return None
        raise IndusError(f"{where}: a value is required")
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise IndusError(f"{where}: expected a section (mapping), found {value!r}")
        return build_config(tp, value, where=where)
    origin = typing.get_origin(tp)
    if origin in (list, tuple):
        if isinstance(value, str | int | float):
            value = [value]
        if not isinstance(value, list | tuple):
            raise IndusError(f"{where}: expected a list, found {value!r}")
        args = typing.get_args(tp)
        item_tp = args[0] if args else Any
        items = [_coerce(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin is dict:
        if not isinstance(value, dict):
            raise IndusError(f"{where}: expected a mapping, found {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise IndusError(f"{where}: expected true or false, found {value!r}")
    if tp is int:
        if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, float) and value.is_integer())):
            raise IndusError(f"{where}: expected an integer, found {value!r}")
        return int(value)
    if tp is float:
        number: Any = value
        if isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                pass
        if isinstance(number, bool) or not isinstance(number, int | float):
            raise IndusError(f"{where}: expected a number, found {value!r}")
        # NaN and infinity pass every `x <= 0` check in __post_init__ and then poison a run
        if not math.isfinite(number):
            raise IndusError(f"{where}: expected a finite number, found {value!r}")
        return float(number)
    if tp is str:
        if isinstance(value, dict | list):
            raise IndusError(f"{where}: expected a string, found {value!r}")
        return str(value)
    return value


def build_config(
    cls: type[T], data: dict[str, Any] | None = None, overrides: list[str] | None = None, where: str = "config"
) -> T:
    """Build dataclass ``cls`` from a nested mapping plus ``key=value`` overrides.

    Unknown keys, wrong types and failed ``__post_init__`` checks raise :class:`IndusError` naming the key.
    """
    data = apply_overrides(dict(data or {}), overrides)
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise IndusError(f"{where}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(fields)}")
    kwargs = {name: _coerce(value, hints[name], f"{where}.{name}") for name, value in data.items()}
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as exc:
        raise IndusError(f"{where}: {exc}") from None


def load_config(cls: type[T], path: str | Path | None = None, overrides: list[str] | None = None) -> T:
    """Load dataclass ``cls`` from a YAML file (optional) and ``key=value`` overrides."""
    data = read_yaml(path) if path is not None else {}
    return build_config(cls, data, overrides, where=str(path) if path is not None else "config")


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """A plain, YAML/JSON-serialisable dict of a (nested) config dataclass."""

    def convert(v: Any) -> Any:
        if isinstance(v, Path):
            return str(v)
        if isinstance(v, list | tuple):
            return [convert(x) for x in v]
        if isinstance(v, dict):
            return {k: convert(x) for k, x in v.items()}
        return v

    return convert(dataclasses.asdict(cfg))


def save_config(cfg: Any, path: str | Path) -> Path:
    """Write the resolved config as YAML, atomically."""
    return atomic_write_text(path, yaml.safe_dump(config_to_dict(cfg), sort_keys=False))


def config_hash(*parts: Any, length: int = 12) -> str:
    """A stable short hash of configs and other JSON-serialisable values."""

    def norm(p: Any) -> Any:
        return config_to_dict(p) if dataclasses.is_dataclass(p) and not isinstance(p, type) else p

    blob = json.dumps([norm(p) for p in parts], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:length]


def launcher_rank() -> tuple[int, int]:
    """``(rank, world size)`` of this process as set by ``torchrun`` / ``accelerate launch`` (``(0, 1)`` alone)."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
