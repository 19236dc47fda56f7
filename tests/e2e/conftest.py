"""Fixtures of the browser tests: the real app as a server on a free port, its home in the
test's own folder (tests/e2e/server.py)."""

from __future__ import annotations

import pytest

from tests.e2e.server import AppServer


@pytest.fixture
def server(tmp_path):
    app = AppServer(tmp_path)
    yield app
    app.stop()
