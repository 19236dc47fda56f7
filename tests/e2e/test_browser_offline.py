"""Nothing leaves the machine: a real browser opens every page of the real app and records
every request the page makes; none may go to a host other than the app's own."""

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


def test_no_request_leaves_the_machine(tmp_path):
    from playwright.sync_api import sync_playwright
    server = AppServer(tmp_path)
    requests: list[str] = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 720})
            page.on("request", lambda request: requests.append(request.url))
            page.goto(server.url, wait_until="networkidle")
            page.wait_for_selector('[data-testid="stSidebarNav"]', timeout=30_000)
            links = page.locator('[data-testid="stSidebarNav"] a')
            hrefs = [links.nth(i).get_attribute("href") for i in range(links.count())]
            for href in hrefs:
                page.goto(href if href.startswith("http") else server.url + "/" + href.lstrip("/"),
                          wait_until="networkidle")
                page.wait_for_timeout(1500)     # charts, fonts and icons load
            browser.close()
    finally:
        server.stop()
    hosts = {urlparse(url).hostname for url in requests if urlparse(url).scheme in ("http",
                                                                                   "https", "ws",
                                                                                   "wss")}
    print(f"\n{len(requests)} requests over {len(hrefs)} pages; hosts: {sorted(hosts)}")
    assert len(hrefs) >= 4 and requests
    assert hosts == {"127.0.0.1"}, sorted(u for u in requests
                                          if urlparse(u).hostname != "127.0.0.1")[:10]
