"""The package's rooms import each other without a cycle, and the command line starts without the heavy libraries.

A room is a subpackage of ``src/indus`` (``data``, ``encoder``, ``evaluation``, ...); each top-level module
(``models``, ``config``, ``cards``, ...) is a room of its own. Every ``import indus...`` / ``from indus... import``
counts, at module level and inside functions alike: a lazy import hides a dependency from the start-up time, not
from the design.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from collections import defaultdict
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "indus"
HEAVY = ("torch", "transformers", "sentence_transformers", "faiss", "datasets", "matplotlib")

Edges = dict[str, dict[str, list[str]]]  # room -> room it imports -> ["file:line", ...]


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> list[str]:
    """The absolute module names an import statement reads (``from indus import models`` reads ``indus.models``)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:  # relative: from the file's package, up ``level - 1`` more
        package = module.split(".") if is_package else module.split(".")[:-1]
        package = package[: len(package) - (node.level - 1)]
        base = ".".join(package + ([node.module] if node.module else []))
    else:
        base = node.module or ""
    return [f"{base}.{alias.name}" for alias in node.names] + [base]


def _room(module: str, root: Path) -> str | None:
    """``data`` for ``indus.data.conll``, ``models`` for ``indus.models``, ``indus`` for the package itself."""
    parts = module.split(".")
    if parts[0] != root.name:
        return None
    if len(parts) == 1:
        return root.name
    name = parts[1]
    return name if (root / name).is_dir() or (root / f"{name}.py").is_file() else None


def import_graph(root: Path) -> Edges:
    """Which room imports which, with every ``file:line`` that does, over all ``*.py`` under ``root``."""
    edges: Edges = defaultdict(lambda: defaultdict(list))
    for path in sorted(root.rglob("*.py")):
        module = _module_name(path, root)
        here = _room(module, root)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            targets = {_room(name, root) for name in _imported(node, module, path.name == "__init__.py")}
            for target in targets - {None, here}:
                edges[here][target].append(f"{path.relative_to(root)}:{node.lineno}")
    return edges


def room_cycles(edges: Edges) -> list[list[str]]:
    """The strongly connected groups of more than one room (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    nodes = set(edges) | {w for targets in edges.values() for w in targets}
    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return groups


def _explain(edges: Edges, group: list[str]) -> str:
    return "; ".join(f"{a} -> {b} ({', '.join(edges[a][b][:3])})" for a in group for b in group if b in edges[a])


def test_no_import_cycle_between_rooms():
    edges = import_graph(SRC)
    assert {"data", "encoder", "evaluation", "retriever", "pipeline", "models"} <= set(edges)  # the walk saw them
    cycles = room_cycles(edges)
    assert not cycles, "import cycles between rooms: " + " | ".join(_explain(edges, g) for g in cycles)


def test_models_depend_on_no_room():
    """``indus.models`` (one meaning for a model string) sits below every room: it imports top-level modules only."""
    edges = import_graph(SRC)
    rooms = {p.name for p in SRC.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert not set(edges.get("models", {})) & rooms, dict(edges["models"])


def _plant(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / "indus" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root / "indus"


def test_walker_finds_a_cycle_through_a_function_level_import(tmp_path):
    root = _plant(
        tmp_path,
        {
            "__init__.py": "",
            "models.py": "from indus.errors import IndusError\n",
            "errors.py": "",
            "a/__init__.py": "",
            "a/x.py": "import indus.models\n\ndef f():\n    from indus.b.y import g\n    return g\n",
            "b/__init__.py": "",
            "b/y.py": "from ..a import x\n\ndef g():\n    return x\n",
        },
    )
    edges = import_graph(root)
    assert edges["a"]["b"] == ["a/x.py:4"] and edges["b"]["a"] == ["b/y.py:1"]
    assert room_cycles(edges) == [["a", "b"]]
    assert "models" in edges["a"] and "errors" in edges["models"]  # leaves are rooms too, without a cycle


def test_walker_finds_a_cycle_through_a_top_level_module(tmp_path):
    """Today's shape before the presets moved: encoder -> tokenizer -> models -> encoder."""
    root = _plant(
        tmp_path,
        {
            "__init__.py": "",
            "models.py": "from indus.encoder.presets import PRESETS\n",
            "encoder/__init__.py": "",
            "encoder/presets.py": "PRESETS = {}\n",
            "encoder/pretrain.py": "def tok():\n    from indus.tokenizer import resolve\n",
            "tokenizer/__init__.py": "",
            "tokenizer/resolve.py": "def load():\n    from indus.models import load_tokenizer\n",
        },
    )
    assert room_cycles(import_graph(root)) == [["encoder", "models", "tokenizer"]]
    (root / "presets.py").write_text("PRESETS = {}\n")
    (root / "models.py").write_text("from indus.presets import PRESETS\n")  # the fix: presets beside models
    assert room_cycles(import_graph(root)) == []


def _heavy_after(code: str) -> list[str]:
    probe = f"import sys\n{code}\nprint('HEAVY:', *(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(SRC.parent), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"},
    )
    return out.stdout.splitlines()[-1].split()[1:]  # the command's own output comes first


@pytest.mark.parametrize("argv", [["--help"], ["scaling", "--help"], ["data", "--help"], ["run", "--help"]])
def test_cli_starts_without_heavy_libraries(argv):
    code = f"from indus.cli import app\ntry:\n    app({argv!r})\nexcept SystemExit:\n    pass"
    assert _heavy_after(code) == []


def test_light_library_modules_import_no_heavy_library():
    assert _heavy_after("import indus.models, indus.config, indus.cards, indus.pipeline, indus.data.check") == []
