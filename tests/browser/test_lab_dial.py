"""The lab's dial, what fires and the k sweep job in real headless Chromium, with screenshots at 1440×1000 and
1024×700: results scroll into view and take focus; what fires links to unit pages and fills the basket; the sweep
shows its progress while the backend job runs."""
from __future__ import annotations

import time
from urllib.parse import urlsplit

import pytest

pytest.importorskip("selenium", reason="browser tests need selenium (pip install selenium)")

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402

from tests.browser.harness import console_errors, wait_for  # noqa: E402
from tests.browser.test_dashboard import click_css, open_page, query_of, texts, wait_css, wait_plots  # noqa: E402

pytestmark = pytest.mark.browser

DIAL_QUERY = ("/lab?in=text&text=My+mother+works+at+the+hospital.&src=eng&tgt=deu&us=concept&role=control&umod=text"
              "&ulang=fra&step=2&set=top&k=5&stack=text_decoder&value=on_p50&max_new=8")
SIZES = {"1440x1000": (1440, 1000), "1024x700": (1024, 700)}


def resize(driver, width: int, height: int) -> None:
    driver.set_window_size(width, height + getattr(driver, "atlas_chrome_height", 0))
    time.sleep(0.3)


def shoot(driver, shots, name: str) -> None:
    """The viewport as a person sees it, at each size the issue names (then back to 1440×1000)."""
    for label, (w, h) in SIZES.items():
        resize(driver, w, h)
        driver.save_screenshot(str(shots / f"{name}-{label}.png"))
    resize(driver, *SIZES["1440x1000"])


def in_view_and_focused(driver, element_id: str) -> bool:
    return driver.execute_script(
        "const e = document.getElementById(arguments[0]); if (!e) return false;"
        "const r = e.getBoundingClientRect();"
        "return document.activeElement === e && r.top >= -1 && r.top < window.innerHeight;", element_id)


def set_input(driver, element_id: str, value: str) -> None:
    box = driver.find_element(By.ID, element_id)
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(Keys.DELETE)
    box.send_keys(value, Keys.TAB)


def test_the_dial_travels_in_the_url_and_strength_zero_is_the_baseline(servers, driver, shots):
    base, _, run_id = servers
    resize(driver, *SIZES["1024x700"])
    open_page(driver, base, DIAL_QUERY + f"&run={run_id}&strength=0", "#lab-run")
    assert "strength 0: the model is left exactly as it is" in wait_css(driver, "#lab-dial-line").text
    driver.find_element(By.ID, "lab-run").click()
    wait_css(driver, "#lab-out-intervened .diff-text", timeout=90, what="the intervened output")
    assert wait_css(driver, ".result-head .badge").text == "unchanged"
    wait_for(driver, lambda d: in_view_and_focused(d, "lab-result-heading"), timeout=10,
             what="the result heading scrolled into view and focused at 1024×700")

    click_css(driver, "#lab-pos input[value='range']")
    set_input(driver, "lab-pos-from", "2")
    set_input(driver, "lab-pos-to", "5")
    set_input(driver, "lab-decode-steps", "0-3")
    set_input(driver, "lab-probe", "▁the")
    wait_for(driver, lambda d: query_of(d.current_url).get("decode_steps") == "0-3" and query_of(d.current_url).get("pos_to") == "5",
             what="the dial's settings in the URL")
    q = query_of(driver.current_url)
    assert (q["pos"], q["pos_from"], q["strength"], q["probe"]) == ("range", "2", "0", "▁the")
    line = wait_css(driver, "#lab-dial-line").text
    assert "decoder positions 2–4" in line and "decoding steps 0, 1, 2, 3" in line

    driver.get(base + "/lab?" + urlsplit(driver.current_url).query.replace("strength=0", "strength=2"))
    wait_css(driver, "#lab-run")
    driver.find_element(By.ID, "lab-run").click()
    wait_css(driver, "#lab-result-dial", timeout=90, what="the result's dial line")
    assert "strength 2" in driver.find_element(By.ID, "lab-result-dial").text
    wait_plots(driver, "#lab-token-probs", 1, timeout=30)
    names = driver.execute_script("return document.querySelector('#lab-token-probs .js-plotly-plot').data.map(t => t.name)")
    assert "baseline: chosen token" in names and "intervened: chosen token" in names
    assert any(n.startswith("intervened: p(deu)") for n in names) and any("p(▁the)" in n for n in names), names
    wait_for(driver, lambda d: in_view_and_focused(d, "lab-result-heading"), timeout=10, what="the new result focused")
    shoot(driver, shots, "lab-dial")
    driver.execute_script("document.getElementById('lab-dial').scrollIntoView()")
    shoot(driver, shots, "lab-dial-controls")
    assert not console_errors(driver)


