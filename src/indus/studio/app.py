"""The studio web app (FastAPI): server-rendered pages and a JSON API over one :class:`~indus.studio.service.Studio`.

Pages (HTML, packaged CSS and JS, no CDN): ``/search``, ``/write``, ``/judge``, ``/judge/q?id=``, ``/progress``.
JSON API (the pages call the same :class:`Studio` methods)::

    GET  /healthz                                   {"status": "ok", "documents", "modes", "passages", "queries"}
    GET  /api/search?q=TEXT&k=10&mode=bm25|dense|hybrid   {"query", "mode", "took_ms", "results": [{id, title,
                                                    text, score}]}
    GET  /api/passages/next?annotator=NAME          the next passage this annotator has not annotated (or null)
    GET  /api/passages/item?id=ID                   one passage
    POST /api/annotations   {"annotator", "passage_id", "kind": "question"|"unanswerable"|"no_question",
                             "question", "answer_start", "answer_text"}   -> {"annotation_id", "query_id"}
    GET  /api/queries?annotator=NAME                every query with its pool size and who judged it
    GET  /api/pool?query=ID&annotator=NAME          the query's shuffled pool (no system names)
    POST /api/judgements    {"annotator", "query_id", "grades": {doc_id: 2|1|0}}   -> {"added", "changed"}
    GET  /api/progress                              per annotator and total

Writes: with a token (``--token``) every write needs it (header ``X-Studio-Token`` or ``Authorization: Bearer``, or
the cookie the ``/token`` page sets); without one, only loopback clients may write. Errors are one line: JSON
``{"error": ...}`` for the API, a page with the message for the pages; never a traceback.
"""

from __future__ import annotations

import hmac
from importlib import resources
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException

from indus.errors import IndusError
from indus.studio.db import GRADES
from indus.studio.service import Forbidden, NotFound, Studio, validate_annotator

LOOPBACK = {"127.0.0.1", "::1", "localhost"}
ANNOTATOR_COOKIE, TOKEN_COOKIE = "studio_annotator", "studio_token"
MAX_K = 100


def _package_dir(name: str) -> str:
    return str(resources.files("indus.studio") / name)


def _one_line(message: Any) -> str:
    return " ".join(str(message).split())[:500]


def _int(value: Any, name: str, low: int, high: int) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise IndusError(f"{name} must be an integer from {low} to {high}, got {str(value)[:40]!r}") from None
    if not low <= number <= high:
        raise IndusError(f"{name} must be an integer from {low} to {high}, got {number}")
    return number


