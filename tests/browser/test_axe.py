"""Accessibility: axe-core 4.x (tests/browser/vendor/axe.min.js, `make axe-core`) finds no violation of impact
"serious" or "critical" on any page of the dashboard, each overview tab included, once the page's figures and grids
have rendered. Every violation, moderate and minor ones included, is written to test-artifacts/axe-report.json."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("selenium", reason="browser tests need selenium (pip install selenium)")

import httpx  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402

from tests.browser.harness import wait_for  # noqa: E402
from tests.browser.test_dashboard import LAB_QUERY, open_page, query_of, wait_css, wait_plots  # noqa: E402

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
AXE_SCRIPT = ROOT / "tests" / "browser" / "vendor" / "axe.min.js"
REPORT = ROOT / "test-artifacts" / "axe-report.json"
BLOCKING = ("serious", "critical")
RUN_AXE = """const done = arguments[arguments.length - 1];
axe.run(document, {resultTypes: ['violations'], rules: {'target-size': {enabled: true}}})
   .then(r => done({version: axe.version, violations: r.violations}), e => done({error: String(e)}));"""


def axe_violations(driver) -> list[dict]:
    """axe-core's violations on the current page: axe's default rules (WCAG 2.x A/AA and best practices) and WCAG 2.2's
    target size (minimum), which axe leaves off by default."""
    if not driver.execute_script("return typeof window.axe === 'object'"):
        driver.execute_script(AXE_SCRIPT.read_text(encoding="utf-8"))
    result = driver.execute_async_script(RUN_AXE)
    assert "error" not in result, f"axe.run failed: {result['error']}"
    assert result["version"].startswith("4."), result["version"]
    return result["violations"]


def describe(violation: dict) -> str:
    """One line: rule, impact, help and the first nodes with axe's summary of what fails."""
    nodes = "; ".join(" ".join(map(str, n.get("target", []))) + " — "
                      + (n.get("failureSummary") or "").replace("\n", " ") for n in violation["nodes"][:4])
    return (f"{violation['id']} ({violation['impact']}, {len(violation['nodes'])} nodes): "
            f"{violation['help']}: {nodes}")


def _pages(run_id: str, finding_id: str) -> list[tuple[str, str, str | None]]:
    """(path, element to wait for, container whose figures must be drawn first): every page, the overview's tabs and
    drill-downs, the unit page with its token strips, the lab before and after a run, findings with a saved finding."""
    overview = [(f"/?run={run_id}&tab={tab}", "#ov-tab [role=tab][aria-selected=true]", figures)
                for tab, figures in (("selectivity", "#ov-sel-figures"), ("modality", None), ("concentration", None),
                                     ("crossmodal", None), ("interventions", None))]
    drilled = [(f"/?run={run_id}&tab=concentration&c_cell=speech:deu:1", "#ov-c-drill h3", None),
               (f"/?run={run_id}&tab=crossmodal&x_cell=fra:deu", "#ov-x-shared h3", None)]
    lab = LAB_QUERY.replace("/lab?", f"/lab?run={run_id}&")
    return [
        *overview,
        *drilled,
        (f"/layer?run={run_id}&stack=text_decoder&layer=1", ".layer-grid .ag-row", "#layer-hist"),
        (f"/unit?run={run_id}&unit=3", "#unit-examples table", None),
        (f"/unit?run={run_id}&unit=999999999", ".notice-error", None),
        (lab, "#lab-run", None),
        (lab + "&go=1", "#lab-out-intervened .diff-text", "#lab-probs"),
        (f"/compare?run={run_id}", "h1", None),
        (f"/bridge?run={run_id}&max_new=6", "#bridge-body .js-plotly-plot", "#bridge-body"),
        ("/findings", "a[href^='/findings?id=']", None),
        (f"/findings?id={finding_id}", "#finding-edit", None),
    ]


def _record(driver, report: dict, blocking: dict, where: str) -> None:
    violations = axe_violations(driver)
    report[where] = [{"id": v["id"], "impact": v["impact"], "help": v["help"], "nodes": len(v["nodes"]),
                      "targets": [n.get("target") for n in v["nodes"][:10]]} for v in violations]
    if problems := [describe(v) for v in violations if v.get("impact") in BLOCKING]:
        blocking[where] = problems


