"""Honest axes and controls on the overview, the Speech × text finding, and the lab's text limits, in the browser:
heatmap columns are named for what they hold and can be coloured by column share (kept in the URL); only the
controls a tab reads are shown; a shared-unit list is scrolled to and focused, and a finding saved from it keeps it;
the lab counts characters, says when a link's text was cut, and warns when the text is far outside the model."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from urllib.parse import parse_qs, quote, urlsplit

import pytest

pytest.importorskip("selenium", reason="browser tests need selenium (pip install selenium)")

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402

from tests.browser.harness import console_errors, wait_for  # noqa: E402
from tests.browser.test_dashboard import (  # noqa: E402
    click_plot_point, fit_and_shoot, open_page, query_of, wait_css, wait_plots)

pytestmark = pytest.mark.browser


def _shown(driver, element_id: str) -> bool:
    return driver.find_element(By.ID, element_id).is_displayed()


def test_columns_are_named_shares_are_a_choice_and_idle_controls_hide(servers, driver):
    base, _, run_id = servers
    open_page(driver, base, f"/?run={run_id}&tab=selectivity", "#ov-sel-figures .js-plotly-plot")
    wait_plots(driver, "#ov-sel-figures", 2)
    ticks = driver.execute_script(
        "return document.querySelector('#ov-heat-text_decoder .js-plotly-plot').layout.xaxis.ticktext")
    assert ticks[-1] == "final norm" and ticks[0] == "0"
    assert "columns after the numbered layers" in driver.find_element(By.ID, "ov-sel-columns").text
    assert [_shown(driver, box) for box in ("ov-set-box", "ov-k-box", "ov-thr-box")] == [True, True, False]
    share = driver.find_element(By.CSS_SELECTOR, "#ov-scale input[value=fraction]")
    driver.execute_script("arguments[0].click()", share)
    wait_for(driver, lambda d: query_of(d.current_url).get("scale") == "fraction", what="scale=fraction in the URL")
    wait_for(driver, lambda d: "share of each column" in d.execute_script(
        "return document.querySelector('#ov-heat-text_decoder .js-plotly-plot').layout.title.text"),
        what="the heatmap coloured by column share")
    for label, key, shown in (("Concentration", "concentration", ()), ("Interventions (batch)", "interventions", ()),
                              ("Speech × text", "crossmodal", ("ov-k-box",)), ("Modality map", "modality",
                                                                           ("ov-set-box", "ov-k-box"))):
        driver.find_element(By.XPATH, f"//div[@role='tab' and normalize-space()='{label}']").click()
        wait_for(driver, lambda d: query_of(d.current_url).get("tab") == key, what=f"tab={key}")
        wait_for(driver, lambda d: [b for b in ("ov-set-box", "ov-k-box", "ov-thr-box") if _shown(d, b)] == list(shown),
                 what=f"only {shown or 'no'} top controls on {key}")
        if key == "crossmodal":
            assert not _shown(driver, "ov-x-layer-box")
    driver.execute_script("arguments[0].click()", driver.find_element(By.CSS_SELECTOR, "#ov-set input[value=ap]"))
    wait_for(driver, lambda d: _shown(d, "ov-thr-box") and not _shown(d, "ov-k-box"),
             what="the AP threshold (not k) for the 'AP ≥ threshold' set")
    assert not console_errors(driver)


def test_a_speech_text_cell_is_revealed_and_its_finding_keeps_the_shared_units(servers, driver):
    base, _, run_id = servers
    open_page(driver, base, f"/?run={run_id}&tab=crossmodal", "#ov-x-overlap .js-plotly-plot")
    wait_plots(driver, "#ov-x-overlap")
    driver.execute_script("window.scrollTo(0, 0)")
    click_plot_point(driver, "#ov-x-overlap", 1, 0)
    wait_for(driver, lambda d: query_of(d.current_url).get("x_cell") == "fra:deu", what="the clicked cell in the URL")
    wait_for(driver, lambda d: "result-heading" in (d.switch_to.active_element.get_attribute("class") or ""),
             timeout=40, what="focus on the shared-unit list's heading")
    wait_for(driver, lambda d: d.execute_script(
        "const r = document.querySelector('#ov-x-shared h3').getBoundingClientRect();"
        "return r.top >= 0 && r.bottom <= window.innerHeight"), what="the shared-unit list scrolled into view")
    listed = [a.get_attribute("href") for a in driver.find_elements(By.CSS_SELECTOR, "#ov-x-shared a.unit-link")]
    heading = driver.find_element(By.CSS_SELECTOR, "#ov-x-shared h3").text
    driver.find_element(By.CSS_SELECTOR, "#save-details summary").click()
    driver.find_element(By.ID, "save-title").send_keys(f"fra text x deu speech {time.time():.0f}")
    driver.find_element(By.ID, "save-button").click()
    permalink = wait_css(driver, "#save-permalink", timeout=60, what="the permalink").get_attribute("href")
    driver.get(permalink)
    wait_css(driver, "#finding-result h3")
    assert driver.find_element(By.CSS_SELECTOR, "#finding-result h3").text == heading
    kept = [a.get_attribute("href") for a in driver.find_elements(By.CSS_SELECTOR, "#finding-result a.unit-link")]
    assert kept == listed
    assert "cell text fra × speech deu" in driver.find_element(By.CSS_SELECTOR, ".table.kv").text
    assert not console_errors(driver)


def test_the_lab_counts_characters_says_what_it_cut_and_warns_far_outside(servers, driver):
    base, _, run_id = servers
    text = "Die Tür ist braun und das Haus ist groß. " * 60
    open_page(driver, base, f"/lab?run={run_id}&in=text&src=deu&tgt=eng&text={quote(text)}", "#lab-text")
    notices = driver.find_element(By.CSS_SELECTOR, ".page-lab").text
    assert f"{len(text):,} characters" in notices and "cut after character 2,000" in notices
    wait_for(driver, lambda d: d.find_element(By.ID, "lab-text-count").text.startswith("2,000 / 2,000 characters"),
             what="the counter at the limit")
    box = driver.find_element(By.ID, "lab-text")
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(Keys.BACK_SPACE)
    box.send_keys("Das Haus")
    wait_for(driver, lambda d: d.find_element(By.ID, "lab-text-count").text == "8 / 2,000 characters",
             what="the counter following the typing")
    box.send_keys(" 이것은 한국어 문장입니다", Keys.TAB)
    wait_for(driver, lambda d: "Far outside what the tiny-random model handles" in d.find_element(By.ID, "lab-text-fit").text,
             what="the far-outside warning after leaving the box")
    assert "unknown to the tiny-random model's vocabulary" in driver.find_element(By.ID, "lab-text-fit").text
    assert not console_errors(driver)


def test_a_concentration_cell_finding_keeps_the_drill_down_units(servers, driver, shots):
    """The drill-down under a concentration cell is what a finding saved there is about: its card draws the same
    heading, bars and unit links, at a laptop and a small window without sideways scrolling."""
    base, backend_url, run_id = servers
    open_page(driver, base, f"/?run={run_id}&tab=concentration&c_cell=speech%3Adeu%3A1", "#ov-c-drill h3")
    heading = driver.find_element(By.CSS_SELECTOR, "#ov-c-drill h3").text
    listed = [a.get_attribute("href") for a in driver.find_elements(By.CSS_SELECTOR, "#ov-c-drill a.unit-link")]
    assert heading.startswith("Units carrying the mass: speech-conditioned · deu") and listed
    driver.find_element(By.CSS_SELECTOR, "#save-details summary").click()
    driver.find_element(By.ID, "save-title").send_keys(f"deu speech layer 1 mass carriers {time.time():.0f}")
    driver.find_element(By.ID, "save-button").click()
    permalink = wait_css(driver, "#save-permalink", timeout=60, what="the permalink").get_attribute("href")
    driver.get(permalink)
    wait_css(driver, "#finding-result h3")
    wait_plots(driver, "#finding-result", 2)
    assert driver.find_element(By.CSS_SELECTOR, "#finding-result h3").text == heading
    assert [a.get_attribute("href") for a in driver.find_elements(By.CSS_SELECTOR, "#finding-result a.unit-link")] == listed
    assert "cell speech-conditioned deu layer 1" in driver.find_element(By.CSS_SELECTOR, ".table.kv").text
    assert not driver.find_elements(By.CSS_SELECTOR, ".demo-model-line"), "tiny-random is not the demo model"
    script = driver.execute_script("return document.getElementById('finding-python').textContent")
    replay = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "NEURON_ATLAS_BACKEND": backend_url})
    assert replay.returncode == 0, replay.stderr
    printed = [line.split()[0] for line in replay.stdout.split("drill-down units", 1)[1].splitlines()[1:len(listed) + 1]]
    assert printed == [parse_qs(urlsplit(href).query)["unit"][0] for href in listed], replay.stdout
    fit_and_shoot(driver, shots, "finding-concentration")
    assert not console_errors(driver)

