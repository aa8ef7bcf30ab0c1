"""A real headless Chromium (Debian's chromium + chromium-driver, driven by Selenium) uses the studio end to end:
search, write a question by selecting its answer with the mouse, judge a pool, export; the export passes
``indus data check`` and ``indus eval ir --model bm25`` scores it.

Skips with a message where the browser or its driver is missing (``make browser`` installs them). Set
``INDUS_STUDIO_SCREENSHOTS=docs/studio`` to keep a screenshot of each page there (the README shows them).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from indus.cli import app as cli

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")

DOCS = [
    (
        "arctic-1",
        "Arctic sea ice minimum",
        "Satellite passive-microwave records show that the September minimum of "
        "Arctic sea ice extent has declined by about 13 percent per decade since 1979. The loss is largest in the "
        "Beaufort and Chukchi seas, where thinner first-year ice now dominates.",
    ),
    (
        "ocean-2",
        "Ocean heat content",
        "The upper 2,000 metres of the ocean have absorbed more than 90 percent of the "
        "excess heat trapped by greenhouse gases. Argo floats sample temperature and salinity profiles every ten days "
        "across the global ocean.",
    ),
    (
        "glacier-3",
        "Mountain glacier retreat",
        "Alpine glaciers lost roughly a third of their volume between 2000 and "
        "2023. Meltwater from retreating glaciers contributes about one millimetre per year to global sea level rise.",
    ),
    (
        "aerosol-4",
        "Aerosols and clouds",
        "Sulfate aerosols brighten marine stratocumulus clouds by increasing the "
        "number of cloud droplets, an effect that partly masks greenhouse warming over the oceans.",
    ),
    (
        "fire-5",
        "Boreal wildfires",
        "Boreal forest fires in Siberia and Canada released record amounts of carbon in "
        "2021 and 2023, as longer fire seasons followed earlier snowmelt and hotter summers.",
    ),
    (
        "soil-6",
        "Soil moisture from space",
        "The SMAP mission measures surface soil moisture with an L-band "
        "radiometer, giving global maps every two to three days that improve drought monitoring.",
    ),
    (
        "ozone-7",
        "Stratospheric ozone recovery",
        "Total column ozone over Antarctica is recovering slowly since the "
        "Montreal Protocol phased out chlorofluorocarbons; full recovery is expected around 2066.",
    ),
    (
        "permafrost-8",
        "Thawing permafrost",
        "Permafrost temperatures rose by about 0.3 degrees Celsius per decade, "
        "and thaw releases methane and carbon dioxide stored in frozen soils for millennia.",
    ),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def served(micro_model_dir, tmp_path):
    """The studio over an index of :data:`DOCS`, served by uvicorn in a thread on a free loopback port."""
    import uvicorn

    from indus.retriever.index import build_index
    from indus.retriever.search import Searcher
    from indus.studio.app import create_app
    from indus.studio.db import Store
    from indus.studio.passages import load_passages
    from indus.studio.service import Studio, make_pool_systems

    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(
        "".join(json.dumps({"_id": i, "title": t, "text": x}) + "\n" for i, t, x in DOCS), encoding="utf-8"
    )
    build_index(str(micro_model_dir), corpus, tmp_path / "index", progress=False)
    searcher = Searcher.open(tmp_path / "index")
    store = Store.open(tmp_path / "studio.db")
    store.set_meta("index", str(tmp_path / "index"))
    studio = Studio(
        store,
        searcher,
        load_passages(corpus, words=120),
        make_pool_systems(["bm25", "dense"], searcher, progress=False),
        pool_depth=3,
    )
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(studio), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", store
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def browser():
    if CHROMIUM is None or DRIVER is None:
        pytest.skip(
            "no chromium / chromedriver: install Debian's chromium and chromium-driver (make browser) to run "
            "the browser test"
        )
    pytest.importorskip("selenium", reason="selenium is not installed (pip install selenium)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must never download a browser or a driver
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1200,860",
        "--force-device-scale-factor=1",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=DRIVER), options=options)
    driver.implicitly_wait(3)
    yield driver
    driver.quit()


def _shot(driver, name: str, tmp: Path) -> None:
    path = tmp / f"{name}.png"
    assert driver.save_screenshot(str(path)) and path.stat().st_size > 5_000
    keep = os.environ.get("INDUS_STUDIO_SCREENSHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        from PIL import Image

        # a 256-colour palette keeps UI text sharp at a third of the size (the README shows these files)
        Image.open(path).convert("RGB").quantize(256).save(Path(keep) / path.name, optimize=True)


def _select_with_mouse(driver, element, start: int, end: int) -> None:
    """Press the mouse at character ``start`` of ``element``'s text and release it at character ``end``."""
    from selenium.webdriver.common.action_chains import ActionChains

    box = driver.execute_script(
        "const el = arguments[0], node = el.firstChild, r = document.createRange();"
        "r.setStart(node, arguments[1]); r.setEnd(node, arguments[1] + 1); const a = r.getBoundingClientRect();"
        "r.setStart(node, arguments[2] - 1); r.setEnd(node, arguments[2]); const b = r.getBoundingClientRect();"
        "const e = el.getBoundingClientRect();"
        "return [a.left - e.left, a.top - e.top + a.height / 2, b.right - e.left, b.top - e.top + b.height / 2,"
        "        e.width, e.height];",
        element,
        start,
        end,
    )
    ax, ay, bx, by, width, height = box
    chain = ActionChains(driver)
    chain.move_to_element_with_offset(element, int(ax - width / 2 + 1), int(ay - height / 2))
    chain.click_and_hold().move_to_element_with_offset(element, int(bx - width / 2 - 1), int(by - height / 2))
    chain.release().perform()


