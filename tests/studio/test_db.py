"""The studio database: versioned schema, WAL with several writers, and nothing committed lost to SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from indus.errors import IndusError
from indus.studio import db
from indus.studio.db import SCHEMA_VERSION, Store
from indus.studio.passages import Passage, load_passages, split_text
from indus.studio.service import Studio

REPO = Path(__file__).resolve().parents[2]


def test_new_database_records_its_schema_version_and_runs_in_wal(tmp_path):
    store = Store.open(tmp_path / "s.db")
    assert store.get_meta("schema_version") == str(SCHEMA_VERSION)
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == db.BUSY_TIMEOUT_MS
    store.set_meta("schema_version", "99")
    with pytest.raises(IndusError, match="schema version 99; this indus reads version 1"):
        Store.open(tmp_path / "s.db")


def test_a_database_of_something_else_is_refused(tmp_path):
    import sqlite3

    con = sqlite3.connect(tmp_path / "other.db")
    con.execute("CREATE TABLE users (id INTEGER)")
    con.commit()
    con.close()
    with pytest.raises(IndusError, match="not an indus studio database"):
        Store.open(tmp_path / "other.db")
    with pytest.raises(IndusError, match="not a usable database URL"):
        Store.open("nosuchdialect://x/y")


def test_passages_are_exact_substrings_of_at_least_n_words(tmp_path):
    text = "One two three. Four five six seven. Eight nine ten eleven twelve thirteen fourteen. Fin."
    spans = split_text(text, 4)
    assert [text[a:b] for a, b in spans] == [
        "One two three. Four five six seven.",
        "Eight nine ten eleven",
        "twelve thirteen fourteen. Fin.",
    ]
    corpus = tmp_path / "c.txt"
    corpus.write_text("short line\n" + " ".join(f"w{i}." for i in range(45)) + "\n", encoding="utf-8")
    passages = load_passages(corpus, words=20, seed=1)
    assert sorted(p.id for p in passages) == ["1", "2-p1", "2-p2"]
    assert all(p.text in corpus.read_text() for p in passages)
    # 20 + 20 words and a 5-word tail, which joins the passage before it
    assert sorted(len(p.text.split()) for p in passages if p.doc_id == "2") == [20, 25]


def _writer(path: Path, annotator: str, n: int, errors: list[str]) -> None:
    store = Store.open(path)  # its own engine, as another process would have
    studio = Studio(store, None, [Passage("p1", "p1", "", "Sea ice declines in every month.")])
    try:
        for i in range(n):
            studio.annotate(annotator, "p1", "unanswerable", f"question {i} by {annotator}")
    except Exception as exc:  # noqa: BLE001 (the test reports any failure)
        errors.append(f"{annotator}: {exc!r}")
    finally:
        store.close()


def test_several_writers_at_once_lose_nothing(tmp_path):
    path = tmp_path / "s.db"
    Store.open(path).close()
    errors: list[str] = []
    threads = [threading.Thread(target=_writer, args=(path, f"a{i}", 25, errors)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    store = Store.open(path)
    with store.read() as conn:
        rows = conn.execute(select(db.annotations.c.annotator, func.count()).group_by(db.annotations.c.annotator))
        assert dict(rows.all()) == {f"a{i}": 25 for i in range(4)}
    assert store.integrity_ok()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_sigkill_mid_write_keeps_every_committed_annotation(tmp_path):
    """The real server, four clients writing as fast as they can, SIGKILL: every acknowledged write survives."""
    from indus.retriever.index import build_index

    corpus = tmp_path / "c.jsonl"
    corpus.write_text(
        "".join(
            json.dumps({"_id": f"d{i}", "title": "", "text": f"sea ice report {i} of the year."}) + "\n"
            for i in range(6)
        ),
        encoding="utf-8",
    )
    build_index("bm25", corpus, tmp_path / "index", progress=False)
    port, db_path = _free_port(), tmp_path / "s.db"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "HF_HUB_OFFLINE": "1"}
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "indus",
            "studio",
            "serve",
            "--index",
            str(tmp_path / "index"),
            "--db",
            str(db_path),
            "--port",
            str(port),
            "--pool",
            "bm25",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            pytest.fail(f"server did not start: {server.stderr.read().decode()[-2000:]}")
        acked: list[int] = []
        stop = threading.Event()

        def client(name: str) -> None:
            with httpx.Client(base_url=base, timeout=5) as http:
                i = 0
                while not stop.is_set():
                    try:
                        r = http.post(
                            "/api/annotations",
                            json={
                                "annotator": name,
                                "passage_id": f"d{i % 6}",
                                "kind": "question",
                                "question": f"sea ice {i}?",
                                "answer_start": 0,
                                "answer_text": "sea ice",
                            },
                        )
                    except httpx.HTTPError:
                        return  # the server is gone
                    assert r.status_code == 200, r.text
                    acked.append(r.json()["annotation_id"])
                    i += 1

        threads = [threading.Thread(target=client, args=(f"w{i}",)) for i in range(4)]
        for t in threads:
            t.start()
        while len(acked) < 40:
            time.sleep(0.02)
        server.send_signal(signal.SIGKILL)  # mid-write: the clients are still posting
        server.wait(timeout=10)
        stop.set()
        for t in threads:
            t.join(timeout=10)
    finally:
        if server.poll() is None:
            server.kill()
    store = Store.open(db_path)
    assert store.integrity_ok()
    with store.read() as conn:
        stored = set(conn.execute(select(db.annotations.c.id)).scalars())
        queries = dict(conn.execute(select(db.queries.c.annotation_id, db.queries.c.id)).all())
    assert set(acked) <= stored and len(acked) >= 40
    assert all(queries.get(a) == f"w{a}" for a in stored)  # an annotation and its query commit together
