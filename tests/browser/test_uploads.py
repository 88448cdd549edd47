"""An uploaded recording in real headless Chromium on the tiny-model store: the lab sends it once to POST /audio and
'what fires' lists units on it; the lab's bridge link carries its audio id, and the bridge draws the band under the
upload's spectrogram and plays segments of the upload; axe finds nothing serious on either view."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("selenium", reason="browser tests need selenium (pip install selenium)")

from selenium.webdriver.common.by import By  # noqa: E402

from tests.browser.harness import console_errors, screenshot, wait_for  # noqa: E402
from tests.browser.test_axe import BLOCKING, axe_violations, describe  # noqa: E402
from tests.browser.test_bridge import trace_names  # noqa: E402
from tests.browser.test_dashboard import open_page, query_of, wait_css  # noqa: E402

pytestmark = pytest.mark.browser


def axe_problems(driver) -> list[str]:
    """Serious or critical violations the vendored axe-core finds on the page, one line each."""
    return [describe(v) for v in axe_violations(driver) if v.get("impact") in BLOCKING]


def test_an_upload_feeds_what_fires_and_the_bridge(servers, driver, shots, tmp_path):
    base, _, run_id = servers
    clip = tmp_path / "my-sentence.wav"
    t = np.arange(int(1.4 * 16000)) / 16000
    sf.write(clip, (0.3 * np.sin(2 * np.pi * 180 * t) * (1 + 0.5 * np.sin(2 * np.pi * 4 * t))).astype(np.float32), 16000)
    open_page(driver, base, f"/lab?run={run_id}&in=upload&tgt=eng", "#lab-fires")
    wait_css(driver, "#lab-upload input[type=file]").send_keys(str(clip))
    line = wait_for(driver, lambda d: "audio id" in d.find_element(By.ID, "lab-audio-line").text
                    and d.find_element(By.ID, "lab-audio-line").text, 60, "the upload sent to the backend")
    audio_id = line.rsplit("audio id ", 1)[1].strip()
    assert "my-sentence.wav" in line and "1.40 s" in line

    driver.find_element(By.ID, "lab-fires").click()
    wait_css(driver, "#lab-fires-out .fires-table", timeout=90, what="the what-fires tables")
    assert driver.find_elements(By.CSS_SELECTOR, "#lab-fires-out .fires-unit button")
    assert "input: uploaded audio my-sentence.wav" in driver.find_element(By.ID, "lab-fires-out").text
    screenshot(driver, shots, "lab-upload-fires")
    assert not axe_problems(driver), "axe on the lab with an upload"

    link = wait_for(driver, lambda d: audio_id in (d.find_element(By.ID, "lab-bridge-link").get_attribute("href") or "")
                    and d.find_element(By.ID, "lab-bridge-link"), 30, "the bridge link with the audio id")
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", link)  # out from under the sticky header
    link.click()
    wait_for(driver, lambda d: trace_names(d, "#bridge-body")[-2:] == ["attention", "peak"], 90, "the attention band")
    q = query_of(driver.current_url)
    assert q["in"] == "upload" and q["aid"] == audio_id
    assert trace_names(driver, "#bridge-body")[0] == "spectrogram"
    assert f"/media/upload/{audio_id}" in driver.find_element(By.CSS_SELECTOR, "#bridge-input-player").get_attribute("src")
    wait_css(driver, "#bridge-tokens a").click()
    player = wait_css(driver, "#bridge-player", 30)
    assert f"/media/upload/{audio_id}#t=" in player.get_attribute("src")
    duration = driver.execute_script(
        "const a = document.getElementById('bridge-player');"
        "return new Promise(r => { if (a.readyState >= 1) { r(a.duration); } else {"
        " a.addEventListener('loadedmetadata', () => r(a.duration)); a.addEventListener('error', () => r(-1)); } });")
    assert duration == pytest.approx(1.4, abs=0.05), "the player loads the upload through the dashboard"
    screenshot(driver, shots, "bridge-upload")
    assert not axe_problems(driver), "axe on the bridge of an upload"
    assert not console_errors(driver)
