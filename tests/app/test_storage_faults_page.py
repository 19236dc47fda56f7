"""The dashboard on storage faults and hostile uploads: one message on the page, never a
traceback, nothing launched, nothing written."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from engine.store import RunStore, StoreError
from tests.app.conftest import ROOT, page
from tests.engine.test_hostile_input import BOMBS


def test_a_damaged_database_is_one_message_on_the_first_page(tmp_path, monkeypatch):
    db = tmp_path / "runs.db"
    db.write_bytes(b"\x00not a database" * 1000)
    import app.services as app_services

    def broken_store():
        return RunStore(db)          # raises StoreError, as services.get_store would
    monkeypatch.setattr(app_services, "get_store", broken_store)
    at = AppTest.from_file(str(ROOT / "app" / "main.py"), default_timeout=30).run()
    assert not at.exception
    shown = " ".join(e.value for e in at.error)
    assert "Train Lab cannot use its run store" in shown
    assert "is not a Train Lab database or is damaged" in shown and str(db) in shown
    assert db.read_bytes().startswith(b"\x00not a database")   # left as it was


@pytest.mark.parametrize("name", ["laughs.yaml", "fanout.yaml", "deep.json", "digits.json"])
def test_a_hostile_upload_is_refused_and_launches_nothing(services, name):
    store, manager = services
    raw, words = BOMBS[name]
    at = page("launch").run()
    at.file_uploader(key="config_upload").set_value((name, raw, "application/octet-stream"))
    at = at.run()
    assert not at.exception
    shown = " ".join(e.value for e in at.error)
    assert words in shown and len(shown) < 1000
    assert store.list_runs() == [] and manager.active() == []

