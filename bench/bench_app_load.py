"""Benchmark: how long each page of the real app takes to appear in a real browser.

For every page, a fresh server (`python -m app`, its own home) and a fresh browser context
(Debian's Chromium, headless; nothing cached), then:
- first load: from navigation to the page drawn (its title is on screen and nothing on it
  has changed for QUIET_MS; the time is that of its last change) on a server that has drawn
  nothing yet;
- second load: the same in a second tab of the same browser once the first has finished
  (the server's modules imported and caches warm, the browser's cache holding Streamlit's
  scripts: what a user sees on every visit after the first);
- busy first load: a first load again, on a fresh server, while --busy processes (default:
  one per CPU core) spin on the CPU beside it, as a training run or a build would.
The median of --repeats fresh servers per page is printed, with the range, quiet and busy side
by side, for the whole page and for its first screen (the last change of what shows without
scrolling at 1400x1000). Each server's store holds --runs finished runs (default 12, written
as a run's events would be: 200 steps, 10 evaluations each), so Compare, Live, Runs and
Diagnostics draw their charts and tables and a run's page shows the newest; --runs 0 measures
an empty store.
--streamlit-charts also loads each page (first, quiet) on a server with static serving off,
where app/charts.py draws with Streamlit's own st.plotly_chart (its full plotly.js) instead of
the app's bundle, and prints the two side by side with their ratio.
Goals (issue 20): first draw under 2 s quiet, under 5 s busy. Asserts nothing.

Usage: python bench/bench_app_load.py [--repeats 3] [--busy N] [--runs 12] [--pages ...]
                                      [--streamlit-charts]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))       # the engine's store, to fill a store before a server starts
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
# page -> its title; the Playground is the landing page, served at "/" (its own path is not);
# a run's page shows the newest stored run (fill_store names it "bench #<runs>")
PAGES = {"playground": "Playground", "launch": "Launch runs", "live": "Live",
         "compare": "Compare", "runs": "Runs", "diagnostics": "Diagnostics",
         "experiments": "Experiments", "lessons": "Lessons", "run": "bench #{runs}"}


def page_address(key: str, db: Path) -> str:
    """The page's path on the server: "" for the landing page, run?run=ID for the newest
    stored run's page."""
    if key == "playground":
        return ""
    if key != "run":
        return key
    from engine.store import RunStore
    store = RunStore(db)
    try:
        records = store.list_runs()
        return f"run?run={max(records, key=lambda r: r.created_at).id}" if records else "run"
    finally:
        store.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# flags of a server whose charts are Streamlit's st.plotly_chart (app/charts.py's fallback)
STREAMLIT_CHARTS = ("--server.enableStaticServing", "false")


def start_server(home: Path, flags=()) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "TRAINLAB_HOME": str(home), "TRAINLAB_DB": str(home / "runs.db")}
    process = subprocess.Popen(
        [sys.executable, "-m", "app",
         "--server.port", str(port), "--server.address", "127.0.0.1",
         "--server.headless", "true", *flags], env=env, cwd=ROOT,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=1).read() == b"ok":
                return process, url
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit("the app did not start within 60 s")


