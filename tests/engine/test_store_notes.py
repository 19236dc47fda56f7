"""A run's notes (the run page's text box): stored in runs.notes through the writer, read back
after the store is reopened, bad text refused by name with nothing written, and a store of
the previous schema (version 2, no notes column) migrated with its rows intact."""

from __future__ import annotations

import contextlib
import sqlite3

import pytest

from engine.config import ConfigError
from engine.store import (APPLICATION_ID, MAX_NOTES_LENGTH, SCHEMA_VERSION, RunStore,
                          check_notes)
from tests.engine.test_store_marks import V1_SCHEMA


def test_notes_are_stored_and_read_back_after_reopening(tmp_path):
    db = tmp_path / "runs.db"
    store = RunStore(db)
    try:
        rid = store.create_run({"lr": 0.1}, name="hot")
        assert store.get_run(rid).notes == ""
        store.set_notes(rid, "lr 0.1 diverged at step 2.\r\nTry 0.01\twith warmup.")
        assert store.get_run(rid).notes == "lr 0.1 diverged at step 2.\nTry 0.01\twith warmup."
    finally:
        store.close()
    store = RunStore(db)
    try:
        [record] = store.list_runs()
        assert record.notes == "lr 0.1 diverged at step 2.\nTry 0.01\twith warmup."
        store.set_notes(rid, "")                       # cleared
        assert store.get_run(rid).notes == ""
    finally:
        store.close()


@pytest.mark.parametrize("notes, words", [
    ("see \u202eevil", "U+202E"),                   # bidirectional override: shown reversed
    ("bell \x07", "U+0007"),
    ("x" * (MAX_NOTES_LENGTH + 1), f"longer than {MAX_NOTES_LENGTH:,} characters"),
    (42, "must be text"),
])
def test_bad_notes_are_refused_by_name_and_nothing_is_written(tmp_path, notes, words):
    store = RunStore(tmp_path / "runs.db")
    try:
        rid = store.create_run({})
        store.set_notes(rid, "kept")
        with pytest.raises(ConfigError) as caught:
            store.set_notes(rid, notes)
        assert str(caught.value).startswith("notes: ") and words in str(caught.value)
        assert store.get_run(rid).notes == "kept"
    finally:
        store.close()


def test_notes_of_an_unknown_run_are_refused(tmp_path):
    store = RunStore(tmp_path / "runs.db")
    try:
        with pytest.raises(ValueError, match="is not a stored run"):
            store.set_notes("20240101-000000-abcdef", "hello")
    finally:
        store.close()


def test_check_notes_keeps_the_text_as_typed():
    text = "  two spaces, a tab\t, ünïcode, emoji \U0001F600\nsecond line  "
    assert check_notes(text) == text


def test_a_version_2_store_without_notes_is_migrated_with_its_rows_intact(tmp_path):
    db = tmp_path / "runs.db"
    with contextlib.closing(sqlite3.connect(db, isolation_level=None)) as c:
        c.execute("PRAGMA journal_mode=WAL")                  # as version 2 left it
        c.executescript(V1_SCHEMA)
        c.execute("ALTER TABLE runs ADD COLUMN provenance TEXT NOT NULL DEFAULT '{}'")
        c.execute(f"PRAGMA application_id={APPLICATION_ID}")
        c.execute("PRAGMA user_version=2")
        c.execute("INSERT INTO runs (id, name, config, status, created_at, last_step, tags, "
                  "provenance) VALUES ('20240101-000000-abcdef', 'old', '{\"lr\": 0.1}', "
                  "'diverged', 5.0, 2, '[\"t\"]', '{\"torch\": \"2.5\"}')")
        c.execute("INSERT INTO metrics (run, step, epoch, name, value, time) VALUES "
                  "('20240101-000000-abcdef', 1, 0.5, 'train/step_loss', 2.5, 6.0)")
    assert "notes" not in {r[1] for r in sqlite3.connect(db).execute("PRAGMA table_info(runs)")}
    store = RunStore(db)
    try:
        record = store.get_run("20240101-000000-abcdef")
        assert (record.name, record.status, record.last_step, record.tags, record.provenance,
                record.notes) == ("old", "diverged", 2, ["t"], {"torch": "2.5"}, "")
        assert store.read_metrics(record.id)["value"].tolist() == [2.5]
        store.set_notes(record.id, "migrated")
        assert store.get_run(record.id).notes == "migrated"
    finally:
        store.close()
    with contextlib.closing(sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True)) as c:
        columns = {r[1]: r for r in c.execute("PRAGMA table_info(runs)")}
        assert columns["notes"][2] == "TEXT" and columns["notes"][3] == 1      # NOT NULL
        assert c.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
