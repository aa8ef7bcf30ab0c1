"""Fixtures for the studio: a tiny collection (one document holds <script>), its index, a studio and a client."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

DOCS = [
    {
        "_id": "d1",
        "title": "Stellar winds",
        "text": "Massive stars lose mass through radiation-driven winds. "
        "The winds carry metals into the interstellar medium.",
    },
    {"_id": "d2", "title": "Dark matter", "text": "Rotation curves of galaxies imply unseen mass in halos."},
    {"_id": "d3", "title": "Protein folding", "text": "Chaperones help proteins reach their native structure."},
    {
        "_id": "d4",
        "title": "Ocean heat",
        "text": "The upper ocean stores most of the excess heat of warming. Heat content rose by 0.4 W/m2 since 2005.",
    },
    {"_id": "d5", "title": "Sea ice", "text": "Arctic sea ice extent declines in every month of the year."},
    {"_id": "d6", "title": "", "text": "Comet dust trails cause meteor showers on Earth."},
    {
        "_id": "d7",
        "title": "Markup <b>test</b>",
        "text": "A passage with <script>alert('x')</script> in its text about sea ice and ocean heat.",
    },
    {
        "_id": "d8",
        "title": "Glaciers",
        "text": "Mountain glaciers retreat as summers warm; meltwater raises sea level by about one millimetre a year.",
    },
]


@pytest.fixture(scope="session")
def corpus_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("studio-corpus") / "corpus.jsonl"
    path.write_text("".join(json.dumps(d) + "\n" for d in DOCS), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def index_dir(micro_model_dir, corpus_file, tmp_path_factory) -> Path:
    """A dense (random:micro) + BM25 index of :data:`DOCS`."""
    from indus.retriever.index import build_index

    out = tmp_path_factory.mktemp("studio-index") / "index"
    build_index(str(micro_model_dir), corpus_file, out, progress=False)
    return out


@pytest.fixture(scope="session")
def searcher(index_dir):
    from indus.retriever.search import Searcher

    return Searcher.open(index_dir)


@pytest.fixture
def studio(searcher, corpus_file, tmp_path):
    """A studio over the index, passages from the same corpus (20 words each), bm25 + dense pooled to depth 3."""
    from indus.studio.db import Store
    from indus.studio.passages import load_passages
    from indus.studio.service import Studio, make_pool_systems

    store = Store.open(tmp_path / "studio.db")
    store.set_meta("index", str(searcher.path))
    passages = load_passages(corpus_file, words=20, seed=0)
    return Studio(
        store, searcher, passages, make_pool_systems(["bm25", "dense"], searcher, progress=False), pool_depth=3
    )


@pytest.fixture
def client(studio):
    """A loopback client of the app (no token)."""
    from fastapi.testclient import TestClient

    from indus.studio.app import create_app

    return TestClient(create_app(studio), client=("127.0.0.1", 50000), raise_server_exceptions=False)