def fill_store(db: Path, runs: int, steps: int = 200) -> None:
    """`runs` finished runs of a small spirals grid, as their events would store them."""
    from engine.events import (VAL_ACC, VAL_LOSS, Evaluated, RunEnded, RunStarted,
                               RunStatus, StepLoss)
    from engine.store import RunStore
    store = RunStore(db)
    try:
        for i in range(runs):
            cfg = {"dataset": "spirals", "toy_samples": 600, "width": [16], "epochs": 10,
                   "batch_size": 30, "optimizer": ("sgd", "adam")[i % 2],
                   "lr": (0.3, 0.1, 0.03)[i // 2 % 3], "seed": i // 6}
            rid = store.create_run(cfg, name=f"bench #{i + 1}")
            store.record(RunStarted(rid, 2_000, "cpu", steps, 20, epochs=10))
            for step in range(1, steps + 1):
                store.record(StepLoss(rid, step, step / 20, 1.1 / step ** 0.5 + 0.01 * i))
                if step % 20 == 0:
                    store.record(Evaluated(rid, step, step / 20, {
                        VAL_ACC: min(0.99, 0.35 + step / 300 + 0.01 * i), VAL_LOSS: 1 / step}))
            store.record(RunEnded(rid, RunStatus.COMPLETED, steps, ""))
    finally:
        store.close()


QUIET_MS = 1500     # the page counts as drawn once its main area has not changed for this long

# Records, in the page, when its main area last changed, and when its first screen (what is
# in the window without scrolling) last did (Streamlit draws a page element by element over a
# websocket, so there is no load event that means "all drawn").
WATCH_JS = """() => {
    window.__lastChange = performance.now();
    window.__lastInView = performance.now();
    const inSidebar = (node) => node.parentElement !== null &&
        node.parentElement.closest('[data-testid="stSidebar"]') !== null;
    const inView = (node) => {
        const element = node.nodeType === 1 ? node : node.parentElement;
        return element !== null && element.getBoundingClientRect().top < window.innerHeight;
    };
    // the sidebar's run counts redraw every 2 s on every page: only the page itself counts
    new MutationObserver((changes) => {
        const page = changes.filter((c) => !inSidebar(c.target));
        if (page.length) window.__lastChange = performance.now();
        if (page.some((c) => inView(c.target))) window.__lastInView = performance.now();
    })
        .observe(document, {subtree: true, childList: true, characterData: true});
}"""


def load_once(context, url: str, title: str) -> tuple[float, float]:
    """Seconds from navigation to the last change of the page before it went quiet, and to
    the last change of its first screen, in a new tab of the browser context (a new context:
    nothing cached)."""
    page = context.new_page()
    page.add_init_script(f"({WATCH_JS})()")
    page.goto(url)
    page.get_by_role("heading", name=title).first.wait_for(timeout=120_000)
    page.wait_for_function(f"() => performance.now() - window.__lastChange > {QUIET_MS}",
                           timeout=120_000, polling=100)
    # performance.now() counts from the navigation's start
    took = page.evaluate("() => [window.__lastChange, window.__lastInView]")
    page.close()
    return took[0] / 1000, took[1] / 1000


SPIN = "import time\nwhile True:\n    sum(range(100_000))"   # one busy CPU core, forever


def first_load(browser, key: str, busy: int, runs: int, flags=()) -> tuple[tuple, tuple]:
    """(first load, second load), each (whole page, first screen) in seconds, on a fresh
    server (started with `flags`) over a store of `runs` runs, with `busy` spinning processes
    started before it and stopped after."""
    spinners = [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(busy)]
    try:
        with tempfile.TemporaryDirectory() as home:
            fill_store(Path(home) / "runs.db", runs)
            path = page_address(key, Path(home) / "runs.db")
            title = "Run" if key == "run" and not runs else PAGES[key].format(runs=runs)
            process, url = start_server(Path(home), flags)
            try:
                context = browser.new_context(viewport={"width": 1400, "height": 1000})
                try:
                    first = load_once(context, f"{url}/{path}", title)
                    return first, load_once(context, f"{url}/{path}", title)
                finally:
                    context.close()
            finally:
                process.terminate()
                process.wait(30)
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):5.2f} [{min(values):.2f}-{max(values):.2f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pages", nargs="*", default=list(PAGES), choices=list(PAGES))
    parser.add_argument("--busy", type=int, default=os.cpu_count() or 1,
                        help="spinning processes beside the busy loads (0: quiet only)")
    parser.add_argument("--runs", type=int, default=12,
                        help="finished runs in each server's store (0: an empty store)")
    parser.add_argument("--streamlit-charts", action="store_true",
                        help="also load each page with Streamlit's st.plotly_chart (quiet)")
    args = parser.parse_args()
    if not Path(CHROMIUM).exists():
        raise SystemExit(f"{CHROMIUM} is missing (make setup installs Debian's chromium)")
    from playwright.sync_api import sync_playwright

    print(f"page load in Chromium, {args.repeats} fresh servers per page, "
          f"{os.cpu_count()} CPU cores, busy = {args.busy} spinning processes beside it, "
          f"{args.runs} runs stored; median [min-max] seconds")
    print("whole page: to its last change; first screen: to the last change of what shows "
          "without scrolling (1400x1000)")
    print(f"{'page':12s} {'first (quiet)':>19s}   {'second (quiet)':>19s}   "
          f"{'first (busy)':>19s}   busy/quiet   first screen: quiet / busy"
          + ("   st.plotly_chart: first (quiet), ratio" if args.streamlit_charts else ""))
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        for key in args.pages:
            firsts, seconds, busy, streamlit = [], [], [], []
            for _ in range(args.repeats):
                first, second = first_load(browser, key, 0, args.runs)
                firsts.append(first)
                seconds.append(second)
                if args.busy:
                    busy.append(first_load(browser, key, args.busy, args.runs)[0])
                if args.streamlit_charts:
                    streamlit.append(first_load(browser, key, 0, args.runs,
                                                STREAMLIT_CHARTS)[0][0])
            whole = [f[0] for f in firsts]
            ratio = (f"{statistics.median(b[0] for b in busy) / statistics.median(whole):5.2f}x"
                     if busy else "")
            screen = (f"{statistics.median(f[1] for f in firsts):5.2f} / "
                      + (f"{statistics.median(b[1] for b in busy):5.2f}" if busy else "-"))
            print(f"{key:12s} {spread(whole):>19s}   {spread([s[0] for s in seconds]):>19s}   "
                  f"{spread([b[0] for b in busy]) if busy else '-':>19s}   {ratio:>10s}   "
                  f"{screen}" + (f"   {spread(streamlit)}, "
                                 f"{statistics.median(streamlit) / statistics.median(whole):.2f}x"
                                 if streamlit else ""), flush=True)
        browser.close()


if __name__ == "__main__":
    main()
