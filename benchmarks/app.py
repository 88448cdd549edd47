"""Benchmark: time until each dashboard page is interactive in headless Chromium (targets < 2 s warm, < 2.5 s cold).

"Interactive" = the page's main content is drawn (figures with data, grid rows, controls filled) and Dash has no
callback in flight. Each page is opened cold once (fresh dashboard and backend caches) and then `--repeats` times
warm; times are read in the page (performance.now(), from navigation start), so polling adds at most ~20 ms.

Store: `--store PATH` (any atlas.duckdb, e.g. the synthetic full-scale one `python -m benchmarks.api --keep DIR`
leaves), else `data/atlas.duckdb` (the demo store) when it exists, else a tiny-model store built here.

Run from the repository root: ``python -m benchmarks.app`` or ``python -m benchmarks.app --quick``.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.browser.harness import browser_missing, make_driver, start_backend, start_dash  # noqa: E402

TARGET_S = 2.0
COLD_TARGET_S = 2.5
POLL = """
const done = arguments[arguments.length - 1], ready = arguments[0], deadline = performance.now() + 30000;
const idle = arguments.length > 2 ? arguments[1] : true;
(function poll() {
  const loading = idle && document.querySelectorAll('[data-dash-is-loading="true"]').length > 0;
  let ok = false;
  try { ok = !loading && eval(ready); } catch (e) { ok = false; }
  if (ok) { done(performance.now()); return; }
  if (performance.now() > deadline) { done(-1); return; }
  setTimeout(poll, 20);
})();
"""
PLOT = "Array.from(document.querySelectorAll('{} .js-plotly-plot')).some(g => g.data && g.data.length > 0)"
#: The unit page is interactive once its stored content is drawn (AP profile, distribution, the examples table with
#: stored values); its token strips come from a live trace of the page's items on the model afterwards (the status
#: line says so), measured as a row of its own without the page targets.
UNIT_INTERACTIVE = (PLOT.format("#unit-ap") + " && " + PLOT.format("#unit-dist")
                    + " && document.querySelectorAll('#unit-examples table tr').length > 1")
STRIP_ITEMS = 40
#: Pages whose readiness ignores callbacks still in flight (the unit page's live trace).
PROGRESSIVE = ("unit · ",)


def pages(run_id: str, stack_layer: tuple[str, int], unit_id: int, speech_example: str | None = None,
          steps: tuple[int, int] | None = None) -> list[tuple[str, str, str]]:
    """(name, path, readiness JS expression) of every page measured (the bridge with a speech example of the run,
    the comparison of the run's first and last recorded step)."""
    stack, layer = stack_layer
    extra = []
    if speech_example:
        extra.append(("bridge", f"/bridge?run={run_id}&ex={speech_example}", PLOT.format("#bridge-figure")))
    if steps:
        extra.append((f"compare · step {steps[0]} vs {steps[1]}",
                      f"/compare?run={run_id}&run_b={run_id}&step={steps[0]}&step_b={steps[1]}",
                      PLOT.format("#compare-heatmap")))
    return extra + [
        ("overview · selectivity", f"/?run={run_id}", PLOT.format("#ov-sel-figures")),
        ("overview · concentration", f"/?run={run_id}&tab=concentration", PLOT.format("#ov-c-graph")),
        ("overview · speech × text", f"/?run={run_id}&tab=crossmodal",
         PLOT.format("#ov-x-overlap") + " && " + PLOT.format("#ov-x-spearman")),
        (f"layer · {stack} {layer}", f"/layer?run={run_id}&stack={stack}&layer={layer}",
         "!!document.querySelector(\".ag-row[row-index='0'] .ag-cell[col-id='ap']\") && "
         "document.querySelector(\".ag-row[row-index='0'] .ag-cell[col-id='ap']\").textContent.trim() !== '' && "
         + PLOT.format("#layer-hist")),
        (f"unit · {unit_id}", f"/unit?run={run_id}&unit={unit_id}", UNIT_INTERACTIVE),
        (f"unit · {unit_id + 1} · token strips (live trace, {STRIP_ITEMS} items; no target)", f"/unit?run={run_id}&unit={unit_id + 1}",
         UNIT_INTERACTIVE + " && document.querySelectorAll('#unit-examples .tok').length > 0"),
        ("lab", f"/lab?run={run_id}", "!!document.querySelector('#lab-run') && "
         "document.querySelector('#lab-concept-line').textContent.trim() !== ''"),
        ("findings", "/findings", "!!document.querySelector('h1')"),
    ]


def page_inputs(backend_url: str, run: dict) -> tuple[str | None, tuple[int, int] | None]:
    """A speech example of the run (for the bridge) and its first and last decoder steps (for the comparison)."""
    import httpx

    examples = httpx.get(f"{backend_url}/runs/{run['run_id']}/examples", params={"has_audio": "true", "limit": 1},
                         timeout=60).json().get("examples") or []
    steps = sorted(run.get("steps") or [])
    return (examples[0]["example_id"] if examples else None), ((steps[0], steps[-1]) if len(steps) > 1 else None)


def build_tiny_store(root: Path) -> Path:
    """A small tiny-model store (3 languages, 6 sentences, all tasks, steps 2 and 7, no batch experiments)."""
    from precompute.config import load_run_config
    from precompute.pipeline import run_precompute

    cfg = {"name": "bench-app", "model": "tiny-random", "device": "cpu",
           "tasks": ["asr", "s2tt", "t2tt", "en2x_s2tt", "en2x_t2tt"], "steps": [2, 7],
           "corpus": {"source": "builtin", "languages": ["eng", "deu", "fra"], "max_sentences": 6},
           "shard_size": 6, "batch_size": 6, "store": str(root / "atlas.duckdb"), "work_dir": str(root / "work"),
           "analysis": {"ks": [5, 10], "seed": 0}, "evaluate": {"enabled": False}}
    (root / "run.yaml").write_text(json.dumps(cfg))
    run_precompute(load_run_config(root / "run.yaml"), progress=False)
    return root / "atlas.duckdb"


def choose_store(given: Path | None, tmp: Path) -> tuple[Path, str] | None:
    """(store, where it came from): the given one, else the demo store, else a tiny store built in `tmp`; None (after
    saying so) when a given store does not exist."""
    store = given or (ROOT / "data" / "atlas.duckdb")
    if store.exists():
        return store, "given" if given else "demo"
    if given:
        print(f"error: no store at {store}", file=sys.stderr)
        return None
    t0 = time.perf_counter()
    store = build_tiny_store(tmp)
    print(f"built a tiny-model store in {time.perf_counter() - t0:.1f} s")
    return store, "tiny (built here)"


def pick_targets(backend_url: str) -> tuple[str, tuple[str, int], int, dict]:
    """The newest run, its largest text-decoder layer and a decoder unit in it."""
    import httpx

    run = httpx.get(f"{backend_url}/runs", timeout=30).json()["runs"][0]
    layers = httpx.get(f"{backend_url}/runs/{run['run_id']}/layers", timeout=60).json()["layers"]
    dec = [r for r in layers if r["stack"] == "text_decoder"]
    biggest = max(dec, key=lambda r: (r["n_units"], -r["layer"]))
    sites = httpx.get(f"{backend_url}/runs/{run['run_id']}/sites", timeout=60).json()["sites"]
    site = next(s for s in sites if s["stack"] == "text_decoder" and s["layer"] == biggest["layer"])
    return run["run_id"], ("text_decoder", int(biggest["layer"])), int(site["unit_offset"]), run


def measure(driver, base: str, path: str, ready: str, idle: bool = True) -> float:
    """Seconds until `ready` holds (and, with `idle`, no Dash callback is in flight)."""
    driver.get("about:blank")
    driver.get(base + path)
    ms = driver.execute_async_script(POLL, ready, idle)
    if ms < 0:
        raise RuntimeError(f"{path} did not become interactive within 30 s")
    return ms / 1000.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, help="atlas.duckdb to serve (default: data/atlas.duckdb, else a tiny store)")
    parser.add_argument("--model", help="backend model (default: the run's model when built in, else none)")
    parser.add_argument("--repeats", type=int, default=5, help="warm loads per page")
    parser.add_argument("--quick", action="store_true", help="2 warm loads per page")
    args = parser.parse_args(argv)
    reason = browser_missing()
    if reason:
        print(f"skipped: the app benchmark needs headless Chromium ({reason})")
        return 0
    repeats = 2 if args.quick else args.repeats
    tmp = Path(tempfile.mkdtemp(prefix="bench-app-"))
    chosen = choose_store(args.store, tmp)
    if chosen is None:
        return 2
    store, source = chosen

    import duckdb

    from backend.api.settings import Settings

    con = duckdb.connect(str(store), read_only=True)
    model_spec = con.execute("SELECT model_spec FROM runs ORDER BY created_at DESC LIMIT 1").fetchone()[0]
    con.close()
    model = args.model or (model_spec if model_spec in ("demo", "tiny-random") else "none")
    settings = Settings(store=store, findings_db=tmp / "findings.sqlite", model=model, device="cpu",
                        rate_burst=1000, rate_per_s=1000, _env_file=None)
    backend = start_backend(settings, timeout=600)
    dash = start_dash(backend.url)
    driver = make_driver()
    rows = []
    try:
        run_id, stack_layer, unit_id, run = pick_targets(backend.url)
        for name, path, ready in pages(run_id, stack_layer, unit_id, *page_inputs(backend.url, run)):
            idle = not (name.startswith(PROGRESSIVE) and "token strips" not in name)
            cold = measure(driver, dash.url, path, ready, idle)
            warm = [measure(driver, dash.url, path, ready, idle) for _ in range(repeats)]
            rows.append((name, cold, statistics.median(warm), max(warm)))
    finally:
        driver.quit()
        dash.stop()
        backend.stop()
    print(f"\nstore: {store} ({source}); run {run_id}: model {run.get('model_spec')}, {run.get('mode')} mode, "
          f"{run.get('n_examples')} examples; backend model {model}")
    print(f"machine: {platform.machine()}, python {platform.python_version()}, Chromium headless 1366x768; "
          f"warm = median of {repeats}")
    print(f"\n| page | cold (s) | cold / {COLD_TARGET_S:g} s | warm median (s) | warm max (s) | warm / {TARGET_S:g} s |")
    print("|---|---|---|---|---|---|")
    for name, cold, warm, worst in rows:
        print(f"| {name} | {cold:.2f} | {cold / COLD_TARGET_S:.2f} | {warm:.2f} | {worst:.2f} | {warm / TARGET_S:.2f} |")
    targeted = [r for r in rows if "no target" not in r[0]]
    slow = [f"{name} (warm)" for name, _, warm, _ in targeted if warm >= TARGET_S]
    slow += [f"{name} (cold)" for name, cold, _, _ in targeted if cold >= COLD_TARGET_S]
    print("\nevery page under both targets" if not slow else f"\nover a target: {', '.join(slow)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
