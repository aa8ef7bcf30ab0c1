"""Shared fixtures: the optional shared data folder and a tiny local model built on the fly."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]


def _shared_data() -> Path | None:
    for candidate in (os.environ.get("INDUS_DATA"), REPO.parent / "shared" / "data"):
        if candidate and (Path(candidate) / "README.md").is_file():
            return Path(candidate)
    return None


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared data folder; tests that need it skip cleanly when it is absent."""
    root = _shared_data()
    if root is None:
        pytest.skip("shared data folder not found (set INDUS_DATA)")
    return root


@pytest.fixture(scope="session")
def micro_model_dir(tmp_path_factory) -> Path:
    """A 2-layer, 32-wide RoBERTa with minilm's tokenizer, saved as a Hugging Face folder."""
    from indus.models import materialize

    out = tmp_path_factory.mktemp("micro-model")
    return materialize("random:micro", out, seed=0)


@pytest.fixture(autouse=True)
def _restore_data_root_env():
    """`indus --data-root` stores the root in the process environment (for the subprocesses it starts); CLI tests run
    in-process, so put it back after each test instead of letting it leak into the next."""
    saved = os.environ.get("INDUS_DATA")
    yield
    if saved is None:
        os.environ.pop("INDUS_DATA", None)
    else:
        os.environ["INDUS_DATA"] = saved
