"""The compare page in real headless Chromium on the tiny-model store: one run at step 2 against itself at step 7.

The view renders without console errors with its whole state in the URL; a click on a heatmap row picks that
concept; the top-k box re-computes the overlap; a mover links to its unit page in run B; the view saved as a finding
reproduces in a fresh browser and re-runs to the same answers.
"""
from __future__ import annotations

import time
from urllib.parse import urlsplit

import pytest

pytest.importorskip("selenium", reason="browser tests need selenium (pip install selenium)")

from selenium.webdriver.common.actions.action_builder import ActionBuilder  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402

from tests.browser.harness import console_errors, screenshot, wait_for  # noqa: E402
from tests.browser.test_dashboard import query_of, wait_css  # noqa: E402

pytestmark = pytest.mark.browser


def n_plots(driver, container: str) -> int:
    return driver.execute_script("return Array.from(document.querySelectorAll(arguments[0] + ' .js-plotly-plot'))"
                                 ".filter(g => g.data && g.data.length > 0).length", container)


def heatmap_rows(driver) -> list[int]:
    """Run A's concept id of each heatmap row, read from the drawn figure."""
    return driver.execute_script("const gd = document.querySelector('#compare-heatmap .js-plotly-plot');"
                                 "return gd.data[0].customdata.map(row => row[0][3]);")


def click_heatmap_row(driver, row: int) -> None:
    """A real mouse click on the first cell of a heatmap row (pixel position from the figure's own axes)."""
    x, y = driver.execute_script(
        "const gd = document.querySelector('#compare-heatmap .js-plotly-plot');"
        "gd.scrollIntoView({block: 'center'});"
        "const fl = gd._fullLayout, r = gd.getBoundingClientRect();"
        "return [r.left + fl.xaxis._offset + fl.xaxis.l2p(0), r.top + fl.yaxis._offset + fl.yaxis.l2p(arguments[0])];", row)
    builder = ActionBuilder(driver)
    builder.pointer_action.move_to_location(int(x), int(y))
    builder.pointer_action.click()
    builder.perform()


def test_compare_two_steps_of_one_run(servers, driver, fresh_driver, shots):
    base, _, run_id = servers
    driver.get(f"{base}/compare?run={run_id}&run_b={run_id}&step=2&step_b=7&kind=language&stack=text_decoder")
    wait_for(driver, lambda d: n_plots(d, "#compare-body") == 2, 40, "the heatmap and the scatter")
    q = query_of(driver.current_url)
    assert (q["run"], q["run_b"], q["step"], q["step_b"], q["stack"]) == (run_id, run_id, "2", "7", "text_decoder")
    rows = heatmap_rows(driver)
    assert len(rows) >= 2 and q["concept"] == str(rows[0])
    assert "step 2 → 7" in driver.find_element(By.ID, "compare-heatmap").text
    screenshot(driver, shots, "compare-steps")
    assert not console_errors(driver)

    click_heatmap_row(driver, 1)
    wait_for(driver, lambda d: query_of(d.current_url).get("concept") == str(rows[1]), 30, "the clicked concept in the URL")
    wait_for(driver, lambda d: f"A: {rows[1]} ·" in d.find_element(By.ID, "compare-facts").text, 30, "its comparison")

    box = driver.find_element(By.ID, "compare-k")
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys("3", Keys.ENTER)
    wait_for(driver, lambda d: query_of(d.current_url).get("k") == "3", 30, "k=3 in the URL")
    wait_for(driver, lambda d: "top-3 shared" in d.find_element(By.ID, "compare-facts").text, 30, "the top-3 overlap")
    saved = driver.current_url

    driver.find_element(By.CSS_SELECTOR, "#save-details summary").click()
    driver.find_element(By.ID, "save-title").send_keys("German units at step 2 vs step 7")
    driver.find_element(By.ID, "save-button").click()
    permalink = wait_css(driver, "#save-permalink", 60).get_attribute("href")
    fresh_driver.get(permalink)
    wait_for(fresh_driver, lambda d: n_plots(d, "#finding-result") == 2, 40, "the finding's stored figures")
    assert "compare" in fresh_driver.find_element(By.CSS_SELECTOR, ".table.kv").text
    fresh_driver.find_element(By.ID, "finding-verify").click()
    wait_for(fresh_driver, lambda d: "matches the stored result exactly" in d.find_element(By.ID, "finding-verify-out").text,
             60, "the re-run to match")
    fresh_driver.find_element(By.ID, "finding-open").click()
    wait_for(fresh_driver, lambda d: urlsplit(d.current_url).path == "/compare", 30, "the saved view")
    wait_for(fresh_driver, lambda d: query_of(d.current_url) == query_of(saved), 30, "the same URL state")
    assert not console_errors(fresh_driver)

    link = wait_css(driver, "#compare-moved .moved-link-b")
    unit_b = link.text
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", link)
    time.sleep(0.2)
    link.click()
    wait_for(driver, lambda d: urlsplit(d.current_url).path == "/unit", 30, "the unit page in run B")
    target = query_of(driver.current_url)
    assert (target["run"], target["unit"]) == (run_id, unit_b)
    wait_for(driver, lambda d: d.find_element(By.CSS_SELECTOR, "h1").text == f"Unit {unit_b}", 30, "unit B's page")
    assert not console_errors(driver)
