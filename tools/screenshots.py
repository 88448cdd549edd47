"""Take the README's screenshots, and a review set of every main page at two window sizes, from a real store.

The README's images (docs/screenshots/) come from the demo store of `make demo` with the shipped demo model loaded;
the review set (overview, layer, unit with token strips, lab with the dial, what fires, findings) goes to
`--review DIR` at 1440×1000 and 1024×700 so a person can look at each page as a user sees it.

Run from the repository root after `make demo` (or `neuron-atlas precompute --config demo`):
``python -m tools.screenshots`` (README images) or ``python -m tools.screenshots --review test-artifacts/review``.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.app import PLOT, POLL, pick_targets  # noqa: E402
from tests.browser.harness import browser_missing, make_driver, start_backend, start_dash  # noqa: E402

README_SIZE = (1440, 1000)
REVIEW_SIZES = ((1440, 1000), (1024, 700))
#: The README's lab link: English → German with French's en→X control units forced to their medians.
LAB_STEERING = {"in": "text", "text": "My mother works at the hospital.", "src": "eng", "tgt": "deu", "us": "concept",
                "role": "control", "umod": "text", "ulang": "fra", "step": "2", "set": "both", "k": "250", "go": "1"}
LAB_READY = ("!!document.querySelector('#lab-result .js-plotly-plot') && "
             "document.querySelector('#lab-result').textContent.includes('Intervened')")
UNIT_READY = PLOT.format("#unit-dist") + " && document.querySelectorAll('#unit-examples .tok').length > 0"


def evidence_unit(backend: str, run_id: str, language: str = "fra") -> tuple[int, int, int]:
    """(unit, concept, step) for the unit page: the text decoder's FFN unit of highest AP for `language`'s S2TT
    concept at the first recorded step (a unit whose token strips show something)."""
    import httpx

    concepts = httpx.get(f"{backend}/runs/{run_id}/concepts", params={"kind": "language", "task": "s2tt", "limit": 500},
                         timeout=60).json()["concepts"]
    concept = min((c for c in concepts if c.get("language") == language), key=lambda c: c["step"])
    found = httpx.get(f"{backend}/runs/{run_id}/search", params={"stack": "text_decoder", "component": "ffn",
                                                                  "concept_id": concept["concept_id"], "limit": 1},
                      timeout=60).json()["units"][0]
    return int(found["unit_id"]), int(concept["concept_id"]), int(concept["step"])


def shots(run_id: str, stack_layer: tuple[str, int], unit: tuple[int, int, int]) -> dict[str, tuple[str, str]]:
    """name -> (dashboard path, readiness JS) of each page photographed."""
    stack, layer = stack_layer
    unit_id, concept, step = unit
    return {
        "overview": (f"/?run={run_id}", PLOT.format("#ov-sel-figures")),
        "overview-modality": (f"/?run={run_id}&tab=modality", PLOT.format("#ov-mm-graph")),
        "layer": (f"/layer?run={run_id}&stack={stack}&layer={layer}", PLOT.format("#layer-hist")),
        "unit": (f"/unit?run={run_id}&unit={unit_id}&concept={concept}&step={step}&task=s2tt", UNIT_READY),
        "lab-steering": (f"/lab?run={run_id}&" + urlencode(LAB_STEERING), LAB_READY),
        "lab-fires": (f"/lab?run={run_id}&" + urlencode({**LAB_STEERING, "go": "0", "fires": "1"}),
                      "document.querySelectorAll('#lab-fires-out a').length > 0"),
        "findings": ("/findings", "!!document.querySelector('h1')"),
    }


def take(driver, url: str, ready: str, size: tuple[int, int], path: Path, full_page: bool,
         scroll_to: str | None = None) -> None:
    """Open `url` in a window of `size` (viewport), wait until `ready` holds and no callback runs, save the page
    (the whole page, or the viewport scrolled to the element `scroll_to`, without a focus ring)."""
    chrome = int(driver.execute_script("return window.outerHeight - window.innerHeight"))
    driver.set_window_size(size[0], size[1] + chrome)
    driver.get("about:blank")
    driver.get(url)
    if driver.execute_async_script(POLL, ready) < 0:
        raise RuntimeError(f"{url} was not ready within 30 s ({ready})")
    time.sleep(1.0)  # let transitions and late strips finish drawing
    if scroll_to:
        driver.execute_script("document.activeElement && document.activeElement.blur();"
                              "const e = document.querySelector(arguments[0]); if (e) window.scrollTo(0, "
                              "e.getBoundingClientRect().top + window.scrollY - 60);", scroll_to)
        time.sleep(0.5)
    if full_page:
        height = int(driver.execute_script("return Math.min(document.documentElement.scrollHeight, 4000)"))
        driver.set_window_size(size[0], max(size[1], height) + chrome)
        time.sleep(0.5)
    path.parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(path))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, default=ROOT / "data" / "atlas.duckdb", help="the store (default: make demo's)")
    parser.add_argument("--model", default="demo", help="model the backend loads (the lab needs it)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots", help="folder of the README images")
    parser.add_argument("--review", type=Path, help="also write every page at 1440x1000 and 1024x700 here")
    args = parser.parse_args(argv)
    reason = browser_missing()
    if reason:
        print(f"error: screenshots need headless Chromium ({reason})", file=sys.stderr)
        return 2
    if not args.store.exists():
        print(f"error: no store at {args.store}; run `make demo` first or pass --store", file=sys.stderr)
        return 2
    from backend.api.settings import Settings

    tmp = Path(tempfile.mkdtemp(prefix="atlas-shots-"))
    settings = Settings(store=args.store, findings_db=tmp / "findings.sqlite", model=args.model, device="cpu",
                        rate_burst=1000, rate_per_s=1000, _env_file=None)
    backend = start_backend(settings, timeout=600)
    dash = start_dash(backend.url)
    driver = make_driver()
    try:
        run_id, stack_layer, _, _ = pick_targets(backend.url)
        pages = shots(run_id, stack_layer, evidence_unit(backend.url, run_id))
        for name, image, scroll in (("overview", "overview", None), ("overview-modality", "overview-modality", None),
                                    ("lab-steering", "lab-steering", "#lab-result-heading"),
                                    ("unit", "unit-evidence", "#unit-error + h2")):
            path, ready = pages[name]
            take(driver, dash.url + path, ready, README_SIZE, args.out / f"{image}.png", full_page=False,
                 scroll_to=scroll)
            print(f"wrote {args.out / f'{image}.png'}")
        for w, h in REVIEW_SIZES if args.review else ():
            for name, (path, ready) in pages.items():
                out = args.review / f"{name}-{w}x{h}.png"
                take(driver, dash.url + path, ready, (w, h), out, full_page=True)
                print(f"wrote {out}")
    finally:
        driver.quit()
        dash.stop()
        backend.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
