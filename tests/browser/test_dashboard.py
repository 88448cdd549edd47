"""The dashboard in real headless Chromium against a real backend on the tiny-model store.

Each page renders without console errors and writes its whole state into the URL; a heatmap click leads to the layer
and then the unit page; a lab intervention shows both outputs and playable audio; a saved finding's permalink opened
in a fresh browser reproduces the view; bad uploads get a readable error next to the upload control. Screenshots of
every page go to test-artifacts/screenshots/.
"""
from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("selenium", reason="browser tests need selenium (pip install selenium)")

from selenium.common.exceptions import StaleElementReferenceException  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.actions.action_builder import ActionBuilder  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402

from tests.browser.harness import console_errors, make_driver, screenshot, wait_for  # noqa: E402

pytestmark = pytest.mark.browser

LAB_QUERY = ("/lab?in=example&ex=builtin:s000:deu:deu-m1&mod=speech&tgt=eng&us=concept&role=representation"
             "&umod=text&ulang=deu&step=2&set=top&k=5&stack=text_decoder&value=on_p50&max_new=12")


def query_of(url: str) -> dict[str, str]:
    return {k: v[-1] for k, v in parse_qs(urlsplit(url).query).items()}


def css(driver, selector: str):
    return driver.find_elements(By.CSS_SELECTOR, selector)


def wait_css(driver, selector: str, timeout: float = 30.0, what: str | None = None):
    return wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, selector), timeout, what or selector)[0]


def wait_plots(driver, container: str, n: int = 1, timeout: float = 25.0) -> None:
    """Wait until `container` holds at least n drawn Plotly figures with data."""
    script = ("return Array.from(document.querySelectorAll(arguments[0] + ' .js-plotly-plot'))"
              ".filter(g => g.data && g.data.length > 0).length")
    wait_for(driver, lambda d: d.execute_script(script, container) >= n, timeout, f"{n} figure(s) in {container}")


def click_css(driver, selector: str, attempts: int = 6) -> None:
    """Click an element, finding it again when Dash re-rendered it in between (stale element)."""
    for attempt in range(attempts):
        try:
            ActionChains(driver).move_to_element(driver.find_element(By.CSS_SELECTOR, selector)).click().perform()
            return
        except StaleElementReferenceException:
            if attempt == attempts - 1:
                raise
            time.sleep(0.2)


def texts(driver, selector: str, attribute: str = "textContent") -> list[str]:
    """Text (or an attribute) of every match, read in one go in the page (no stale handles)."""
    return driver.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0])).map(e => e[arguments[1]] || e.getAttribute(arguments[1]));",
        selector, attribute)


def open_page(driver, base: str, path: str, ready: str) -> None:
    driver.get(base + path)
    wait_css(driver, ready, what=f"{ready} on {path}")


def assert_no_console_errors(driver, where: str) -> None:
    errors = console_errors(driver)
    assert not errors, f"console errors on {where}: {errors}"


def click_plot_point(driver, graph_selector: str, i: int, j: int) -> None:
    """A real mouse click on cell (row i, column j) of a heatmap (pixel position from the figure's own axes)."""
    x, y = driver.execute_script(
        "const gd = document.querySelector(arguments[0] + ' .js-plotly-plot');"
        "gd.scrollIntoView({block: 'center'});"
        "const fl = gd._fullLayout, r = gd.getBoundingClientRect();"
        "return [r.left + fl.xaxis._offset + fl.xaxis.l2p(arguments[2]), r.top + fl.yaxis._offset + fl.yaxis.l2p(arguments[1])];",
        graph_selector, i, j)
    builder = ActionBuilder(driver)
    builder.pointer_action.move_to_location(int(x), int(y))
    builder.pointer_action.click()
    builder.perform()


def fit_and_shoot(driver, shots, name: str) -> None:
    """Screenshots of the page at 1440×1000 and 1024×700 (for a person to look at), with no sideways scrolling."""
    chrome = getattr(driver, "atlas_chrome_height", 0)
    try:
        for width, height in ((1440, 1000), (1024, 700)):
            driver.set_window_size(width, height + chrome)
            time.sleep(0.5)
            overflow = driver.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 0, f"{name} at {width}x{height} scrolls sideways by {overflow} px"
            driver.save_screenshot(str(shots / f"{name}-{width}x{height}.png"))
            height_all = int(driver.execute_script("return Math.min(document.documentElement.scrollHeight, 4000)"))
            driver.set_window_size(width, height_all + chrome)
            time.sleep(0.5)
            driver.save_screenshot(str(shots / f"{name}-{width}-full.png"))
    finally:
        driver.set_window_size(1366, 768 + chrome)