def create_app(studio: Studio, *, token: str | None = None, max_k: int = MAX_K) -> FastAPI:
    """The ASGI app serving ``studio``.

    Parameters
    ----------
    studio
        What the pages and the API call.
    token
        When given, every write must carry it; when ``None``, only loopback clients may write.
    max_k
        The largest ``k`` a search may ask for.
    """
    app = FastAPI(title="indus studio", docs_url=None, redoc_url=None)  # the Swagger page would load a CDN
    app.state.studio = studio
    app.mount("/static", StaticFiles(directory=_package_dir("static")), name="static")
    templates = Jinja2Templates(directory=_package_dir("templates"))  # autoescape on for .html

    # ------------------------------------------------------------------------------------------- helpers

    def is_api(request: Request) -> bool:
        return request.url.path.startswith(("/api/", "/healthz"))

    def can_write(request: Request) -> bool:
        if token is not None:
            given = request.headers.get("x-studio-token") or request.cookies.get(TOKEN_COOKIE) or ""
            auth = request.headers.get("authorization", "")
            if auth.lower().startswith("bearer "):
                given = auth[7:].strip()
            return hmac.compare_digest(given.encode(), token.encode())
        host = request.client.host if request.client else ""
        return host in LOOPBACK or host.startswith("127.")

    def require_write(request: Request) -> None:
        if not can_write(request):
            if token is not None:
                raise Forbidden(
                    "this studio needs its token for writes (enter it on the Token page or send the "
                    "X-Studio-Token header)"
                )
            raise Forbidden(
                "read-only: writes are allowed from this machine only (start the studio with --token "
                "to let others write)"
            )

    def annotator_of(request: Request) -> str | None:
        name = request.cookies.get(ANNOTATOR_COOKIE)
        try:
            return validate_annotator(name) if name else None
        except IndusError:
            return None

    def page(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        context.update(
            annotator=annotator_of(request),
            writable=can_write(request),
            token_required=token is not None,
            nav=name.removesuffix(".html"),
        )
        return templates.TemplateResponse(request, name, context, status_code=status)

    async def json_body(request: Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except ValueError:
            raise IndusError("the request body must be a JSON object") from None
        if not isinstance(body, dict):
            raise IndusError("the request body must be a JSON object")
        return body

    # -------------------------------------------------------------------------------------------- errors

    def error_response(request: Request, status: int, message: str) -> Response:
        message = _one_line(message)
        if is_api(request):
            return JSONResponse({"error": message}, status_code=status)
        return page(request, "error.html", status=status, message=message)

    @app.exception_handler(IndusError)
    async def _indus_error(request: Request, exc: IndusError) -> Response:
        status = 404 if isinstance(exc, NotFound) else 403 if isinstance(exc, Forbidden) else 400
        return error_response(request, status, str(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ())[1:]) or "request"
        return error_response(request, 400, f"{where}: {first.get('msg', 'invalid input')}")

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> Response:
        return error_response(request, exc.status_code, exc.detail or "error")

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> Response:
        # never a traceback page: the message is the exception's type, the traceback stays in the server log
        return error_response(request, 500, f"internal error ({type(exc).__name__}); see the server log")

    # ------------------------------------------------------------------------------------------------ API

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        searcher = studio.searcher
        return {
            "status": "ok",
            "documents": len(searcher) if searcher is not None else 0,
            "modes": list(searcher.modes) if searcher is not None else [],
            "default_mode": searcher.default_mode if searcher is not None else None,
            "passages": len(studio.passages),
            "pool_systems": len(studio.pool_systems),
        }

    @app.get("/api/search")
    def api_search(q: str = "", k: str = "10", mode: str = "") -> dict[str, Any]:
        return studio.search(q, _int(k, "k", 1, max_k), mode or None).to_json()

    @app.get("/api/passages/next")
    def api_next_passage(annotator: str = "") -> dict[str, Any]:
        passage = studio.next_passage(annotator)
        return {"passage": None if passage is None else passage.__dict__}

    @app.get("/api/passages/item")
    def api_passage(id: str = "") -> dict[str, Any]:  # noqa: A002
        return {"passage": studio.passage(id).__dict__}

    @app.post("/api/annotations")
    async def api_annotate(request: Request) -> dict[str, Any]:
        require_write(request)
        body = await json_body(request)
        start = body.get("answer_start")
        if start is not None and (isinstance(start, bool) or not isinstance(start, int)):
            raise IndusError("answer_start must be an integer")
        return studio.annotate(
            body.get("annotator"),
            str(body.get("passage_id", "")),
            str(body.get("kind", "")),
            body.get("question"),
            start,
            body.get("answer_text"),
        )

    @app.get("/api/queries")
    def api_queries(annotator: str = "") -> dict[str, Any]:
        return {"queries": studio.queries(annotator or None)}

    @app.get("/api/pool")
    def api_pool(query: str = "", annotator: str = "") -> dict[str, Any]:
        items = studio.pool(query, annotator or None)
        return {"query": studio.query(query), "pool": [i.__dict__ for i in items]}

    @app.post("/api/judgements")
    async def api_judge(request: Request) -> dict[str, Any]:
        require_write(request)
        body = await json_body(request)
        return studio.judge(body.get("annotator"), str(body.get("query_id", "")), body.get("grades"))

    @app.get("/api/progress")
    def api_progress() -> dict[str, Any]:
        return studio.progress().to_json()

    # ---------------------------------------------------------------------------------------------- pages

    @app.get("/")
    def home() -> RedirectResponse:
        return RedirectResponse("/search", status_code=303)

    @app.get("/search", response_class=HTMLResponse)
    def search_page(request: Request, q: str = "", k: str = "10", mode: str = "") -> HTMLResponse:
        searcher = studio.searcher
        context: dict[str, Any] = {
            "q": q,
            "k": k,
            "mode": mode or (searcher.default_mode if searcher else ""),
            "modes": list(searcher.modes) if searcher else [],
            "result": None,
            "error": None,
        }
        if q:
            try:
                result = studio.search(q, _int(k, "k", 1, max_k), mode or None)
                context["result"] = result
                context["snippets"] = [searcher.snippet(h.text, q) for h in result.hits]
            except IndusError as exc:
                context.update(result=None, error=_one_line(exc))
                return page(request, "search.html", status=400, **context)
        return page(request, "search.html", **context)

    @app.get("/write", response_class=HTMLResponse)
    def write_page(request: Request, passage: str = "", saved: str = "") -> HTMLResponse:
        who = annotator_of(request)
        item = None
        if passage:
            item = studio.passage(passage)
        elif who:
            item = studio.next_passage(who)
        return page(request, "write.html", passage=item, saved=saved, done=who is not None and item is None)

    @app.post("/write")
    async def write_submit(request: Request) -> Response:
        require_write(request)
        form = await request.form()
        who = annotator_of(request)
        if who is None:
            raise IndusError("choose your annotator name first (top right)")
        start = form.get("answer_start") or None
        result = studio.annotate(
            who,
            str(form.get("passage_id", "")),
            str(form.get("kind", "")),
            str(form.get("question", "")),
            _int(start, "answer_start", 0, 10**9) if start is not None else None,
            str(form.get("answer_text", "")) or None,
        )
        what = {
            "question": "question",
            "unanswerable": "unanswerable question",
            "no_question": "no-good-question mark",
        }[str(form.get("kind"))]
        return RedirectResponse(f"/write?saved={quote(what)}+%23{result['annotation_id']}", status_code=303)

    @app.get("/judge", response_class=HTMLResponse)
    def judge_list(request: Request) -> HTMLResponse:
        return page(request, "judge_list.html", queries=studio.queries(annotator_of(request)))

    @app.get("/judge/q", response_class=HTMLResponse)
    def judge_page(request: Request, id: str = "", saved: str = "") -> HTMLResponse:  # noqa: A002
        query = studio.query(id)
        items = studio.pool(id, annotator_of(request))
        return page(request, "judge.html", query=query, items=items, grades=GRADES, saved=saved)

    @app.post("/judge/q")
    async def judge_submit(request: Request, id: str = "") -> Response:  # noqa: A002
        require_write(request)
        who = annotator_of(request)
        if who is None:
            raise IndusError("choose your annotator name first (top right)")
        form = await request.form()
        grades = {key.removeprefix("grade:"): value for key, value in form.items() if key.startswith("grade:")}
        result = studio.judge(who, id, grades)
        following = next((q for q in studio.queries(who) if q["judged_by_me"] < q["pool_size"] and q["id"] != id), None)
        note = quote(f"saved {result['added'] + result['changed']} judgements")
        target = f"/judge/q?id={quote(following['id'])}&saved={note}" if following else f"/judge?saved={note}"
        return RedirectResponse(target, status_code=303)

    @app.get("/progress", response_class=HTMLResponse)
    def progress_page(request: Request) -> HTMLResponse:
        return page(request, "progress.html", progress=studio.progress())

    @app.post("/annotator")
    async def set_annotator(request: Request) -> Response:
        form = await request.form()
        name = validate_annotator(str(form.get("annotator", "")).strip())
        back = str(form.get("next", "/search"))
        response = RedirectResponse(
            back if back.startswith("/") and not back.startswith("//") else "/search", status_code=303
        )
        response.set_cookie(ANNOTATOR_COOKIE, name, samesite="strict", max_age=365 * 86400)
        return response

    @app.get("/token", response_class=HTMLResponse)
    def token_page(request: Request) -> HTMLResponse:
        return page(request, "token.html")

    @app.post("/token")
    async def set_token(request: Request) -> Response:
        form = await request.form()
        given = str(form.get("token", ""))
        if token is None or not hmac.compare_digest(given.encode(), token.encode()):
            raise Forbidden("wrong token")
        response = RedirectResponse("/write", status_code=303)
        response.set_cookie(TOKEN_COOKIE, given, samesite="strict", httponly=True, max_age=30 * 86400)
        return response

    return app
