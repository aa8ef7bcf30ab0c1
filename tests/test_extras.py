"""Honest packaging: the core runs `indus data` and `indus scaling` alone; a missing extra names its install line."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import indus
from cli_runner import run_cli
from indus._extras import EXTRA_MODULES, MissingExtraError, require, require_extra
from indus.errors import IndusError

REPO = Path(__file__).resolve().parents[1]


def test_require_names_the_extra_and_the_install_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)  # `import faiss` now fails, as when it is not installed
    with pytest.raises(MissingExtraError) as err:
        require("faiss", extra="eval", what="indus retriever index")
    message = str(err.value)
    assert isinstance(err.value, IndusError)
    assert message == (
        "indus retriever index needs the 'eval' extra (No module named 'faiss'): pip install 'indus[eval]'"
    )
    with pytest.raises(MissingExtraError, match=r"needs the 'studio' extra .*pip install 'indus\[studio\]'"):
        monkeypatch.setitem(sys.modules, "uvicorn", None)
        require_extra("studio")


def test_require_returns_the_module_and_refuses_unknown_extras():
    assert require("json", extra="eval").dumps([1]) == "[1]"
    with pytest.raises(ValueError, match="unknown extra"):
        require("json", extra="gpu")


def test_cli_command_without_its_extra_is_one_line_exit_2(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "faiss", None)
    corpus = tmp_path / "docs.jsonl"
    corpus.write_text('{"id": "1", "text": "a"}\n')
    code, err = run_cli(
        ["retriever", "index", "--model", "bm25", "--corpus", corpus, "--out", tmp_path / "idx"], capsys
    )
    assert code == 2
    assert err.strip().splitlines() == [
        "error: indus retriever index needs the 'eval' extra (No module named 'faiss'): pip install 'indus[eval]'"
    ]
    assert not (tmp_path / "idx").exists()


#: every module of every extra made unimportable in a fresh interpreter (a finder that refuses them, so that
#: libraries probing ``sys.modules`` see them absent): what the core install gives
_CORE_ONLY = """
import sys
BLOCKED = set({modules!r})
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None
sys.meta_path.insert(0, Block())
sys.argv = ["indus", *{args!r}]
from indus.cli import main
main()
"""


@pytest.mark.parametrize(
    "args",
    [
        ["scaling", "tasks"],
        ["scaling", "fit", "--task", "gsm8k-cot", "--n-bootstrap", "0"],
        ["data", "check", "{ner}"],
    ],
    ids=lambda a: " ".join(a[:2]),
)
def test_core_commands_need_no_extra(args, tmp_path):
    ner = tmp_path / "ner"
    ner.mkdir()
    for split in ("train", "dev", "test"):
        (ner / f"{split}.tsv").write_text("Aspirin\tB-Chemical\nworks\tO\n\n")
    args = [a.replace("{ner}", str(ner)) for a in args]
    modules = sorted({m for mods in EXTRA_MODULES.values() for m in mods})
    code = _CORE_ONLY.format(modules=modules, args=args)
    # the indus under test (not another install on the path): its source folder first on PYTHONPATH
    src = str(Path(indus.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Traceback" not in done.stderr


def test_extras_declared_in_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    assert set(EXTRA_MODULES) | {"all", "dev"} == set(extras)
    assert set(extras["all"]) == {f"indus[{e}]" for e in EXTRA_MODULES}
    core = {d.split(">")[0].split("=")[0].split("[")[0].strip().lower() for d in project["dependencies"]}
    assert core.isdisjoint({"torch", "transformers", "faiss-cpu", "fastapi", "sentence-transformers"}), core


def _floors() -> dict[str, str]:
    pins = {}
    for line in (REPO / "constraints-floor.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[name.strip().lower()] = version.strip()
    return pins


def test_declared_lower_bounds_are_the_tested_floors():
    """Each `>=` in pyproject.toml is the version constraints-floor.txt pins (what `make test-floor` runs)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    floors = _floors()
    declared = [*project["dependencies"], *(d for group in project["optional-dependencies"].values() for d in group)]
    checked = 0
    for requirement in declared:
        if ">=" not in requirement or requirement.startswith("indus["):
            continue
        name, _, version = requirement.partition(">=")
        if name.strip().lower() in ("ruff", "selenium"):  # tools of `make test` / the browser test, not of the suite
            continue
        assert floors.get(name.strip().lower()) == version.strip(), (requirement, floors.get(name.strip().lower()))
        checked += 1
    assert checked >= 25
