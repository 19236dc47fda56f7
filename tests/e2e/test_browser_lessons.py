"""Lessons in a real browser (Chromium via Playwright): the handout of a shipped lesson, opened
from disk, draws its figures with no request leaving the machine (every request is the file
itself or in-page data); against the real app, a shared step link opens its step, a question
shows its answer only after the student answers, and nothing the Lessons page asks for goes to
another host."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

import pytest

from tests.e2e.server import ARGS, CHROMIUM, AppServer

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not Path(CHROMIUM).exists(),
                       reason=f"{CHROMIUM} is missing (install Debian's chromium: make setup)"),
]


def store_plain_runs(db: Path) -> None:
    """Three finished runs of deep-plain-nets' step 2 (its Plain net), as the page launches
    them (tags, configs), with a few epochs of made-up metrics; and two predictions."""
    from engine import lessons
    from engine.events import (VAL_ACC, VAL_LOSS, Evaluated, RunEnded, RunStarted, RunStatus,
                               StepLoss)
    from engine.store import RunStore
    lesson = lessons.find("deep-plain-nets")
    step = lesson.step(2)
    exp = lessons.step_experiment(step)
    store = RunStore(db)
    ids = []
    for seed in range(3):
        cfg = exp.config("Plain", seed=seed)
        rid = store.create_run(cfg.to_dict(), name=f"Plain {seed}", tags=[exp.tag, lesson.tag])
        store.record(RunStarted(rid, params=1, device="cpu", total_steps=30,
                                steps_per_epoch=3, epochs=10))
        for epoch in range(1, 11):
            store.record(StepLoss(rid, 3 * epoch, float(epoch), 2.31 - 0.0004 * epoch))
            store.record(Evaluated(rid, 3 * epoch, float(epoch),
                                   {VAL_ACC: 0.1 + 0.0001 * seed, VAL_LOSS: 2.3}))
        store.record(RunEnded(rid, RunStatus.COMPLETED, 30, ""))
        ids.append(rid)
    store.add_prediction(lesson.id, 2, "learner0001", "number", 10.0, runs=ids)
    store.add_prediction(lesson.id, 2, "learner0002", "number", 60.0, runs=ids)
    store.close()


def test_the_handout_draws_its_figures_offline(tmp_path):
    from playwright.sync_api import sync_playwright

    from engine import lessons
    from engine.store import RunStore
    store_plain_runs(tmp_path / "runs.db")
    store = RunStore(tmp_path / "runs.db")
    [path] = lessons.export_handout(lessons.find("deep-plain-nets"), store, "html", tmp_path)
    store.close()
    requests: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.on("request", lambda request: requests.append(request.url))
        page.goto(path.as_uri(), wait_until="load")
        page.wait_for_function("document.body.dataset.figuresDrawn !== undefined",
                               timeout=60_000)
        drawn = page.evaluate("""() => [...document.querySelectorAll('.js-plotly-plot')].map(
            p => p._fullData.filter(t => t.x && t.x.length).length)""")
        text = page.inner_text("body")
        page.screenshot(path=str(tmp_path / "handout.png"), full_page=True)
        browser.close()
    print(f"\nhandout {path.stat().st_size:,} bytes, figures {drawn}, requests {requests}, "
          f"screenshot {tmp_path / 'handout.png'}")
    # Step 2's runs are stored, and step 6 shares them (its other nets are not run): two
    # figures, each with traces drawn; the steps whose runs are not stored have none.
    assert len(drawn) == 2 and min(drawn) >= 1
    assert "The class, judged by these runs: 1 right, 1 wrong" in text
    assert "Plain: mean 10.0%, 95% CI" in text
    assert all(urlparse(u).scheme in ("file", "data", "blob") for u in requests), requests
    assert requests[0] == path.as_uri()


def test_a_step_link_opens_its_step_and_an_answer_comes_after_the_question(tmp_path):
    from playwright.sync_api import sync_playwright
    server = AppServer(tmp_path)
    requests: list[str] = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("request", lambda request: requests.append(request.url))
            page.goto(f"{server.url}/lessons?lesson=deep-plain-nets&step=3",
                      wait_until="networkidle")
            page.get_by_text("3. Where does the gradient go?").wait_for(timeout=60_000)
            assert "learner=" in page.url and "step=3" in page.url
            body = page.inner_text("body")
            assert "a millionth of the last layer" not in body         # not before answering
            page.get_by_text("Orders of magnitude smaller: it vanishes").click()
            page.get_by_role("button", name="Answer").click()
            page.get_by_text("The answer:").wait_for(timeout=30_000)
            body = page.inner_text("body")
            assert "right" in body and "a millionth of the last layer" in body
            page.screenshot(path=str(tmp_path / "step3.png"), full_page=True)
            browser.close()
    finally:
        server.stop()
    hosts = {urlparse(u).hostname for u in requests if urlparse(u).scheme in ("http", "https",
                                                                             "ws", "wss")}
    assert hosts == {"127.0.0.1"}, sorted(hosts)
