"""Train Lab's entry point and router: page config, the shared stylesheet and sidebar, and
navigation over the Playground (the landing page), Launch, Live, Compare and Runs pages.

Run from the repository root: `python -m app` (app/__main__.py; `make run` does). Nothing but
routing and the sidebar lives here; each page is its own script under pages/.
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:     # `streamlit run app/main.py` puts app/, not the root, first
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from app import cluster_ui, offline, services, state, widgets  # noqa: E402
from engine import paths  # noqa: E402
from engine.store import StoreError  # noqa: E402

offline.ensure_patched()    # no external-IP lookups: done already when started by `python -m app`

# The favicon is a file of ours: a ":material/..." page icon makes the browser fetch it from
# a font host on every page load (offline that fails, and it tells a third party).
st.set_page_config(page_title="Train Lab", page_icon=str(ROOT / "assets" / "favicon.png"),
                   layout="wide")

css = ROOT / "assets" / "style.css"
if css.is_file():
    st.html(f"<style>{css.read_text(encoding='utf-8')}</style>")

pages = [st.Page(page.path, title=page.title, icon=page.icon, url_path=key,
                 default=key == "playground", visibility="hidden" if page.hidden else "visible")
         for key, page in state.PAGES.items() if page.path.is_file()]
navigation = st.navigation(pages)

def storage_fault_page(error: StoreError) -> None:
    """A storage fault (damaged database, read-only folder, full disk) is one message on
    the page, never a traceback; the file is left as it is for the user to decide."""
    st.error(f"**Train Lab cannot use its run store.** {error}", icon=":material/error:")
    st.caption("Nothing has been changed on disk. Fix the cause, then reload this page.")
    st.stop()


try:
    services.get_store()     # opened once per process; a fault is shown, not cached
except StoreError as error:
    storage_fault_page(error)

with st.sidebar:
    st.markdown("**Train Lab** · compare training runs")

    @st.fragment(run_every=2.0)
    def run_counts():
        try:
            widgets.sidebar_summary_ui(services.get_store(), str(paths.data_dir()))
            cluster_ui.executor_panel_ui(services.get_store())
        except StoreError as error:
            st.error(str(error))

    run_counts()

try:
    if cluster_ui.ray_configured():
        # Pages start the job manager only when they launch; with Ray, start it (and connect)
        # before any page, so an unreachable cluster is said at once, not at the first launch.
        services.get_manager()
    navigation.run()
except StoreError as error:
    storage_fault_page(error)
except cluster_ui.ExecutorError as error:    # Ray chosen but unreachable: one message
    cluster_ui.executor_fault_ui(error)
finally:
    # torch is imported before the server listens (python -m app); started another way, it
    # loads in the background once the first page is drawn
    services.warm_engine()
