"""The bridge page in real headless Chromium on the tiny-model store.

The view renders from its URL without console errors and says what a column spans; a token plays the segment it
attended to most; a click on the spectrogram picks a span and lists the tokens that read it; the view saved as a
finding draws in a fresh browser and re-runs to the same answer; the unit page of a cross-attention k/v unit and the
lab link to it.
"""
from __future__ import annotations

from urllib.parse import urlsplit

import pytest

pytest.importorskip("selenium", reason="browser tests need selenium (pip install selenium)")

from selenium.webdriver.common.actions.action_builder import ActionBuilder  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402

from tests.browser.harness import console_errors, screenshot, wait_for  # noqa: E402
from tests.browser.test_dashboard import query_of, wait_css  # noqa: E402

pytestmark = pytest.mark.browser


def trace_names(driver, container: str) -> list[str]:
    return driver.execute_script("const gd = document.querySelector(arguments[0] + ' .js-plotly-plot');"
                                 "return gd && gd.data ? gd.data.map(t => t.name) : [];", container)


def click_spectrogram(driver, seconds: float) -> None:
    """A real mouse click on the spectrogram (top subplot) at `seconds`, placed from the figure's own axes."""
    x, y = driver.execute_script(
        "const gd = document.querySelector('#bridge-figure .js-plotly-plot');"
        "gd.scrollIntoView({block: 'center'});"
        "const fl = gd._fullLayout, r = gd.getBoundingClientRect();"
        "return [r.left + fl.xaxis._offset + fl.xaxis.l2p(arguments[0]), r.top + fl.yaxis._offset + fl.yaxis._length / 2];",
        seconds)
    builder = ActionBuilder(driver)
    builder.pointer_action.move_to_location(int(x), int(y))
    builder.pointer_action.click()
    builder.perform()


@pytest.fixture(scope="module")
def kv_unit(tiny_registry) -> int:
    site = next(s for s in tiny_registry.sites if s.domain == "encoder_out" and s.key.endswith("v_proj"))
    return site.offset + 1


def test_bridge_page(servers, driver, fresh_driver, shots, kv_unit):
    base, _, run_id = servers
    driver.get(f"{base}/bridge?run={run_id}&max_new=6")
    wait_for(driver, lambda d: trace_names(d, "#bridge-body")[-2:] == ["attention", "peak"], 60, "the attention band")
    q = query_of(driver.current_url)
    assert q["run"] == run_id and q["ex"] and q["tgt"]
    assert trace_names(driver, "#bridge-body")[0] == "spectrogram"
    assert "length-adaptor frame" in driver.find_element(By.ID, "bridge-columns-note").text
    assert not console_errors(driver)

    chip = wait_css(driver, "#bridge-tokens a")
    chip.click()
    wait_for(driver, lambda d: query_of(d.current_url).get("tok") == "0", 30, "tok=0 in the URL")
    player = wait_css(driver, "#bridge-player", 30)
    src = player.get_attribute("src")
    assert f"/media/audio/{run_id}/" in src and "#t=" in src
    start, end = (float(v) for v in src.split("#t=")[1].split(","))
    assert 0 <= start < end

    click_spectrogram(driver, 0.3)
    wait_for(driver, lambda d: {"t0", "t1"} <= set(query_of(d.current_url)), 30, "a span in the URL")
    q = query_of(driver.current_url)
    assert float(q["t0"]) <= 0.3 + 0.1 and float(q["t1"]) >= 0.3 - 0.1
    readers = wait_css(driver, "#bridge-readers", 30)
    assert "Tokens that read" in readers.text
    screenshot(driver, shots, "bridge")
    saved = driver.current_url

    driver.find_element(By.CSS_SELECTOR, "#save-details summary").click()
    driver.find_element(By.ID, "save-title").send_keys("What the first token read")
    driver.find_element(By.ID, "save-button").click()
    permalink = wait_css(driver, "#save-permalink", 60).get_attribute("href")
    fresh_driver.get(permalink)
    wait_for(fresh_driver, lambda d: "attention" in trace_names(d, "#finding-result"), 40, "the finding's stored band")
    assert "bridge" in fresh_driver.find_element(By.CSS_SELECTOR, ".table.kv").text
    fresh_driver.find_element(By.ID, "finding-verify").click()
    wait_for(fresh_driver, lambda d: "matches the stored result exactly" in d.find_element(By.ID, "finding-verify-out").text,
             90, "the re-run to match")
    assert "/bridge" in fresh_driver.find_element(By.ID, "finding-python").get_attribute("textContent")
    fresh_driver.find_element(By.ID, "finding-open").click()
    wait_for(fresh_driver, lambda d: urlsplit(d.current_url).path == "/bridge", 30, "the saved view")
    wait_for(fresh_driver, lambda d: query_of(d.current_url) == query_of(saved), 30, "the same URL state")
    assert not console_errors(fresh_driver)


def test_unit_page_and_lab_link_to_the_bridge(servers, driver, kv_unit):
    base, _, run_id = servers
    driver.get(f"{base}/unit?run={run_id}&unit={kv_unit}")
    link = wait_css(driver, "#unit-bridge-link", 40)
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", link)
    link.click()
    wait_for(driver, lambda d: urlsplit(d.current_url).path == "/bridge", 30, "the bridge page")
    assert query_of(driver.current_url)["unit"] == str(kv_unit)
    wait_for(driver, lambda d: "unit" in trace_names(d, "#bridge-body"), 60, "the unit's strip")
    assert not console_errors(driver)

    driver.get(f"{base}/unit?run={run_id}&unit=0")
    wait_for(driver, lambda d: d.find_element(By.CSS_SELECTOR, "h1").text == "Unit 0", 30, "unit 0's page")
    assert not driver.find_elements(By.ID, "unit-bridge-link")

    driver.get(f"{base}/lab?run={run_id}")
    link = wait_css(driver, "#lab-bridge-link", 40)
    assert urlsplit(link.get_attribute("href")).path == "/bridge"