def test_search_write_judge_export_in_a_real_browser(served, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    base, store = served
    started = time.perf_counter()
    # Search
    browser.get(f"{base}/search")
    browser.find_element(By.ID, "q").send_keys("sea ice extent decline")
    browser.find_element(By.ID, "go").click()
    assert "ms" in browser.find_element(By.ID, "took").text
    titles = [e.text for e in browser.find_elements(By.CSS_SELECTOR, ".hit .title")]
    assert "Arctic sea ice minimum" in titles
    assert browser.find_elements(By.CSS_SELECTOR, ".snippet mark")
    _shot(browser, "search", tmp_path)
    # Write a question: name the annotator, select the answer with the mouse
    browser.get(f"{base}/write")
    browser.find_element(By.ID, "annotator").send_keys("ana")
    browser.find_element(By.ID, "set-annotator").click()
    WebDriverWait(browser, 10).until(lambda d: d.get_cookie("studio_annotator"))
    browser.get(f"{base}/write?passage=arctic-1")
    passage = browser.find_element(By.ID, "passage")
    text = passage.text
    answer = "about 13 percent per decade"
    start = text.index(answer)
    _select_with_mouse(browser, passage, start, start + len(answer))
    assert browser.find_element(By.ID, "answer_text").get_attribute("value") == answer
    assert browser.find_element(By.ID, "answer_start").get_attribute("value") == str(start)
    browser.find_element(By.ID, "question").send_keys("How fast has the September Arctic sea ice minimum declined?")
    _shot(browser, "write", tmp_path)
    browser.find_element(By.ID, "save-question").click()
    assert "Saved question" in browser.find_element(By.ID, "saved").text
    # Judge the question's pool
    browser.get(f"{base}/judge")
    browser.find_element(By.CSS_SELECTOR, "#queries a").click()
    items = browser.find_elements(By.CSS_SELECTOR, ".judge-item")
    assert items
    grades = {}
    for item in items:
        title = item.find_element(By.CSS_SELECTOR, ".title").text
        grades[item.find_element(By.CSS_SELECTOR, ".docid").text] = grade = (
            2 if title == "Arctic sea ice minimum" else 1 if "ice" in title.lower() else 0
        )
        item.find_element(By.CSS_SELECTOR, f".grade.g{grade} input").click()
    assert 2 in grades.values()  # the question's own passage is in its pool
    browser.execute_script("window.scrollTo(0, 0)")
    _shot(browser, "judge", tmp_path)
    browser.find_element(By.ID, "save-judgements").click()
    assert "saved" in browser.find_element(By.ID, "saved").text  # the judge list, after the redirect
    # a second expert judges the same pool through the JSON API: both count, and they agree on all but one
    qid = httpx.get(f"{base}/api/queries").json()["queries"][0]["id"]
    ben = {d: g if i else (g + 1) % 3 for i, (d, g) in enumerate(grades.items())}
    assert httpx.post(f"{base}/api/judgements", json={"annotator": "ben", "query_id": qid, "grades": ben}).is_success
    browser.get(f"{base}/progress")
    rows = [r.text for r in browser.find_elements(By.CSS_SELECTOR, "#progress tbody tr")]
    assert rows[0].startswith(f"ana 1 1 0 0 1 {len(items)} ") and rows[1].startswith(f"ben 0 0 0 0 1 {len(items)} ")
    assert rows[2].startswith(f"(all) 1 1 0 0 1 {2 * len(items)} ")
    _shot(browser, "progress", tmp_path)
    # Export; the benchmark passes the checks and BM25 scores it
    runner = CliRunner()
    out = tmp_path / "bench"
    result = runner.invoke(cli, ["studio", "export", "--db", str(store.engine.url), "--out", str(out)])
    assert result.exit_code == 0, result.output
    qa = json.loads((out / "qa.json").read_text())
    item = qa["data"][0]["paragraphs"][0]
    assert item["qas"][0]["answers"] == [{"text": answer, "answer_start": start}]
    assert item["context"][start : start + len(answer)] == answer
    for path in (out / "qa.json", out / "ir"):
        assert runner.invoke(cli, ["data", "check", str(path)]).exit_code == 0
    scores = tmp_path / "ir.json"
    ir = runner.invoke(cli, ["eval", "ir", "--model", "bm25", "--data", str(out / "ir"), "--json", str(scores)])
    assert ir.exit_code == 0, ir.output
    assert json.loads(scores.read_text())["ndcg@10"] > 0  # the question's own passage is found
    assert time.perf_counter() - started < 30