def test_no_serious_or_critical_violations_on_any_page(servers, driver):
    base, backend_url, run_id = servers
    saved = httpx.post(f"{backend_url}/findings", json={"title": "axe finding", "note": "a note", "run_id": run_id,
                                                         "state": {"page": "overview"}})
    saved.raise_for_status()
    driver.set_script_timeout(120)
    report, blocking = {}, {}
    try:
        for path, ready, figures in _pages(run_id, saved.json()["id"]):
            open_page(driver, base, path, ready)
            if figures:
                wait_plots(driver, figures)
            _record(driver, report, blocking, path)
        # An open dropdown (Dash draws its choices in a popover) is checked too, opened from the keyboard.
        layer = f"/layer?run={run_id}&stack=text_decoder&layer=1"
        open_page(driver, base, layer, ".layer-grid .ag-row")
        driver.execute_script("document.getElementById('layer-layer').focus()")
        driver.switch_to.active_element.send_keys(Keys.ARROW_DOWN)
        wait_css(driver, ".dash-dropdown-content .dash-options-list input")
        _record(driver, report, blocking, layer + " (layer menu open)")
    finally:
        driver.set_script_timeout(30)
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(json.dumps(report, indent=1))
    lesser = sorted({f"{v['id']} ({v['impact']})" for page in report.values() for v in page
                     if v["impact"] not in BLOCKING})
    assert not blocking, ("axe found serious/critical violations:\n" + "\n".join(
        f"{path}:\n  " + "\n  ".join(p) for path, p in blocking.items())
        + f"\n(moderate/minor, not blocking: {', '.join(lesser) or 'none'}; all in {REPORT})")


def test_a_dropdown_takes_the_focus_itself_and_works_from_the_keyboard(servers, driver):
    """What the axe fixes in assets/a11y.js keep working: Tab lands on a dropdown's own button (named by its control's
    label and value, not an aria-hidden proxy), ArrowDown opens it as a named dialog of radio buttons, and a choice
    made with the arrow keys and Enter reaches the URL."""
    base, _, run_id = servers
    open_page(driver, base, f"/layer?run={run_id}&stack=text_decoder&layer=1", ".layer-grid .ag-row")
    wait_for(driver, lambda d: d.find_element(By.ID, "layer-layer").get_attribute("tabindex") == "0",
             what="the layer dropdown's button in the tab order")
    driver.execute_script("document.getElementById('layer-stack').focus()")
    driver.switch_to.active_element.send_keys(Keys.TAB)
    button = driver.switch_to.active_element
    assert button.get_attribute("id") == "layer-layer"
    assert button.accessible_name.lower() == "layer layer 1", button.accessible_name
    button.send_keys(Keys.ARROW_DOWN)
    wait_css(driver, ".dash-dropdown-content .dash-options-list input")
    dialog = driver.find_element(By.CSS_SELECTOR, ".dash-dropdown-content[role=dialog]")
    assert dialog.accessible_name.lower() == "layer"
    assert driver.find_element(By.CSS_SELECTOR, ".dash-dropdown-content .dash-options-list").get_attribute("role") \
        == "radiogroup"
    choice = driver.switch_to.active_element
    assert choice.get_attribute("type") == "radio" and choice.accessible_name == "layer 1"
    choice.send_keys(Keys.ARROW_DOWN)
    nxt = wait_for(driver, lambda d: (e := d.switch_to.active_element).accessible_name != "layer 1" and e,
                   what="ArrowDown moving the focus to the next option")
    nxt.send_keys(Keys.ENTER)
    wait_for(driver, lambda d: query_of(d.current_url).get("layer") not in (None, "1"),
             what="the chosen layer in the URL")


SIZES = ((1440, 1000), (1024, 700))


@pytest.mark.parametrize("width, height", SIZES)
def test_overview_and_layer_fit_the_window(servers, driver, shots, width, height):
    """At a laptop and a small window the overview and the layer page need no sideways scrolling (screenshots go to
    test-artifacts/screenshots/ for a person to look at)."""
    base, _, run_id = servers
    chrome = getattr(driver, "atlas_chrome_height", 0)
    driver.set_window_size(width, height + chrome)
    try:
        for name, path, ready, figures in (
                ("overview", f"/?run={run_id}&tab=selectivity", "#ov-tab [role=tab]", "#ov-sel-figures"),
                ("layer", f"/layer?run={run_id}&stack=speech_encoder&layer=0", ".layer-grid .ag-row", "#layer-hist")):
            open_page(driver, base, path, ready)
            wait_plots(driver, figures)
            overflow = driver.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 0, f"{name} at {width}x{height} scrolls sideways by {overflow} px"
            driver.save_screenshot(str(shots / f"{name}-{width}x{height}.png"))
    finally:
        driver.set_window_size(1366, 768 + chrome)
