"""Start a real backend (uvicorn) and the Dash app (werkzeug) on free local ports in threads, and drive headless
Chromium with Selenium (system chromedriver only, so Selenium Manager never downloads anything).

Shared by tests/browser and benchmarks/app.py.
"""
from __future__ import annotations

import importlib.util
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
WINDOW = (1366, 768)


def browser_missing() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing (install the Debian packages chromium and chromium-driver)"
    if not CHROMEDRIVER.exists():
        return f"{CHROMEDRIVER} is missing (install the Debian package chromium-driver)"
    if importlib.util.find_spec("selenium") is None:
        return "selenium is not installed"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServerThread:
    """A server running in a daemon thread; `stop()` shuts it down and waits (bounded)."""

    url: str
    thread: threading.Thread
    stopper: Callable[[], None]
    extra: dict[str, Any] = field(default_factory=dict)

    def stop(self, timeout: float = 15.0) -> None:
        self.stopper()
        self.thread.join(timeout)


def start_backend(settings, bundle=None, timeout: float = 90.0) -> ServerThread:
    """The FastAPI backend under uvicorn; returns once /readyz answers 200 (model loaded, store open)."""
    import httpx
    import uvicorn

    from backend.api.app import create_app

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings, bundle=bundle), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, name="test-backend", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/readyz", timeout=2.0).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    else:
        server.should_exit = True
        raise RuntimeError(f"the backend did not become ready within {timeout:g} s")

    def stop() -> None:
        server.should_exit = True

    return ServerThread(url, thread, stop)


def start_dash(backend_url: str, compress: bool = True) -> ServerThread:
    """The dashboard on a threaded werkzeug server (`compress=False`: responses uncompressed)."""
    import logging

    from werkzeug.serving import make_server

    from app.main import create_app

    logging.getLogger("werkzeug").setLevel(logging.ERROR)

    dash_app = create_app(backend_url, compress=compress)
    port = free_port()
    srv = make_server("127.0.0.1", port, dash_app.server, threaded=True)
    thread = threading.Thread(target=srv.serve_forever, name="test-dash", daemon=True)
    thread.start()
    return ServerThread(f"http://127.0.0.1:{port}", thread, srv.shutdown, {"app": dash_app})


def make_driver(extra_args: tuple[str, ...] = ()):
    """Headless Chromium with a 1366×768 viewport, a fresh profile (a fresh browser context) and the console log on.

    `extra_args` adds Chromium switches (e.g. a fake microphone for the recording test)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    profile = tempfile.mkdtemp(prefix="atlas-chrome-")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
                "--disable-default-apps", "--disable-extensions", "--mute-audio",
                f"--window-size={WINDOW[0]},{WINDOW[1]}", f"--user-data-dir={profile}", *extra_args):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=opts)
    chrome = int(driver.execute_script("return window.outerHeight - window.innerHeight"))
    driver.set_window_size(WINDOW[0], WINDOW[1] + chrome)
    driver.atlas_chrome_height = chrome
    driver.set_page_load_timeout(30)
    driver.set_script_timeout(30)
    return driver


def console_errors(driver) -> list[str]:
    """SEVERE console entries since the last call (the log is drained by reading it)."""
    return [e["message"] for e in driver.get_log("browser") if e.get("level") == "SEVERE"]


def wait_for(driver, condition: Callable[[Any], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException, TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.05,
                             ignored_exceptions=(NoSuchElementException, StaleElementReferenceException)).until(condition)
    except TimeoutException:
        raise AssertionError(f"timed out after {timeout:g} s waiting for {what} (at {driver.current_url})") from None


def screenshot(driver, directory: Path, name: str, full_page: bool = True) -> Path:
    """Save a screenshot (the whole page height when `full_page`, capped at 4000 px) and restore the window."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.png"
    chrome = getattr(driver, "atlas_chrome_height", 0)
    if full_page:
        height = int(driver.execute_script("return Math.min(document.documentElement.scrollHeight, 4000)"))
        driver.set_window_size(WINDOW[0], max(WINDOW[1], height) + chrome)
        time.sleep(0.3)
    driver.save_screenshot(str(path))
    if full_page:
        driver.set_window_size(WINDOW[0], WINDOW[1] + chrome)
    return path
