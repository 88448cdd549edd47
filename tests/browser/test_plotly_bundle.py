"""The dashboard draws with its partial plotly.js bundle: the page loads assets/plotly-partial.min.js, never the full
4.8 MB plotly.min.js, and the figures of a page are drawn by it."""
from __future__ import annotations

import pytest

pytest.importorskip("selenium", reason="browser tests need selenium (pip install selenium)")

from plotly.offline import get_plotlyjs_version  # noqa: E402

from tests.browser.test_dashboard import assert_no_console_errors, open_page, wait_plots  # noqa: E402

pytestmark = pytest.mark.browser

RESOURCES = "return performance.getEntriesByType('resource').map(e => e.name)"


def test_pages_draw_with_the_partial_plotly_bundle(servers, driver):
    base, _, run_id = servers
    open_page(driver, base, f"/?run={run_id}", "#ov-sel-figures .js-plotly-plot")
    wait_plots(driver, "#ov-sel-figures")
    assert driver.execute_script("return window.Plotly && window.Plotly.version") == get_plotlyjs_version()
    loaded = driver.execute_script(RESOURCES)
    assert any(name.split("?")[0].endswith("/assets/plotly-partial.min.js") for name in loaded), loaded
    assert not any("package_data/plotly" in name for name in loaded), "the full plotly.js was loaded as well"
    traces = set(driver.execute_script("return Object.keys(window.Plotly.PlotSchema.get().traces)"))
    assert {"heatmap", "scatter", "scattergl", "bar", "box", "histogram"} <= traces
    assert "scatter3d" not in traces and "choropleth" not in traces
    assert_no_console_errors(driver, "overview with the partial plotly.js bundle")
