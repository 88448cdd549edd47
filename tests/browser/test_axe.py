"""Accessibility: axe-core (bundled by axe-selenium-python) finds no violation of impact "serious" or "critical" on
any page of the dashboard, each overview tab included, once the page's figures and grids have rendered."""
from __future__ import annotations

import pytest

pytest.importorskip("selenium", reason="browser tests need selenium (pip install selenium)")
axe_selenium_python = pytest.importorskip("axe_selenium_python", reason="the axe check needs axe-selenium-python")

from tests.browser.test_dashboard import LAB_QUERY, open_page, wait_plots  # noqa: E402

pytestmark = pytest.mark.browser

BLOCKING = ("serious", "critical")


def blocking_violations(driver) -> list[str]:
    """One line per serious or critical axe violation on the current page: rule, impact, help and the first nodes."""
    axe = axe_selenium_python.Axe(driver)
    axe.inject()
    results = axe.run()
    out = []
    for v in results["violations"]:
        if v.get("impact") in BLOCKING:
            nodes = "; ".join(" ".join(n.get("target", [])) + " — " + (n.get("failureSummary") or "").replace("\n", " ")
                              for n in v["nodes"][:4])
            out.append(f"{v['id']} ({v['impact']}, {len(v['nodes'])} nodes): {v['help']}: {nodes}")
    return out


def _pages(run_id: str) -> list[tuple[str, str, str | None]]:
    """(path, element to wait for, container whose figures must be drawn first)."""
    overview = [(f"/?run={run_id}&tab={tab}", "#ov-tab [role=tab][aria-selected=true]", figures)
                for tab, figures in (("selectivity", "#ov-sel-figures"), ("modality", None), ("concentration", None),
                                     ("crossmodal", None), ("interventions", None))]
    return [
        *overview,
        (f"/layer?run={run_id}&stack=text_decoder&layer=1", ".layer-grid .ag-row", "#layer-hist"),
        (f"/unit?run={run_id}&unit=3", "#unit-where", None),
        (f"/unit?run={run_id}&unit=999999999", ".notice-error", None),
        (LAB_QUERY.replace("/lab?", f"/lab?run={run_id}&"), "#lab-run", None),
        (f"/compare?run={run_id}", "h1", None),
        ("/findings", "h1", None),
    ]


def test_no_serious_or_critical_violations_on_any_page(servers, driver):
    base, _, run_id = servers
    found = {}
    for path, ready, figures in _pages(run_id):
        open_page(driver, base, path, ready)
        if figures:
            wait_plots(driver, figures)
        problems = blocking_violations(driver)
        if problems:
            found[path] = problems
    assert not found, "axe found serious/critical violations:\n" + "\n".join(
        f"{path}:\n  " + "\n  ".join(p) for path, p in found.items())


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
