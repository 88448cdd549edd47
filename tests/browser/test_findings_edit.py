"""Editing and deleting a finding in the dashboard, keyboard and mouse: the new title and note show at once, and a
deleted finding's permalink says it is gone."""
from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

pytest.importorskip("selenium", reason="browser tests need selenium (pip install selenium)")

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support import expected_conditions  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from tests.browser.harness import console_errors, wait_for  # noqa: E402
from tests.browser.test_dashboard import open_page, wait_css  # noqa: E402

pytestmark = pytest.mark.browser


def test_edit_then_delete_a_finding(servers, driver):
    base, backend_url, run_id = servers
    fid = httpx.post(f"{backend_url}/findings", json={"title": "to edit", "note": "old note",
                                                       "state": {"page": "overview"}, "run_id": run_id}).json()["id"]
    open_page(driver, base, f"/findings?id={fid}", "#finding-edit")
    driver.find_element(By.CSS_SELECTOR, "#finding-edit summary").click()
    title = driver.find_element(By.ID, "finding-edit-title")
    title.send_keys(Keys.CONTROL, "a")
    title.send_keys("edited title")
    note = driver.find_element(By.ID, "finding-edit-note")
    note.send_keys(Keys.CONTROL, "a")
    note.send_keys("new note")
    driver.find_element(By.ID, "finding-edit-save").send_keys(Keys.ENTER)
    wait_for(driver, lambda d: d.find_element(By.ID, "finding-title").text == "edited title", what="the new title")
    assert driver.find_element(By.ID, "finding-note").text == "new note"
    stored = httpx.get(f"{backend_url}/findings/{fid}").json()
    assert (stored["title"], stored["note"]) == ("edited title", "new note") and stored["updated_at"]

    driver.find_element(By.ID, "finding-delete").click()
    WebDriverWait(driver, 20).until(expected_conditions.alert_is_present(), "the delete confirmation").accept()
    wait_for(driver, lambda d: urlsplit(d.current_url).path == "/findings" and "id" not in parse_qs(urlsplit(d.current_url).query),
             what="the findings list after delete")
    assert httpx.get(f"{backend_url}/findings/{fid}").status_code == 404
    open_page(driver, base, f"/findings?id={fid}", ".notice")
    assert "unknown finding" in wait_css(driver, ".notice").text
    assert not [e for e in console_errors(driver) if "404" not in e]
