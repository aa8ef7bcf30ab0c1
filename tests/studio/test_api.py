"""The studio's JSON API and pages through the ASGI test client: search, writing, judging, progress, safety."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sklearn.metrics import cohen_kappa_score

from indus.errors import IndusError
from indus.studio.app import create_app


def _question(client, annotator="ana", word_index=2):
    passage = client.get("/api/passages/next", params={"annotator": annotator}).json()["passage"]
    text = passage["text"]
    word = text.split()[word_index]
    start = text.index(word)
    r = client.post(
        "/api/annotations",
        json={
            "annotator": annotator,
            "passage_id": passage["id"],
            "kind": "question",
            "question": f"Which word is {word}?",
            "answer_start": start,
            "answer_text": word,
        },
    )
    assert r.status_code == 200, r.text
    return passage, r.json()


def test_healthz_and_search_json(client):
    health = client.get("/healthz").json()
    assert health["status"] == "ok" and health["documents"] == 8 and health["default_mode"] == "hybrid"
    for mode in ("bm25", "dense", "hybrid"):
        body = client.get("/api/search", params={"q": "arctic sea ice", "k": 3, "mode": mode}).json()
        assert set(body) == {"query", "mode", "took_ms", "results"} and body["mode"] == mode
        assert body["took_ms"] >= 0 and 1 <= len(body["results"]) <= 3
        assert set(body["results"][0]) == {"id", "title", "text", "score"}
        scores = [r["score"] for r in body["results"]]
        assert scores == sorted(scores, reverse=True)
    assert client.get("/api/search", params={"q": "arctic sea ice", "mode": "bm25"}).json()["results"][0]["id"] == "d5"


@pytest.mark.parametrize(
    "params, message",
    [
        ({"q": ""}, "the query is empty"),
        ({"q": "x" * 10_000}, "10000 characters"),
        ({"q": "ice", "mode": "nope"}, "unknown mode 'nope'"),
        ({"q": "ice", "k": "0"}, "k must be an integer from 1 to 100"),
        ({"q": "ice", "k": "101"}, "k must be an integer from 1 to 100"),
        ({"q": "ice", "k": "ten"}, "k must be an integer"),
    ],
)
def test_bad_search_is_a_one_line_400(client, params, message):
    r = client.get("/api/search", params=params)
    assert r.status_code == 400 and message in r.json()["error"] and "\n" not in r.json()["error"]
    page = client.get("/search", params=params | ({"q": params["q"]} if params["q"] else {"q": " "}))
    assert page.status_code == 400 and "Traceback" not in page.text and 'class="error"' in page.text


def test_search_page_highlights_terms_and_escapes_markup(client):
    page = client.get("/search", params={"q": "script sea ice"}).text
    assert "<mark>sea</mark> <mark>ice</mark>" in page
    assert "<script>alert" not in page and "&lt;<mark>script</mark>&gt;alert(&#39;x&#39;)" in page
    assert "Markup &lt;b&gt;test&lt;/b&gt;" in page and "<b>test</b>" not in page
    assert " ms</p>" in page  # the time taken


def test_write_page_escapes_a_script_passage(client):
    page = client.get("/write", params={"passage": "d7"})
    assert page.status_code == 200
    assert "<script>alert" not in page.text and "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in page.text


def test_a_question_is_a_qa_item_an_ir_query_and_a_pool(client, studio):
    passage, result = _question(client)
    qid = result["query_id"]
    assert qid == f"w{result['annotation_id']}"
    queries = client.get("/api/queries").json()["queries"]
    assert [q["id"] for q in queries] == [qid] and queries[0]["source"] == "written"
    pool = client.get("/api/pool", params={"query": qid}).json()["pool"]
    expected = set()
    for system in studio.pool_systems:
        expected |= set(system.ranked([queries[0]["text"]], 3)[0])
    assert {p["doc_id"] for p in pool} == expected and len(pool) == len(expected)
    assert all(set(p) == {"doc_id", "title", "text", "position", "grade"} for p in pool)  # no system names
    # the next passage for this annotator is another one; another annotator still gets the first
    assert client.get("/api/passages/next", params={"annotator": "ana"}).json()["passage"]["id"] != passage["id"]
    assert client.get("/api/passages/next", params={"annotator": "bob"}).json()["passage"]["id"] == passage["id"]


@pytest.mark.parametrize(
    "change, status, message",
    [
        ({"answer_start": 10_000}, 400, "outside the passage"),
        ({"answer_start": -1}, 400, "outside the passage"),
        ({"answer_start": 1}, 400, "does not match"),
        ({"answer_start": "3"}, 400, "answer_start must be an integer"),
        ({"passage_id": "nope"}, 404, "unknown passage"),
        ({"annotator": "<script>"}, 400, "annotator name"),
        ({"annotator": ""}, 400, "annotator name"),
        ({"kind": "maybe"}, 400, "unknown kind"),
        ({"question": " "}, 400, "the question is empty"),
        ({"question": "q" * 2000}, 400, "the limit is 1000"),
    ],
)
def test_bad_annotation_is_rejected(client, change, status, message):
    passage = client.get("/api/passages/item", params={"id": "d5"}).json()["passage"]
    body = {
        "annotator": "ana",
        "passage_id": "d5",
        "kind": "question",
        "question": "Which ice?",
        "answer_start": passage["text"].index("sea ice"),
        "answer_text": "sea ice",
    } | change
    r = client.post("/api/annotations", json=body)
    assert r.status_code == status and message in r.json()["error"], r.text
    assert client.get("/api/progress").json()["total"]["questions"] == 0


def test_unanswerable_and_no_question(client):
    for kind in ("unanswerable", "no_question"):
        r = client.post(
            "/api/annotations",
            json={"annotator": "ana", "passage_id": "d2", "kind": kind, "question": "When did the sun form?"},
        )
        assert r.status_code == 200 and r.json()["query_id"] is None
    total = client.get("/api/progress").json()["total"]
    assert (total["unanswerable"], total["no_question"], total["passages_seen"]) == (1, 1, 1)
    assert (
        client.post(
            "/api/annotations", json={"annotator": "ana", "passage_id": "d2", "kind": "unanswerable", "question": ""}
        ).status_code
        == 400
    )


def test_judgements_two_annotators_both_count_and_kappa_matches_sklearn(client):
    _, result = _question(client)
    qid = result["query_id"]
    pool = [p["doc_id"] for p in client.get("/api/pool", params={"query": qid}).json()["pool"]]
    ana = {d: [2, 1, 0][i % 3] for i, d in enumerate(pool)}
    bob = {d: [2, 0, 0][i % 3] for i, d in enumerate(pool)}
    assert client.post("/api/judgements", json={"annotator": "ana", "query_id": qid, "grades": ana}).json()[
        "added"
    ] == len(pool)
    assert client.post("/api/judgements", json={"annotator": "bob", "query_id": qid, "grades": bob}).status_code == 200
    # changing a grade updates it, it does not add a second judgement
    again = client.post("/api/judgements", json={"annotator": "bob", "query_id": qid, "grades": {pool[0]: 1}}).json()
    assert again == {"added": 0, "changed": 1, "pool_size": len(pool)}
    bob[pool[0]] = 1
    prog = client.get("/api/progress").json()
    total = prog["total"]
    assert total["judgements"] == 2 * len(pool) and total["queries_judged"] == 1 and total["kappa_pairs"] == len(pool)
    a, b = [ana[d] for d in pool], [bob[d] for d in pool]
    assert total["kappa"] == pytest.approx(cohen_kappa_score(a, b, labels=[0, 1, 2]))
    assert total["pool_depth_covered"] == 3.0
    mine = client.get("/api/pool", params={"query": qid, "annotator": "bob"}).json()["pool"]
    assert {p["doc_id"]: p["grade"] for p in mine} == bob


@pytest.mark.parametrize(
    "body, status, message",
    [
        ({"query_id": "nope", "grades": {"d1": 2}}, 404, "unknown query"),
        ({"grades": {"not-in-pool": 2}}, 400, "not in the pool"),
        ({"grades": {"POOLED": 3}}, 400, "must be 2 (relevant), 1 (partly) or 0"),
        ({"grades": {}}, 400, "no judgements"),
        ({"annotator": "a b"}, 400, "annotator name"),
    ],
)
def test_bad_judgement_is_rejected(client, body, status, message):
    _, result = _question(client)
    pooled = client.get("/api/pool", params={"query": result["query_id"]}).json()["pool"][0]["doc_id"]
    full = {"annotator": "ana", "query_id": result["query_id"], "grades": {pooled: 2}} | body
    full["grades"] = {(pooled if k == "POOLED" else k): v for k, v in full["grades"].items()}
    r = client.post("/api/judgements", json=full)
    assert r.status_code == status and message in r.json()["error"], r.text
    assert client.get("/api/progress").json()["total"]["judgements"] == 0


def test_malformed_json_body_is_a_400(client):
    r = client.post("/api/judgements", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json() == {"error": "the request body must be a JSON object"}


def test_non_loopback_clients_read_but_cannot_write(studio):
    remote = TestClient(create_app(studio), client=("203.0.113.7", 4000))
    assert remote.get("/api/search", params={"q": "ice"}).status_code == 200
    r = remote.post("/api/annotations", json={"annotator": "eve", "passage_id": "d2", "kind": "no_question"})
    assert r.status_code == 403 and "read-only" in r.json()["error"]
    assert "Read-only" in remote.get("/search").text


def test_token_guards_every_write(studio):
    app = create_app(studio, token="s3cret-token")
    local = TestClient(app, client=("127.0.0.1", 4000))
    body = {"annotator": "ana", "passage_id": "d2", "kind": "no_question"}
    assert local.post("/api/annotations", json=body).status_code == 403
    assert local.post("/api/annotations", json=body, headers={"X-Studio-Token": "wrong"}).status_code == 403
    assert local.post("/api/annotations", json=body, headers={"X-Studio-Token": "s3cret-token"}).status_code == 200
    assert (
        local.post("/api/annotations", json=body, headers={"Authorization": "Bearer s3cret-token"}).status_code == 200
    )
    remote = TestClient(app, client=("203.0.113.7", 4000))
    assert remote.post("/token", data={"token": "nope"}).status_code == 403
    remote.post("/token", data={"token": "s3cret-token"})  # sets the cookie
    assert remote.post("/api/annotations", json=body).status_code == 200


def test_pages_write_and_judge_through_forms(client):
    assert "Set your annotator name" in client.get("/write").text
    client.post("/annotator", data={"annotator": "ana", "next": "/write"})
    page = client.get("/write")
    assert 'id="passage"' in page.text
    passage = client.get("/api/passages/next", params={"annotator": "ana"}).json()["passage"]
    word = passage["text"].split()[1]
    r = client.post(
        "/write",
        data={
            "passage_id": passage["id"],
            "kind": "question",
            "question": "<script>x</script>?",
            "answer_start": str(passage["text"].index(word)),
            "answer_text": word,
        },
    )
    assert r.status_code == 200 and "Saved question" in r.text
    qid = client.get("/api/queries").json()["queries"][0]["id"]
    judge = client.get("/judge/q", params={"id": qid}).text
    assert "&lt;script&gt;x&lt;/script&gt;?" in judge and "<script>x</script>" not in judge
    pool = client.get("/api/pool", params={"query": qid}).json()["pool"]
    r = client.post(f"/judge/q?id={qid}", data={f"grade:{p['doc_id']}": "1" for p in pool})
    assert r.status_code == 200
    assert client.get("/api/progress").json()["annotators"][0]["judgements"] == len(pool)
    assert client.get("/progress").status_code == 200
    assert client.post("/annotator", data={"annotator": "bad name!"}).status_code == 400
    assert client.get("/judge/q", params={"id": "nope"}).status_code == 404


def test_a_model_folder_pools_like_the_index_dense_mode(searcher, micro_model_dir):
    """``--pool MODEL_DIR`` embeds the index's documents with that model: with the index's own model it ranks as
    the dense mode does."""
    from indus.studio.service import make_pool_systems

    (folder,) = make_pool_systems([str(micro_model_dir)], searcher, progress=False)
    query = "ocean heat content"
    assert folder.name == micro_model_dir.name
    assert folder.ranked([query], 4)[0] == [h.id for h in searcher.search(query, 4, "dense")]
    with pytest.raises(IndusError, match="this index offers"):
        make_pool_systems(["hybrid"], _Bm25Only())


class _Bm25Only:
    modes = ("bm25",)


def test_serve_refuses_bad_options_in_one_line(tmp_path, index_dir):
    from typer.testing import CliRunner

    from indus.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["studio", "serve", "--index", str(tmp_path / "nope"), "--db", str(tmp_path / "s.db")])
    assert isinstance(result.exception, IndusError) and "index directory not found" in str(result.exception)
    result = runner.invoke(app, ["studio", "serve", "--index", str(index_dir), "--token", "short"])
    assert isinstance(result.exception, IndusError) and "at least 8 characters" in str(result.exception)


def test_an_unexpected_error_is_a_one_line_500_without_traceback(studio, monkeypatch):
    def broken() -> None:
        raise RuntimeError("boom\nwith a second line")

    monkeypatch.setattr(studio, "progress", broken)
    client = TestClient(create_app(studio), client=("127.0.0.1", 4000), raise_server_exceptions=False)
    r = client.get("/api/progress")
    assert r.status_code == 500 and r.json() == {"error": "internal error (RuntimeError); see the server log"}
    page = client.get("/progress")
    assert page.status_code == 500 and "Traceback" not in page.text and "boom" not in page.text


def test_queries_from_a_file_are_stored_once_and_pooled(index_dir, tmp_path):
    from indus.cli.studio import build_studio

    queries = tmp_path / "queries.jsonl"
    queries.write_text(
        '{"_id": "q1", "text": "arctic sea ice"}\n{"_id": "q2", "text": "<script>heat</script>"}\n', encoding="utf-8"
    )
    db_path = tmp_path / "s.db"
    studio = build_studio(
        index_dir, db=str(db_path), pool=["bm25", "hybrid"], pool_depth=2, queries=str(queries), progress=False
    )
    assert [q["id"] for q in studio.queries()] == ["q1", "q2"] and all(q["pool_size"] > 0 for q in studio.queries())
    assert len(studio.passages) == 8 and {p.id for p in studio.passages} == {f"d{i}" for i in range(1, 9)}
    again = build_studio(index_dir, db=str(db_path), pool=["bm25"], queries=str(queries), progress=False)
    assert len(again.queries()) == 2  # loading the file twice adds nothing
    page = TestClient(create_app(studio)).get("/judge").text
    assert "&lt;script&gt;heat&lt;/script&gt;" in page and "<script>heat" not in page