def test_every_page_renders_with_state_in_url(servers, driver, shots):
    base, _, run_id = servers
    open_page(driver, base, "/", "#ov-sel-figures .js-plotly-plot")
    wait_plots(driver, "#ov-sel-figures", 2)
    wait_for(driver, lambda d: "tab=selectivity" in d.current_url, what="overview state in the URL")
    q = query_of(driver.current_url)
    assert q["run"] == run_id and q["step"] == "2" and q["set"] == "top" and q["task"]
    title = driver.execute_script("return document.querySelector('#ov-sel-figures .gtitle').textContent")
    subtitle = driver.execute_script("return document.querySelector('#ov-sel-figures .gtitle-subtitle, #ov-sel-figures .gsubtitle').textContent")
    assert "units" in title and run_id in subtitle and "tiny-random" in subtitle and "clean mode" in subtitle
    screenshot(driver, shots, "overview-selectivity")
    assert_no_console_errors(driver, "overview")

    def open_tab(label: str, container: str, key: str) -> None:
        driver.find_element(By.XPATH, f"//div[contains(@class,'tab') and normalize-space()='{label}']").click()
        wait_plots(driver, container)
        wait_for(driver, lambda d: f"tab={key}" in d.current_url, what=f"tab={key} in the URL")

    open_tab("Modality map", "#ov-mm-graph", "modality")
    rows = list(driver.execute_script("return document.querySelector('#ov-mm-graph .js-plotly-plot').data[0].y"))
    assert {"cross_attention.k_proj", "cross_attention.v_proj", "self_attn.q_proj", "ffn.fc1"} <= set(rows)
    screenshot(driver, shots, "overview-modality")
    assert_no_console_errors(driver, "overview modality map")

    open_tab("Concentration", "#ov-c-graph", "concentration")
    click_plot_point(driver, "#ov-c-graph", 0, 1)
    wait_for(driver, lambda d: "c_cell=speech%3Adeu%3A1" in d.current_url, what="the clicked concentration cell in the URL")
    wait_css(driver, "#ov-c-drill h3", what="the drill-down")
    assert texts(driver, "#ov-c-drill h3")[0].startswith("Units carrying the mass: speech-conditioned · deu")
    links = texts(driver, "#ov-c-drill a.unit-link", "href")
    assert links and all("/unit?" in href for href in links)
    screenshot(driver, shots, "overview-concentration")
    assert_no_console_errors(driver, "overview concentration")

    open_tab("Speech × text", "#ov-x-overlap", "crossmodal")
    wait_plots(driver, "#ov-x-spearman")
    click_plot_point(driver, "#ov-x-overlap", 1, 0)
    wait_for(driver, lambda d: "x_cell=fra%3Adeu" in d.current_url, what="the clicked overlap cell in the URL")
    wait_css(driver, "#ov-x-shared h3", what="the shared-unit list")
    shared = texts(driver, "#ov-x-shared h3")[0]
    assert "shared by the top-" in shared and "text fra" in shared and "speech deu" in shared
    screenshot(driver, shots, "overview-crossmodal")
    assert_no_console_errors(driver, "overview speech × text")

    open_page(driver, base, f"/layer?run={run_id}&stack=text_decoder&layer=1&concept=3", ".ag-row[row-index='0'] .ag-cell")
    wait_plots(driver, "#layer-hist")
    wait_for(driver, lambda d: "sort=ap" in d.current_url and "layer=1" in d.current_url, what="layer state in the URL")
    assert "units match" in driver.find_element(By.ID, "layer-count").text
    screenshot(driver, shots, "layer")
    assert_no_console_errors(driver, "layer")

    open_page(driver, base, f"/unit?run={run_id}&unit=3246", "#unit-ap .js-plotly-plot")
    wait_plots(driver, "#unit-ap")
    wait_plots(driver, "#unit-spec")
    wait_css(driver, "#unit-examples audio")
    wait_for(driver, lambda d: "sent=" in d.current_url and "lang=" in d.current_url, what="unit state in the URL")
    screenshot(driver, shots, "unit")
    assert_no_console_errors(driver, "unit")

    open_page(driver, base, "/lab", "#lab-run")
    wait_for(driver, lambda d: "ulang=" in d.current_url, what="lab state in the URL")
    screenshot(driver, shots, "lab-empty")
    assert_no_console_errors(driver, "lab")

    open_page(driver, base, "/findings", "h1")
    screenshot(driver, shots, "findings-empty")
    assert_no_console_errors(driver, "findings")


