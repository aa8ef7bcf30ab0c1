"""The README is the front door (under 250 lines) and every relative link or image of the docs resolves."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
#: ``[text](target)`` and ``![alt](target)``, the target up to a space, ``)`` or ``#``
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s#]*)(#[^)\s]*)?\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def _links(path: Path) -> list[str]:
    text = FENCE.sub("", path.read_text(encoding="utf-8"))  # code blocks hold no links
    return [m.group(1) for m in LINK.finditer(text) if m.group(1)]


def test_readme_is_a_front_door() -> None:
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) < 250, f"README.md has {len(lines)} lines; manuals belong in docs/"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(doc: Path) -> None:
    broken = []
    for target in _links(doc):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        resolved = (doc.parent / target).resolve()
        if not resolved.exists() or REPO not in resolved.parents:
            broken.append(target)
    assert not broken, f"{doc.relative_to(REPO)}: links that resolve to no file in the repository: {broken}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_no_developer_machine_paths(doc: Path) -> None:
    text = doc.read_text(encoding="utf-8")
    found = sorted(set(re.findall(r"(?:/work/|/tmp/|/home/)\S*", text)))
    assert not found, f"{doc.relative_to(REPO)} names paths of a developer's machine: {found}"


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_anchors_name_headings(doc: Path) -> None:
    text = FENCE.sub("", doc.read_text(encoding="utf-8"))
    broken = []
    for m in LINK.finditer(text):
        target, anchor = m.group(1), m.group(2)
        if not anchor or re.match(r"^[a-z][a-z0-9+.-]*:", target) or not target.endswith((".md", "")):
            continue
        page = (doc.parent / target) if target else doc
        if page.suffix != ".md" or not page.is_file():
            continue
        headings = re.findall(r"^#+ (.+)$", FENCE.sub("", page.read_text(encoding="utf-8")), re.M)
        if anchor[1:] not in {_slug(h) for h in headings}:
            broken.append(f"{target}{anchor}")
    assert not broken, f"{doc.relative_to(REPO)}: anchors that name no heading: {broken}"


def test_every_manual_is_reachable() -> None:
    """Each docs/*.md is linked from the README or from another manual."""
    linked = set()
    for doc in DOCS:
        linked |= {(doc.parent / t).resolve() for t in _links(doc) if t.endswith(".md")}
    orphans = sorted(p.name for p in (REPO / "docs").glob("*.md") if p.resolve() not in linked)
    assert not orphans, f"manuals nothing links to: {orphans}"
