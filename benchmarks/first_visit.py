"""Benchmark: a first visit to the overview (fresh browser profile, empty HTTP cache) as shipped (responses
compressed, the partial plotly.js bundle) against the same dashboard uncompressed with the full plotly.js (the
baseline) and compressed with the full plotly.js, in one run: time until interactive and bytes transferred.

The full plotly.js conditions block assets/plotly-partial.min.js in the browser, so that dcc.Graph fetches the full
plotly.min.js itself, as it did before the partial bundle.

Each condition is measured on localhost as it is and over an emulated link (Chromium's network emulation; default
40 Mbit/s down, 10 Mbit/s up, 20 ms round trip, a researcher reaching a lab server from home or over a VPN).
Every visit starts a new Chromium with a new profile, so nothing is cached; the dashboard's compressed copies of its
static files are made on the first request of the first visit, as on a freshly started server.

Store: `--store PATH`, else `data/atlas.duckdb` (the demo store) when it exists, else a tiny-model store built here.
Run from the repository root: ``python -m benchmarks.first_visit`` (``--quick``: 1 visit per condition).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.app import PLOT, POLL, choose_store, pick_targets  # noqa: E402
from tests.browser.harness import browser_missing, make_driver, start_backend, start_dash  # noqa: E402

TARGET_S = 2.0
BYTES = "return performance.getEntriesByType('resource').concat(performance.getEntriesByType('navigation'))" \
        ".reduce((n, e) => n + (e.transferSize || 0), 0)"


#: (label, compressed responses, partial plotly.js bundle); the first is the baseline of the ratios.
CONDITIONS = (("uncompressed, full plotly.js", False, False),
              ("compressed, full plotly.js", True, False),
              ("compressed, partial plotly.js (shipped)", True, True))


def visit(dash_url: str, path: str, link: dict | None, partial_plotly: bool) -> tuple[float, int]:
    """(seconds until the overview is interactive, bytes transferred) of one first visit in a fresh browser."""
    driver = make_driver()
    try:
        if link:
            driver.set_network_conditions(offline=False, **link)
        if not partial_plotly:
            driver.execute_cdp_cmd("Network.enable", {})
            driver.execute_cdp_cmd("Network.setBlockedURLs", {"urls": ["*/assets/plotly-partial.min.js*"]})
        driver.get(dash_url + path)
        ms = driver.execute_async_script(POLL, PLOT.format("#ov-sel-figures"))
        if ms < 0:
            raise RuntimeError(f"{path} did not become interactive within 30 s")
        return ms / 1000.0, int(driver.execute_script(BYTES))
    finally:
        driver.quit()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, help="atlas.duckdb (default: data/atlas.duckdb, else a tiny store)")
    parser.add_argument("--visits", type=int, default=3, help="first visits per condition (median reported)")
    parser.add_argument("--quick", action="store_true", help="1 visit per condition")
    parser.add_argument("--down-mbit", type=float, default=40.0)
    parser.add_argument("--up-mbit", type=float, default=10.0)
    parser.add_argument("--rtt-ms", type=float, default=20.0)
    args = parser.parse_args(argv)
    reason = browser_missing()
    if reason:
        print(f"skipped: the first-visit benchmark needs headless Chromium ({reason})")
        return 0
    visits = 1 if args.quick else args.visits
    tmp = Path(tempfile.mkdtemp(prefix="bench-first-"))
    chosen = choose_store(args.store, tmp)
    if chosen is None:
        return 2
    store, _ = chosen

    from backend.api.settings import Settings

    settings = Settings(store=store, findings_db=tmp / "findings.sqlite", model="none", device="cpu",
                        rate_burst=1000, rate_per_s=1000, _env_file=None)
    backend = start_backend(settings, timeout=600)
    link = {"latency": args.rtt_ms / 2, "download_throughput": int(args.down_mbit * 125_000),
            "upload_throughput": int(args.up_mbit * 125_000)}
    links = {"localhost": None, f"{args.down_mbit:g} Mbit/s, {args.rtt_ms:g} ms RTT": link}
    rows = []
    try:
        run_id, *_ = pick_targets(backend.url)
        path = f"/?run={run_id}"
        for link_name, network in links.items():
            for label, compress, partial in CONDITIONS:
                dash = start_dash(backend.url, compress=compress)
                try:
                    got = [visit(dash.url, path, network, partial) for _ in range(visits)]
                finally:
                    dash.stop()
                rows.append((link_name, label, statistics.median(t for t, _ in got), statistics.median(b for _, b in got)))
    finally:
        backend.stop()
    print(f"\nstore: {store}; overview first visit, fresh Chromium profile each time; median of {visits}")
    print("\n| link | dashboard | time (s) | time ratio | transferred (MB) | bytes ratio |")
    print("|---|---|---|---|---|---|")
    base = {}
    for link_name, label, seconds, size in rows:
        t0, b0 = base.setdefault(link_name, (seconds, size))
        print(f"| {link_name} | {label} | {seconds:.2f} | {seconds / t0:.2f} | {size / 1e6:.2f} | {size / b0:.2f} |")
    worst = max(seconds for _, label, seconds, _ in rows if label == CONDITIONS[-1][0])
    print(f"\nshipped first visit {'under' if worst < TARGET_S else 'OVER'} the {TARGET_S:g} s target on every link "
          f"(worst {worst:.2f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