def test_heatmap_click_opens_layer_then_unit(servers, driver, shots):
    base, _, run_id = servers
    open_page(driver, base, f"/?run={run_id}&kind=language&task=s2tt&step=2&set=top&k=5", "#ov-sel-figures .js-plotly-plot")
    wait_plots(driver, "#ov-sel-figures", 2)
    graph = "#ov-heat-text_decoder"
    wait_css(driver, graph + " .js-plotly-plot")
    concept_id, layer = driver.execute_script(
        "const gd = document.querySelector(arguments[0] + ' .js-plotly-plot'); return gd.data[0].customdata[0][1].slice(0, 2);", graph)
    click_plot_point(driver, graph, 0, 1)
    wait_for(driver, lambda d: urlsplit(d.current_url).path == "/layer", timeout=45, what="the layer page after the heatmap click")
    q = query_of(driver.current_url)
    assert (q["stack"], q["layer"], q["concept"]) == ("text_decoder", str(layer), str(concept_id))
    cell = ".ag-row[row-index='0'] .ag-cell[col-id='unit_id']"
    unit_id = wait_for(driver, lambda d: d.execute_script(
        "const c = document.querySelector(arguments[0]); return c && /^\\d+$/.test(c.textContent.trim()) && c.textContent.trim();",
        cell), what="a unit id in the first grid row")
    time.sleep(0.3)
    assert texts(driver, cell)[0].strip() == unit_id
    click_css(driver, cell)
    wait_for(driver, lambda d: urlsplit(d.current_url).path == "/unit", what="the unit page after the row click")
    assert query_of(driver.current_url)["unit"] == unit_id
    wait_for(driver, lambda d: d.find_element(By.CSS_SELECTOR, "h1").text == f"Unit {unit_id}", what=f"the page of unit {unit_id}")
    wait_plots(driver, "#unit-ap")
    screenshot(driver, shots, "unit-from-click")
    assert_no_console_errors(driver, "heatmap → layer → unit")


def test_lab_intervention_shows_both_outputs_and_audio(servers, driver, shots):
    base, _, _ = servers
    open_page(driver, base, LAB_QUERY, "#lab-run")
    assert "cross-modal steering: units found on text, applied to speech input" in wait_css(driver, "#lab-crossmodal").text
    driver.find_element(By.ID, "lab-run").click()
    base_out = wait_css(driver, "#lab-out-baseline .diff-text", timeout=60, what="the baseline output")
    inter_out = wait_css(driver, "#lab-out-intervened .diff-text", timeout=60, what="the intervened output")
    assert base_out.text.strip() and inter_out.text.strip()
    wait_plots(driver, "#lab-probs")
    players = {
        "input": css(driver, "#lab-result .input-audio audio"),
        "baseline": css(driver, "#lab-out-baseline audio"),
        "intervened": css(driver, "#lab-out-intervened audio"),
    }
    assert all(len(v) == 1 for v in players.values()), {k: len(v) for k, v in players.items()}
    assert players["input"][0].get_attribute("src").endswith("/media/audio/" + query_of(driver.current_url)["run"]
                                                             + "/builtin:s000:deu:deu-m1")
    for name, (el,) in players.items():
        duration = driver.execute_async_script(
            "const a = arguments[0], done = arguments[1];"
            "if (a.readyState >= 1) { done(a.duration); return; }"
            "a.addEventListener('loadedmetadata', () => done(a.duration)); a.addEventListener('error', () => done(-1)); a.load();",
            el)
        assert duration and duration > 0, f"{name} audio did not load (duration {duration})"
    source_labels = [e.text for e in css(driver, "#lab-result .player-source")]
    assert any("speech decoder" in t or "TTS" in t for t in source_labels), source_labels
    wait_for(driver, lambda d: query_of(d.current_url).get("go") == "1", what="go=1 in the URL after the run")

    sweep = driver.find_element(By.ID, "lab-sweep")  # the result scrolled into view: bring the button out from under the header
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", sweep)
    sweep.click()
    wait_plots(driver, "#lab-sweep-out", 1, timeout=90)
    traces = driver.execute_script("return document.querySelector('#lab-dose .js-plotly-plot').data.map(t => t.name)")
    assert any(t.startswith("top units") for t in traces) and any(t.startswith("random units") for t in traces)
    screenshot(driver, shots, "lab-result")
    assert_no_console_errors(driver, "lab run")


