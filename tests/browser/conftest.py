"""Browser-test fixtures: a tiny-model store, a real backend and the dashboard on free ports, headless Chromium.

Everything skips, saying why, when /usr/bin/chromium (or chromedriver, or selenium) is missing.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.browser.harness import browser_missing, make_driver, start_backend, start_dash

REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / "test-artifacts" / "screenshots"


@pytest.fixture(scope="session")
def servers(tmp_path_factory, tiny_bundle):
    """(dashboard URL, backend URL, run id) over the session's tiny-model store."""
    reason = browser_missing()
    if reason:
        pytest.skip(f"browser tests need headless Chromium: {reason}")
    from backend.api.settings import Settings
    from tests.backend.api_support import build_store

    store, run_id = build_store(tmp_path_factory.getbasetemp() / "api-store", tiny_bundle)
    settings = Settings(store=store, findings_db=tmp_path_factory.mktemp("browser-findings") / "findings.sqlite",
                        model="tiny-random", device="cpu", rate_burst=1000, rate_per_s=1000, _env_file=None)
    backend = start_backend(settings, bundle=tiny_bundle)
    dash = start_dash(backend.url)
    try:
        yield dash.url, backend.url, run_id
    finally:
        dash.stop()
        backend.stop()


@pytest.fixture(scope="module")
def driver(servers):
    d = make_driver()
    try:
        yield d
    finally:
        d.quit()


@pytest.fixture
def fresh_driver(servers):
    """A second browser with its own new profile: nothing shared with `driver` (cookies, storage, cache)."""
    d = make_driver()
    try:
        yield d
    finally:
        d.quit()


@pytest.fixture(scope="session")
def shots() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS
