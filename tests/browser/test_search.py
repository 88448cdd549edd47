"""Finding units from the header's search box, keyboard only: `/` reaches it from any page, a unit id or a site key
with a channel opens that unit on Enter, words of a site key list matching units (ArrowDown into the list, Enter
opens one), filters narrow the list, and a unit page that could not show its unit leads to the box."""
from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

pytest.importorskip("selenium", reason="browser tests need selenium (pip install selenium)")

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402

from tests.browser.harness import console_errors, wait_for  # noqa: E402
from tests.browser.test_dashboard import open_page, wait_css  # noqa: E402

pytestmark = pytest.mark.browser


def _unit_in_url(driver) -> str | None:
    parts = urlsplit(driver.current_url)
    return parse_qs(parts.query).get("unit", [None])[0] if parts.path == "/unit" else None


def _site(backend: str, run_id: str, stack: str = "text_decoder") -> dict:
    sites = httpx.get(f"{backend}/runs/{run_id}/sites").json()["sites"]
    return next(s for s in sites if s["stack"] == stack and s["layer"] == 1 and "fc1" in s["site"])


def _active(driver):
    return driver.switch_to.active_element


def test_slash_then_a_site_key_with_a_channel_opens_that_unit(servers, driver):
    base, backend, run_id = servers
    site = _site(backend, run_id)
    open_page(driver, base, f"/?run={run_id}", "#ov-tab [role=tab]")
    driver.find_element(By.TAG_NAME, "body").send_keys("/")
    wait_for(driver, lambda d: _active(d).get_attribute("id") == "unit-search-q", what="focus in the search box after /")
    _active(driver).send_keys(f"{site['site']}:5", Keys.ENTER)
    wait_for(driver, lambda d: _unit_in_url(d) == str(site["unit_offset"] + 5), what="the unit page of site:5")
    wait_css(driver, "#unit-where")
    assert f"{site['site']}[5]" in driver.find_element(By.CSS_SELECTOR, "#unit-where").text
    assert parse_qs(urlsplit(driver.current_url).query)["run"] == [run_id]
    assert not console_errors(driver)


def test_words_list_units_that_arrow_keys_and_enter_open(servers, driver):
    base, backend, run_id = servers
    site = _site(backend, run_id)
    open_page(driver, base, f"/layer?run={run_id}", ".layer-grid")
    box = driver.find_element(By.ID, "unit-search-q")
    box.send_keys("layers.1. FC1", Keys.ENTER)
    hits = wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#unit-search-results .search-hit"),
                    what="search results")
    head = driver.find_element(By.CSS_SELECTOR, "#unit-search-results .search-head").text
    assert head.startswith(f"{site['width']:,} units") or "units" in head
    assert all("fc1" in h.text and "layers.1." in h.text for h in hits)
    _active(driver).send_keys(Keys.ARROW_DOWN)
    wait_for(driver, lambda d: "search-hit" in (_active(d).get_attribute("class") or ""), what="focus on the first hit")
    _active(driver).send_keys(Keys.ARROW_DOWN)
    second = _active(driver).text
    assert second == hits[1].text
    _active(driver).send_keys(Keys.ENTER)
    expected = second.split(" ")[1]
    wait_for(driver, lambda d: _unit_in_url(d) == expected, what="the chosen hit's unit page")
    wait_for(driver, lambda d: not d.find_elements(By.CSS_SELECTOR, "#unit-search-results .search-hit"),
             what="the result list closed after navigating")
    box = driver.find_element(By.ID, "unit-search-q")
    box.send_keys("no-such-module-anywhere", Keys.ENTER)
    wait_for(driver, lambda d: "no unit matches" in d.find_element(By.ID, "unit-search-results").text,
             what="a plain 'no unit matches' answer")
    box.send_keys(Keys.ESCAPE)
    wait_for(driver, lambda d: not d.find_element(By.ID, "unit-search-results").is_displayed(), what="Escape closes")
    assert not console_errors(driver)


def test_filters_narrow_the_list(servers, driver):
    base, _, run_id = servers
    open_page(driver, base, "/findings", "h1")
    driver.find_element(By.ID, "unit-search-filters-summary").click()
    stack = wait_css(driver, "#unit-search-stack")
    stack.click()
    wait_for(driver, lambda d: d.execute_script(
        "return !!(document.activeElement && document.activeElement.closest('.dash-dropdown-content'))"),
        what="the open dropdown taking the focus")  # typed too early, the text went to the closed control
    _active(driver).send_keys("text encoder")
    wait_for(driver, lambda d: [o.accessible_name for o in d.find_elements(
        By.CSS_SELECTOR, ".dash-dropdown-content .dash-options-list input")] == ["text encoder"],
        what="the options narrowed to 'text encoder'")
    _active(driver).send_keys(Keys.ENTER)
    def filtered(d) -> bool:  # the list answers the filter (a list drawn before the choice landed may show first)
        rows = d.find_elements(By.CSS_SELECTOR, "#unit-search-results li")
        return bool(d.find_elements(By.CSS_SELECTOR, "#unit-search-results .search-hit")) and bool(rows) \
            and all("text encoder layer" in r.text for r in rows)

    wait_for(driver, filtered, what="results of the stack filter, every one in the text encoder")


def test_a_missing_unit_leads_to_the_search_box(servers, driver):
    base, _, run_id = servers
    open_page(driver, base, f"/unit?run={run_id}&unit=999999999", ".notice-error")
    assert "out of range" in driver.find_element(By.CSS_SELECTOR, ".notice-error").text
    hint = driver.find_element(By.ID, "unit-search-hint")
    driver.execute_script("arguments[0].focus()", hint)
    _active(driver).send_keys(Keys.ENTER)
    wait_for(driver, lambda d: _active(d).get_attribute("id") == "unit-search-q", what="focus in the search box")
    _active(driver).send_keys("7", Keys.ENTER)
    wait_for(driver, lambda d: _unit_in_url(d) == "7", what="unit 7 opened from the fallback")
    wait_css(driver, "#unit-where")