def test_saved_finding_reproduces_in_a_fresh_browser(servers, driver, fresh_driver, shots):
    base, backend_url, _ = servers
    open_page(driver, base, LAB_QUERY + "&go=1&fires=1&sweep=1&seeds=1&sweep_inputs=1", "#lab-run")
    inter = wait_css(driver, "#lab-out-intervened .diff-text", timeout=60, what="the auto-run result").text
    wait_css(driver, "#lab-fires-out .fires-table", timeout=90, what="what fires, run on open")
    wait_plots(driver, "#lab-sweep-out", 1, timeout=120)
    sweep_traces = driver.execute_script("return document.querySelector('#lab-dose .js-plotly-plot').data.map(t => t.name)")
    saved_url = driver.current_url
    driver.find_element(By.CSS_SELECTOR, "#save-details summary").click()
    title = f"cross-modal steering check {time.time():.0f}"
    driver.find_element(By.ID, "save-title").send_keys(title)
    driver.find_element(By.ID, "save-note").send_keys("text-found deu units on German speech")
    driver.find_element(By.ID, "save-button").click()
    link = wait_css(driver, "#save-permalink", timeout=60, what="the permalink")
    permalink = link.get_attribute("href")
    assert "/findings?id=" in permalink
    screenshot(driver, shots, "finding-saved", full_page=False)
    assert_no_console_errors(driver, "save finding")

    fresh_driver.get(permalink)
    assert wait_css(fresh_driver, "#finding-title").text == title
    stored = wait_css(fresh_driver, "#finding-result .output-card:nth-child(2) .diff-text").text
    assert stored == inter
    wait_plots(fresh_driver, "#finding-fig-tokens")
    names = fresh_driver.execute_script("return document.querySelector('#finding-fig-tokens .js-plotly-plot').data.map(t => t.name)")
    assert {"baseline: p(eng)", "intervened: p(deu)", "intervened: chosen token"} <= set(names), names
    assert fresh_driver.find_element(By.ID, "finding-dial").text.startswith("strength 1: the value is written")
    assert css(fresh_driver, "#finding-result .fires-table") and not css(fresh_driver, "#finding-result .fires-unit button")
    wait_plots(fresh_driver, "#lab-dose")
    assert fresh_driver.execute_script("return document.querySelector('#lab-dose .js-plotly-plot').data.map(t => t.name)") \
        == sweep_traces, "the card draws the dose-response the lab showed"
    frozen = fresh_driver.find_element(By.CSS_SELECTOR, ".table.kv").text
    assert "tiny-random" in frozen and "clean" in frozen and "greedy" in frozen
    script = fresh_driver.execute_script("return document.getElementById('finding-python').textContent")
    replay = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "NEURON_ATLAS_BACKEND": backend_url})
    assert replay.returncode == 0, replay.stderr
    assert f"intervened {inter.strip()!r}" in replay.stdout, replay.stdout
    fresh_driver.find_element(By.ID, "finding-verify").click()
    wait_for(fresh_driver, lambda d: "matches the stored result exactly" in d.find_element(By.ID, "finding-verify-out").text,
             timeout=60, what="the verification verdict")
    screenshot(fresh_driver, shots, "finding-card")
    fit_and_shoot(fresh_driver, shots, "finding-lab")
    fresh_driver.find_element(By.ID, "finding-open").click()
    wait_for(fresh_driver, lambda d: urlsplit(d.current_url).path == "/lab", what="the saved view")
    reopened = wait_css(fresh_driver, "#lab-out-intervened .diff-text", timeout=60, what="the reproduced result").text
    assert reopened == inter
    wait_for(fresh_driver, lambda d: query_of(d.current_url) == query_of(saved_url), what="the same URL state")
    assert_no_console_errors(fresh_driver, "finding in a fresh browser")


def test_bad_uploads_show_readable_errors(servers, driver, shots, tmp_path):
    base, _, _ = servers
    open_page(driver, base, "/lab?in=upload&tgt=eng", "#lab-run")
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF\x10\x00\x00\x00WAVEnot really audio" * 4)
    wait_css(driver, "#lab-upload input[type=file]").send_keys(str(broken))
    wait_for(driver, lambda d: "broken.wav" in d.find_element(By.ID, "lab-upload-name").text, what="the upload name")
    driver.find_element(By.ID, "lab-run").click()
    error = wait_for(driver, lambda d: d.find_element(By.ID, "lab-file-error").text, timeout=60, what="the file error")
    assert "broken.wav" in error and "decode" in error, error
    assert "Traceback" not in error and 'File "' not in error
    assert "see the message by the control" in driver.find_element(By.ID, "lab-run-error").text
    screenshot(driver, shots, "lab-bad-upload", full_page=False)

    notes = tmp_path / "notes.txt"
    notes.write_text("not audio")
    wait_css(driver, "#lab-upload input[type=file]").send_keys(str(notes))
    message = wait_for(driver, lambda d: "notes.txt" in d.find_element(By.ID, "lab-upload-name").text
                       and d.find_element(By.ID, "lab-upload-name").text, what="the type warning")
    assert "not audio" in message
    assert_no_console_errors(driver, "bad uploads")


