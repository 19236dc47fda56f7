"""Train Lab's entry point and router: page config, the shared stylesheet and sidebar, and
navigation over the Launch, Live, Compare and Runs pages.

Run from the repository root: `python -m streamlit run app/main.py`. Nothing but routing and
the sidebar lives here; each page is its own script under pages/.
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:     # `streamlit run app/main.py` puts app/, not the root, first
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from app import services, state, widgets  # noqa: E402
from engine import paths  # noqa: E402

st.set_page_config(page_title="Train Lab", page_icon=":material/monitoring:", layout="wide")

css = ROOT / "assets" / "style.css"
if css.is_file():
    st.html(f"<style>{css.read_text(encoding='utf-8')}</style>")

PAGE_INFO = [("launch", "Launch", ":material/rocket_launch:"),
             ("live", "Live", ":material/monitoring:"),
             ("compare", "Compare", ":material/compare_arrows:"),
             ("runs", "Runs", ":material/table_rows:")]
pages = [st.Page(state.PAGES[key], title=title, icon=icon, url_path=key, default=key == "launch")
         for key, title, icon in PAGE_INFO if state.PAGES[key].is_file()]
navigation = st.navigation(pages)

with st.sidebar:
    st.markdown("**Train Lab** · compare training runs")

    @st.fragment(run_every=2.0)
    def run_counts():
        widgets.sidebar_summary_ui(services.get_store(), str(paths.data_dir()))

    run_counts()

navigation.run()
