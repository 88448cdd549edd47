"""The lab's messages in real headless Chromium: unknown languages in a link are named with the choices, an audio file
over the backend's upload limit is named the moment it is chosen, and a link asking for the basket runs on it.
"""
from __future__ import annotations

import subprocess

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("selenium", reason="browser tests need selenium (pip install selenium)")

from selenium.webdriver.common.by import By  # noqa: E402

from tests.browser.harness import console_errors, wait_for  # noqa: E402
from tests.browser.test_dashboard import click_css, open_page, query_of, texts, wait_css  # noqa: E402

pytestmark = pytest.mark.browser


def text_of(driver, element_id: str) -> str:
    return driver.find_element(By.ID, element_id).text


def test_unknown_languages_in_a_link_are_named(servers, driver):
    base, _, run_id = servers
    open_page(driver, base, f"/lab?run={run_id}&in=text&text=Hello+world.&src=xxx&tgt=klingon&ulang=zzz&go=1", "#lab-run")
    warning = wait_css(driver, ".notice-warning").text
    for key, value in (("src", "xxx"), ("tgt", "klingon"), ("ulang", "zzz")):
        assert f"{key}={value}: not a" in warning and "choose one of eng" in warning, warning
    assert "was not run" in warning
    wait_for(driver, lambda d: query_of(d.current_url).get("src") == "eng", what="the replaced source language in the URL")
    query = query_of(driver.current_url)
    assert query["tgt"] != "klingon" and query["ulang"] != "zzz" and query["go"] == "0"
    assert text_of(driver, "lab-src").startswith("eng") and text_of(driver, "lab-ulang")
    assert not driver.find_elements(By.CSS_SELECTOR, "#lab-out-intervened")
    assert not console_errors(driver)


def test_an_oversized_upload_is_named_at_once(servers, driver, tmp_path):
    base, _, run_id = servers
    open_page(driver, base, f"/lab?run={run_id}&in=upload&tgt=eng", "#lab-run")
    big = tmp_path / "long-talk.wav"
    subprocess.run(["truncate", "-s", "25000000", str(big)], check=True)
    wait_css(driver, "#lab-upload input[type=file]").send_keys(str(big))
    message = wait_for(driver, lambda d: "long-talk.wav" in text_of(d, "lab-upload-name") and text_of(d, "lab-upload-name"),
                       what="the size message")
    assert message == ("file: 'long-talk.wav' is 25.0 MB, over the backend's upload limit of 20 MB; "
                       "choose a smaller or shorter audio file")
    click_css(driver, "#lab-run")
    wait_for(driver, lambda d: text_of(d, "lab-file-error") == message, what="the same message at Run")

    tone = tmp_path / "tone.wav"
    sf.write(tone, (0.3 * np.sin(2 * np.pi * 220 * np.arange(8000) / 16000)).astype(np.float32), 16000)
    wait_css(driver, "#lab-upload input[type=file]").send_keys(str(tone))
    wait_for(driver, lambda d: text_of(d, "lab-upload-name") == "tone.wav (audio/wav)", what="the accepted file")
    assert not console_errors(driver)


def test_a_link_asking_for_the_basket_runs_on_it(servers, driver):
    base, _, run_id = servers
    open_page(driver, base, f"/unit?run={run_id}&unit=3246", "#unit-basket-add")
    click_css(driver, "#unit-basket-add")
    wait_for(driver, lambda d: "basket: " in text_of(d, "basket-count") and text_of(d, "basket-count") != "basket: 0 units",
             what="the unit in the basket")
    open_page(driver, base, f"/lab?run={run_id}&in=text&text=Hello+world.&src=eng&tgt=eng&us=basket&value=zero&max_new=8&go=1",
              "#lab-run")
    wait_css(driver, "#lab-out-intervened .diff-text", timeout=60, what="the basket result")
    assert "Run forces 1 unit: 3246" in text_of(driver, "lab-basket-list")
    assert "empty" not in text_of(driver, "lab-basket-list") and not text_of(driver, "lab-spec-error")
    assert "1 basket unit applied to text input" in text_of(driver, "lab-crossmodal")
    wait_for(driver, lambda d: query_of(d.current_url).get("units") == "3246", what="the basket's units in the URL")
    plot_title = ("const g = document.querySelector('#lab-probs .js-plotly-plot');"
                  "return g && g.layout && g.layout.title ? g.layout.title.text : null")
    wait_for(driver, lambda d: d.execute_script(plot_title) is not None, what="the language-probability plot drawn")
    title = driver.execute_script(plot_title)
    assert "units of" not in title, title
    assert "{" not in " ".join(texts(driver, "#lab-result p.muted"))
    assert not console_errors(driver)
