"""Tiny pair files for the retriever tests (written by the tests themselves)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

TOPICS = [
    "stellar winds",
    "dark matter",
    "protein folding",
    "ocean heat",
    "gene regulation",
    "solar flares",
    "cloud feedback",
    "comet dust",
    "sea ice",
    "soil carbon",
]


def write_pairs(path: Path, source: str, n: int = 10, negatives: bool = False) -> Path:
    with path.open("w", encoding="utf-8") as fh:
        for i in range(n):
            topic = TOPICS[i % len(TOPICS)]
            row = {
                "anchor": f"{source}: what is {topic}? ({i})",
                "positive": f"{source} notes on {topic}, part {i}.",
                "source": source,
            }
            if negatives:
                row["negative"] = f"{source} unrelated text number {i}."
            fh.write(json.dumps(row) + "\n")
    return path


@pytest.fixture
def pairs_dir(tmp_path) -> Path:
    """Three sources of ten pairs each, one file per source; the third has hard negatives."""
    folder = tmp_path / "pairs"
    folder.mkdir()
    write_pairs(folder / "alpha.jsonl", "alpha")
    write_pairs(folder / "beta.jsonl", "beta")
    write_pairs(folder / "gamma.jsonl", "gamma", negatives=True)
    return folder
