"""The lab's token attribution in real headless Chromium: a link runs it on open, a clicked token moves it, the
verified units go to the basket, and a saved finding draws it, re-verifies it and replays it as Python."""
from __future__ import annotations

import os
import subprocess
import sys
from urllib.parse import quote

import pytest

pytest.importorskip("selenium", reason="browser tests need selenium (pip install selenium)")

from selenium.webdriver.common.by import By  # noqa: E402

from tests.browser.harness import console_errors, screenshot, wait_for  # noqa: E402
from tests.browser.test_dashboard import click_css, open_page, query_of, texts, wait_css, wait_plots  # noqa: E402

pytestmark = pytest.mark.browser

TEXT = "Le train part à sept heures."


def lab_link(run_id: str, **extra: str) -> str:
    query = {"run": run_id, "in": "text", "text": TEXT, "src": "fra", "tgt": "eng", "us": "concept",
             "role": "representation", "umod": "text", "ulang": "deu", "step": "2", "set": "top", "k": "5",
             "stack": "text_decoder", "value": "on_p50", "max_new": "8", **extra}
    return "/lab?" + "&".join(f"{k}={quote(v)}" for k, v in query.items())


def headline(driver) -> str:
    return driver.find_element(By.ID, "lab-at-headline").text


def test_attribution_link_token_basket_and_finding(servers, driver, fresh_driver, shots):
    base, backend_url, run_id = servers
    open_page(driver, base, lab_link(run_id, at_tok="1", at_side="intervened", at_ref="off_mean", at_n="5"), "#lab-at-run")
    wait_for(driver, lambda d: d.find_elements(By.ID, "lab-at-headline"), 90, "the attribution run on open")
    assert "intervened output, token 1" in headline(driver) and "reference off_mean of concept" in headline(driver)
    wait_plots(driver, "#lab-at-out", 1, 30)
    rows = texts(driver, "#lab-at-top tbody tr")
    assert len(rows) == 30
    verified = [r for r in rows if r.count(".") >= 1]
    assert verified
    q = query_of(driver.current_url)
    assert (q["at_tok"], q["at_side"], q["at_ref"], q["at_n"]) == ("1", "intervened", "off_mean", "5")
    screenshot(driver, shots, "lab-attribution")

    click_css(driver, "#lab-at-tokens button:first-child")
    wait_for(driver, lambda d: query_of(d.current_url).get("at_tok") == "0", 30, "the clicked token in the URL")
    click_css(driver, "#lab-at-run")
    wait_for(driver, lambda d: "token 0" in headline(d), 90, "the attribution of token 0")

    click_css(driver, "#lab-at-basket")
    wait_for(driver, lambda d: "5 verified units sent" in d.find_element(By.ID, "lab-at-basket-status").text, 30,
             "the basket status")
    wait_for(driver, lambda d: d.find_element(By.ID, "basket-count").text == "basket: 5 units", 30, "the header's count")
    saved = driver.current_url

    driver.find_element(By.CSS_SELECTOR, "#save-details summary").click()
    driver.find_element(By.ID, "save-title").send_keys("which units make token 0")
    driver.find_element(By.ID, "save-button").click()
    permalink = wait_css(driver, "#save-permalink", 90).get_attribute("href")
    assert not console_errors(driver)

    fresh_driver.get(permalink)
    wait_for(fresh_driver, lambda d: "Token attribution" in d.find_element(By.ID, "finding-result").text, 30,
             "the stored attribution")
    wait_plots(fresh_driver, "#finding-result", 2, 30)
    assert "attribution of intervened token 0" in fresh_driver.find_element(By.CSS_SELECTOR, ".table.kv").text
    script = fresh_driver.execute_script("return document.getElementById('finding-python').textContent")
    replay = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=180,
                            env={**os.environ, "NEURON_ATLAS_BACKEND": backend_url})
    assert replay.returncode == 0, replay.stderr
    assert "estimate vs actual: r" in replay.stdout, replay.stdout
    fresh_driver.find_element(By.ID, "finding-verify").click()
    wait_for(fresh_driver, lambda d: "matches the stored result exactly" in d.find_element(By.ID, "finding-verify-out").text,
             90, "the re-run to match")
    fresh_driver.find_element(By.ID, "finding-open").click()
    wait_for(fresh_driver, lambda d: query_of(d.current_url) == query_of(saved), 30, "the same URL state")
    wait_for(fresh_driver, lambda d: d.find_elements(By.ID, "lab-at-headline") and "token 0" in headline(d), 90,
             "the attribution reproduced on open")
    assert not console_errors(fresh_driver)