def test_what_fires_links_to_unit_pages_and_fills_the_basket(servers, driver, shots):
    base, _, run_id = servers
    resize(driver, *SIZES["1440x1000"])
    open_page(driver, base, DIAL_QUERY + f"&run={run_id}", "#lab-fires")
    driver.execute_script("localStorage.clear(); sessionStorage.clear();")
    driver.refresh()
    wait_css(driver, "#lab-fires").click()
    wait_css(driver, "#lab-fires-out .fires-table", timeout=90, what="the what-fires tables")
    wait_for(driver, lambda d: in_view_and_focused(d, "lab-fires-heading"), timeout=10, what="what fires focused")
    summaries = texts(driver, "#lab-fires-out summary")
    assert summaries[0].startswith("text encoder") and summaries[1].startswith("text decoder"), summaries
    assert "ranked by |z| against the run's corpus" in driver.find_element(By.ID, "lab-fires-out").text
    shoot(driver, shots, "lab-what-fires")

    first = driver.find_elements(By.CSS_SELECTOR, "#lab-fires-out .fires-unit button")[0]
    unit_id = first.get_attribute("aria-label").split()[2]
    first.click()
    wait_for(driver, lambda d: f"unit {unit_id} added" in d.find_element(By.ID, "lab-fires-status").text, what="the basket status")
    wait_for(driver, lambda d: f"1 unit in the basket ({unit_id})" in d.find_element(By.ID, "lab-basket-list").text,
             what="the basket line")
    driver.find_elements(By.CSS_SELECTOR, "#lab-fires-out .fires-unit button")[0].click()
    wait_for(driver, lambda d: "already in the basket" in d.find_element(By.ID, "lab-fires-status").text, what="no double add")

    link = driver.find_elements(By.CSS_SELECTOR, "#lab-fires-out .fires-unit a")[1]
    target = link.text.split()[0]
    link.click()
    wait_for(driver, lambda d: urlsplit(d.current_url).path == "/unit", what="the unit page")
    assert query_of(driver.current_url)["unit"] == target
    wait_for(driver, lambda d: d.find_element(By.CSS_SELECTOR, "h1").text == f"Unit {target}", what=f"unit {target}")
    assert not console_errors(driver)


def test_the_k_sweep_runs_as_a_job_with_progress(servers, driver, shots):
    base, _, run_id = servers
    resize(driver, *SIZES["1024x700"])
    open_page(driver, base, DIAL_QUERY + f"&run={run_id}&k=4&seeds=2&sweep_inputs=2", "#lab-sweep")
    driver.find_element(By.ID, "lab-sweep").click()
    bar = wait_css(driver, "#lab-sweep-bar", timeout=30, what="the sweep's progress bar")
    total = 2 * (1 + 3 * (1 + 2))  # 2 inputs × (baseline + 3 ks (k/8 → 1, k/4, k/2, k = 1, 1, 2, 4) × (set + 2 seeds))
    assert int(bar.get_attribute("max")) in (1, total)
    wait_for(driver, lambda d: f"{total} of {total} generations" in d.find_element(By.ID, "lab-sweep-status").text,
             timeout=180, what="the finished progress")
    wait_plots(driver, "#lab-sweep-out", 1, timeout=30)
    data = driver.execute_script("return document.querySelector('#lab-dose .js-plotly-plot').data"
                                 ".map(t => [t.name, t.error_y && t.error_y.array])")
    names = [n for n, _ in data]
    assert any(n.startswith("top units → p(fra)") for n in names) and any(n.startswith("random units → p(fra)") for n in names)
    assert any("sd over 2 seeds" in n for n in names) and all(e is not None for _, e in data)
    wait_for(driver, lambda d: in_view_and_focused(d, "lab-sweep-heading"), timeout=10, what="the sweep focused")
    wait_for(driver, lambda d: query_of(d.current_url).get("sweep") == "1", what="sweep=1 in the URL")
    shoot(driver, shots, "lab-sweep")
    assert not console_errors(driver)
