"""The unit page's token-level evidence in headless Chromium: paged top and bottom examples, the pager driven from the
keyboard, colour strips over output tokens (decoder units) and speech frames (speech-encoder units) from one batched
live trace, and screenshots at 1440×1000 and 1024×700."""
from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

pytest.importorskip("selenium", reason="browser tests need selenium (pip install selenium)")

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402

from tests.browser.harness import wait_for  # noqa: E402
from tests.browser.test_dashboard import assert_no_console_errors, open_page, texts, wait_plots  # noqa: E402

pytestmark = pytest.mark.browser

SIZES = {"1440x1000": (1440, 1000), "1024x700": (1024, 700)}


def _query(driver) -> dict[str, str]:
    return {k: v[-1] for k, v in parse_qs(urlsplit(driver.current_url).query).items()}


def _unit(registry, stack: str, domain: str) -> int:
    site = next(s for s in registry.sites if s.stack == stack and s.domain == domain)
    return site.offset + 2


def _strips_loaded(driver, kind: str) -> bool:
    """Every example row holds a strip of `kind` (the batched trace has answered)."""
    counts = driver.execute_script(
        "const cells = document.querySelectorAll('#unit-examples .evidence-cell');"
        "return [cells.length, [...cells].filter(c => c.querySelector(arguments[0])).length];", kind)
    return counts[0] > 0 and counts[0] == counts[1]


def _active_id(driver) -> str:
    return driver.switch_to.active_element.get_attribute("id") or ""


def _shoot(driver, shots, name: str) -> None:
    chrome = getattr(driver, "atlas_chrome_height", 0)
    for label, (w, h) in SIZES.items():
        driver.set_window_size(w, h + chrome)
        driver.execute_script("document.getElementById('unit-examples').scrollIntoView({block: 'start'})")
        wait_for(driver, lambda d: d.execute_script("return window.innerWidth") == w, what=f"a {w} px wide window")
        driver.save_screenshot(str(shots / f"{name}-{label}.png"))
    driver.set_window_size(1366, 768 + chrome)


def test_paged_examples_with_output_token_strips_from_the_keyboard(servers, driver, shots, tiny_registry):
    base, _, run_id = servers
    uid = _unit(tiny_registry, "text_decoder", "decoder")
    open_page(driver, base, f"/unit?run={run_id}&unit={uid}&task=asr&step=7&per=10", "#unit-examples table")
    wait_for(driver, lambda d: "ranks 1–10 of 18" in d.find_element(By.ID, "unit-ex-range").text, what="the page range")
    wait_for(driver, lambda d: _strips_loaded(d, ".token-strip"), timeout=60, what="output-token strips in every row")
    assert len(texts(driver, "#unit-examples tbody tr")) == 20  # 10 top + 10 bottom
    assert driver.find_elements(By.CSS_SELECTOR, "#unit-examples .tok-window")
    tips = texts(driver, "#unit-examples .tok", "title")
    assert tips and all(" · " in t for t in tips)
    assert "items traced live in one batch" in driver.find_element(By.ID, "unit-ev-status").text
    assert driver.find_element(By.ID, "unit-strip-legend").is_displayed()
    wait_plots(driver, "#unit-dist")
    rows = driver.execute_script("return document.querySelector('#unit-dist .js-plotly-plot').data.flatMap(t => t.y)")
    assert all(" · " in r for r in rows) and {r.split(" · ")[1] for r in rows} == {"speech", "text"}
    first_page = texts(driver, "#unit-examples tbody tr td:first-child")
    _shoot(driver, shots, "unit-evidence")

    # keyboard only: Tab from the page-size control reaches Next (Previous is disabled on the first page), Enter pages
    driver.execute_script("const el = document.getElementById('unit-per');"
                          "(el.matches('input, button, [tabindex]') ? el"
                          " : el.querySelector('input, button, [tabindex]:not([tabindex=\"-1\"])')).focus();")
    for _ in range(3):  # the dropdown may hold more than one stop (its search box); Next follows within a few
        if _active_id(driver) == "unit-ex-next":
            break
        driver.switch_to.active_element.send_keys(Keys.TAB)
    wait_for(driver, lambda d: _active_id(d) == "unit-ex-next", what="focus on Next after Tab")
    driver.switch_to.active_element.send_keys(Keys.ENTER)
    wait_for(driver, lambda d: _query(d).get("offset") == "10", what="offset=10 in the URL after Enter on Next")
    wait_for(driver, lambda d: "ranks 11–18 of 18" in d.find_element(By.ID, "unit-ex-range").text, what="page 2's range")
    assert texts(driver, "#unit-examples tbody tr td:first-child") != first_page
    assert texts(driver, "#unit-examples tbody tr td:first-child")[0] == "11"
    wait_for(driver, lambda d: _strips_loaded(d, ".token-strip"), timeout=60, what="strips on page 2")
    assert driver.find_element(By.ID, "unit-ex-next").get_attribute("disabled")
    driver.execute_script("document.getElementById('unit-ex-prev').focus()")
    assert _active_id(driver) == "unit-ex-prev"
    driver.switch_to.active_element.send_keys(Keys.SPACE)
    wait_for(driver, lambda d: _query(d).get("offset") == "0", what="back on the first page after Space on Previous")
    wait_for(driver, lambda d: texts(d, "#unit-examples tbody tr td:first-child") == first_page, what="page 1 again")
    assert_no_console_errors(driver, "unit page with token strips")


def test_speech_encoder_units_get_frame_strips_and_one_under_the_spectrogram(servers, driver, shots, tiny_registry):
    base, _, run_id = servers
    uid = _unit(tiny_registry, "speech_encoder", "speech_frames")
    open_page(driver, base, f"/unit?run={run_id}&unit={uid}&task=asr", "#unit-examples table")
    wait_for(driver, lambda d: _strips_loaded(d, ".frame-strip"), timeout=60, what="frame strips in every row")
    assert "speech frames" in driver.find_element(By.CSS_SELECTOR, "#unit-examples .strip-caption").text
    assert driver.find_elements(By.CSS_SELECTOR, "#unit-examples audio")
    wait_plots(driver, "#unit-spec")
    kinds = driver.execute_script("return document.querySelector('#unit-spec .js-plotly-plot').data.map(t => t.yaxis || 'y')")
    assert "y3" in kinds  # the strip under the spectrogram, on its time axis
    _shoot(driver, shots, "unit-evidence-speech")
    assert_no_console_errors(driver, "unit page of a speech-encoder unit")


def test_a_bad_unit_id_offers_another(servers, driver):
    base, _, run_id = servers
    open_page(driver, base, f"/unit?run={run_id}&unit=999999999", "#unit-pick-id")
    box = driver.find_element(By.ID, "unit-pick-id")
    box.send_keys("3")
    box.send_keys(Keys.ENTER)
    wait_for(driver, lambda d: _query(d).get("unit") == "3", what="unit 3 opened from the picker")
    wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#unit-ap"), what="unit 3's page")
