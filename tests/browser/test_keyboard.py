"""Keyboard and screen-reader semantics of the overview: its tabs are a real tablist that Enter and the arrow keys
drive, slider thumbs and dropdowns are named by their visible labels, and chart toolbars stay out of the tab order."""
from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

pytest.importorskip("selenium", reason="browser tests need selenium (pip install selenium)")

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402

from tests.browser.harness import console_errors, wait_for  # noqa: E402
from tests.browser.test_dashboard import open_page, wait_css  # noqa: E402

pytestmark = pytest.mark.browser


def _tab_in_url(driver) -> str | None:
    return parse_qs(urlsplit(driver.current_url).query).get("tab", [None])[0]


def test_overview_tabs_work_from_the_keyboard(servers, driver):
    base, _, run_id = servers
    open_page(driver, base, f"/?run={run_id}", "#ov-tab [role=tab][aria-selected=true]")
    tabs = driver.find_elements(By.CSS_SELECTOR, "#ov-tab [role=tab]")
    assert [t.text for t in tabs][:3] == ["Selectivity", "Modality map", "Concentration"]
    assert driver.find_element(By.CSS_SELECTOR, "#ov-tab").get_attribute("role") == "tablist"
    selected = driver.find_element(By.CSS_SELECTOR, "#ov-tab [role=tab][aria-selected=true]")
    assert selected.get_attribute("tabindex") == "0" and selected.text == "Selectivity"
    selected.send_keys(Keys.ARROW_RIGHT)
    wait_for(driver, lambda d: _tab_in_url(d) == "modality", what="the modality tab from ArrowRight")
    wait_for(driver, lambda d: d.switch_to.active_element.text == "Modality map", what="focus on the opened tab")
    driver.switch_to.active_element.send_keys(Keys.END)
    wait_for(driver, lambda d: _tab_in_url(d) == "interventions", what="the last tab from End")
    concentration = next(t for t in driver.find_elements(By.CSS_SELECTOR, "#ov-tab [role=tab]") if t.text == "Concentration")
    driver.execute_script("arguments[0].focus()", concentration)
    driver.switch_to.active_element.send_keys(Keys.ENTER)
    wait_for(driver, lambda d: _tab_in_url(d) == "concentration", what="the concentration tab from Enter")
    wait_for(driver, lambda d: d.find_element(By.CSS_SELECTOR, "#ov-tab [aria-selected=true]").text == "Concentration",
             what="aria-selected following the open tab")
    assert not console_errors(driver)


def test_controls_are_named_by_their_labels_and_toolbars_leave_the_tab_order(servers, driver):
    base, _, run_id = servers
    open_page(driver, base, f"/?run={run_id}&tab=selectivity", "#ov-sel-figures .js-plotly-plot")
    step = wait_css(driver, ".control [role=slider]")
    wait_for(driver, lambda d: d.find_element(By.CSS_SELECTOR, ".control [role=slider]").get_attribute("aria-label"),
             what="a name on the step slider")
    assert step.get_attribute("aria-label") == "Decoding step"
    unnamed = driver.execute_script("""
        return [...document.querySelectorAll('.control input:not([type=hidden]):not(.dash-dropdown-focus-target), '
                                             + '.control [role=slider], .control button.dash-dropdown')]
          .filter(e => !(e.getAttribute('aria-label') || e.getAttribute('aria-labelledby')
                         || (e.id && document.querySelector(`label[for="${e.id}"]`))
                         || (/^(radio|checkbox)$/.test(e.type) && e.closest('label')?.textContent.trim())))
          .map(e => e.outerHTML.slice(0, 120));""")
    assert unnamed == []
    task = driver.find_element(By.XPATH, "//div[contains(@class,'control')][label[.='Task']]//button")
    assert task.get_attribute("tabindex") == "0", "a dropdown's own button takes the focus (not an aria-hidden proxy)"
    assert task.accessible_name.lower().startswith("task "), task.accessible_name
    radio = driver.find_element(By.CSS_SELECTOR, ".control .radio input[type=radio]")
    assert radio.accessible_name == radio.find_element(By.XPATH, "./ancestor::label").text.strip()
    wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, ".modebar-btn"), what="a chart toolbar")
    focusable = driver.execute_script(
        "return [...document.querySelectorAll('.modebar-btn')].filter(e => e.tabIndex >= 0).length")
    assert focusable == 0


def test_enter_opens_a_layer_grid_row(servers, driver):
    base, _, run_id = servers
    open_page(driver, base, f"/layer?run={run_id}&stack=text_decoder&layer=1&sort=unit_id&order=asc", ".layer-grid .ag-row .ag-cell")
    cell = ".layer-grid .ag-row[row-index='2'] .ag-cell[col-id='unit_id']"
    unit_id = wait_for(driver, lambda d: d.execute_script(
        "const c = document.querySelector(arguments[0]); return c && /^\\d+$/.test(c.textContent.trim()) && c.textContent.trim();",
        cell), what="a unit id in the third grid row")

    def press_enter(d) -> bool:  # the grid may redraw its rows once more: find the cell afresh until it takes the key
        target = d.find_element(By.CSS_SELECTOR, cell)
        if target.text.strip() != unit_id:
            return False
        d.execute_script("arguments[0].focus()", target)
        d.switch_to.active_element.send_keys(Keys.ENTER)
        return True

    wait_for(driver, press_enter, what="Enter on the third row's unit cell")
    wait_for(driver, lambda d: urlsplit(d.current_url).path == "/unit"
             and parse_qs(urlsplit(d.current_url).query).get("unit") == [unit_id], what="Enter opening the row's unit")
    assert not console_errors(driver)