def test_basket_to_lab_and_a_valid_upload(servers, driver, shots, tmp_path):
    base, _, run_id = servers
    open_page(driver, base, f"/unit?run={run_id}&unit=3246", "#unit-basket-add")
    wait_plots(driver, "#unit-ap")
    click_css(driver, "#unit-basket-add")
    wait_for(driver, lambda d: "added" in d.find_element(By.ID, "unit-basket-status").text, what="the basket status")
    assert driver.find_element(By.ID, "basket-count").text == "basket: 1 unit"
    open_page(driver, base, f"/lab?run={run_id}&tgt=eng", "#lab-basket-use")
    wait_for(driver, lambda d: "(3246)" in d.find_element(By.ID, "lab-basket-list").text, what="the basket in the lab")
    click_css(driver, "#lab-basket-use")
    wait_for(driver, lambda d: "us=basket" in d.current_url and "units=3246" in d.current_url, what="the basket in the URL")
    wait_css(driver, "#lab-run")
    wait_for(driver, lambda d: "1 basket unit applied" in d.find_element(By.ID, "lab-crossmodal").text, what="the basket note")
    click_css(driver, "#lab-run")
    wait_css(driver, "#lab-out-intervened .diff-text", timeout=60, what="the basket result")
    assert "1 units forced" in " ".join(texts(driver, "#lab-result p.muted"))

    tone = tmp_path / "tone.wav"
    t = np.arange(16000) / 16000
    sf.write(tone, (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16000)
    open_page(driver, base, f"/lab?run={run_id}&in=upload&tgt=eng", "#lab-run")
    wait_css(driver, "#lab-upload input[type=file]").send_keys(str(tone))
    wait_for(driver, lambda d: "tone.wav (audio/wav)" in d.find_element(By.ID, "lab-upload-name").text, what="the upload")
    click_css(driver, "#lab-run")
    wait_css(driver, "#lab-out-intervened .diff-text", timeout=60, what="the upload result")
    sources = texts(driver, "#lab-result audio", "src")
    assert len(sources) == 3 and sources[2].startswith("data:audio/wav;base64,UklGR")
    assert "your upload" in " ".join(texts(driver, "#lab-result .player-source"))
    screenshot(driver, shots, "lab-upload-result")
    assert_no_console_errors(driver, "basket and upload")


def test_microphone_recording_becomes_a_16_khz_wav_input(servers):
    """Chromium's fake microphone (a beep) through MediaRecorder, the page's WAV conversion and the upload route."""
    base, _, run_id = servers
    mic = make_driver(("--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"))
    try:
        open_page(mic, base, f"/lab?run={run_id}&in=mic&tgt=eng", "#lab-mic-start")
        click_css(mic, "#lab-mic-start")
        wait_for(mic, lambda d: "recording" in d.find_element(By.ID, "lab-mic-status").text, what="recording to start")
        time.sleep(1.2)
        click_css(mic, "#lab-mic-stop")
        wait_for(mic, lambda d: "recorded" in d.find_element(By.ID, "lab-mic-status").text, what="the recording")
        wav = wait_css(mic, "#lab-mic-preview audio", what="the recording preview").get_attribute("src")
        header = base64.b64decode(wav.split(",", 1)[1][:64])
        assert header[:4] == b"RIFF" and int.from_bytes(header[24:28], "little") == 16000
        click_css(mic, "#lab-run")
        wait_css(mic, "#lab-out-intervened .diff-text", timeout=60, what="the result for the recording")
        assert "your microphone recording" in " ".join(texts(mic, "#lab-result .player-source"))
        assert_no_console_errors(mic, "microphone")
    finally:
        mic.quit()


def test_copy_link_copies_the_current_view(servers, driver):
    base, _, run_id = servers
    open_page(driver, base, f"/layer?run={run_id}&stack=text_decoder&layer=0", ".ag-row[row-index='0']")
    wait_for(driver, lambda d: "concept=" in d.current_url, what="layer state in the URL")
    driver.find_element(By.ID, "copy-link").click()
    copied = wait_for(driver, lambda d: d.execute_script("return window.__atlasLastCopied"), what="the copied link")
    assert copied == driver.current_url
    assert json.loads(json.dumps(query_of(copied)))["concept"]
